"""Evaluate the trained chains of a run: metrics, C&W attacks, gradient masking, sharding.

The evaluation of Mandal & Guo, "Improving Defensive Distillation using Teacher Assistant"
(sections IV-C, V and VI): for every model of a `keras_takd.main` run, the attack-free metrics at
T = 1 (accuracy, both sensitivities, confidence; `keras_takd.metrics.model_metrics`) and the
minimal perturbations found by Carlini & Wagner's L0, L2 and L-inf attacks (arXiv:1608.04644) on
the first `num_images` test images; plus Papernot et al.'s success rate at a fixed budget
(arXiv:1511.04508) and the gradient-masking check: the same L2 attack run against
softmax(logits / T) at the chain's training temperature (columns `l2_softmax_T_*`).

Units of work and resuming. A unit is one model's metrics, or one attack on one model. Each
finished unit is cached as JSON under

    <output_dir>/eval/<config_id>/config.json                       the evaluation configuration
    <output_dir>/eval/<config_id>/<dataset>/T<T>/stage<k>/metrics.json
    <output_dir>/eval/<config_id>/<dataset>/T<T>/stage<k>/shard<i>of<n>/<attack>.json

and the results CSV is rewritten atomically after every unit, so a killed evaluation loses at
most the unit it was running and a rerun with the same settings computes only what is missing.
A cache whose model file changed since (its sha256 differs) is recomputed.

Configuration. `config_id` is a hash of everything that decides the numbers: every option of
every attack (resolved against the attack functions' defaults), `num_images`, `metric_images`,
the budgets and the test set. Every row written carries it in the `eval_config` column; a results
CSV holding rows of another configuration is refused (`ConfigMismatchError`) rather than mixed.
Which attacks run is not part of it: a later run may add attacks to the same results.
`attack_images` lets an attack take fewer (or more) images than `num_images`, e.g. L0, which
costs several times L2; the counts that differ are part of the configuration.

Sharding. `shard_index` / `num_shards` split the attacked images (the first `num_images` test
images) into CONTIGUOUS blocks: shard i attacks images [i * n // N, (i + 1) * n // N). Shard 0
also computes the attack-free metrics (they need no attack and are not split). A shard writes
`results_shard<i>of<N>.csv` holding SUFFICIENT STATISTICS per attack instead of means:
`<p>_attacked`, `<p>_excluded`, `<p>_successes`, `<p>_sum` (of the perturbations of successful
images), `<p>_max`, and for the budgets `<norm>_budget_within`. `merge_shards` adds them up
(mean = sum / successes, max = max of maxes), giving the table an unsharded run writes, up to
float round-off of the sums (about 1e-16 relative).

Columns of the unsharded results CSV: the training columns of `keras_takd.experiments`
(CHAIN_COLUMNS), `stages` (the chain length: the largest stage at the row's dataset and
temperature), the `keras_takd.metrics.METRIC_COLUMNS` of every evaluated unit, and
`eval_config`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import math
import pathlib
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from keras_takd import files, metrics, results

ATTACKS: tuple[str, ...] = metrics.ATTACKS
MASKED = metrics.MASKED_L2_PREFIX
ATTACK_FUNCTIONS = {
    "l0": "carlini_wagner_l0",
    "l2": "carlini_wagner_l2",
    "linf": "carlini_wagner_linf",
}
# Budgets of Papernot et al.'s headline measure, by norm (MNIST values of arXiv:1511.04508).
DEFAULT_BUDGETS = {"l2": 1.0, "linf": 0.1}
# Keyword arguments of the attack functions that are not options of an evaluation.
_NOT_OPTIONS = {"targeted", "target", "allow_probabilities", "verbose"}
CONFIG_COLUMN = "eval_config"
SHARD_COLUMNS = ("shard_index", "num_shards")
STAT_SUFFIXES = ("attacked", "excluded", "successes", "sum", "max")
_TRAINING_KEY = results.KEY_COLUMNS


class ConfigMismatchError(ValueError):
    """A results file or cache holds evaluation results of another configuration."""


# --------------------------------------------------------------------------- configuration


def resolve_attack_options(overrides: Mapping[str, Mapping[str, Any]] | None = None) -> dict:
    """Every option of every C&W attack: the attack function's default unless overridden.

    Args:
        overrides: {attack: {option: value}}, e.g. {"l2": {"max_iterations": 1000}}.

    Returns:
        {attack: {option: value}} for all of `ATTACKS`, sorted by option name.

    Raises:
        ValueError: for an unknown attack or an option its function does not take.
    """
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(ATTACKS))
    if unknown:
        raise ValueError(f"unknown attack(s) {unknown}: expected some of {list(ATTACKS)}")
    resolved = {}
    for name in ATTACKS:
        parameters = inspect.signature(_attack_function(name)).parameters.values()
        defaults = {
            p.name: p.default
            for p in parameters
            if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in _NOT_OPTIONS
        }
        bad = sorted(set(overrides.get(name, {})) - set(defaults))
        if bad:
            raise ValueError(
                f"attack {name} has no option(s) {bad}: expected some of {sorted(defaults)}"
            )
        options = {**defaults, **{k: v for k, v in overrides.get(name, {}).items()}}
        resolved[name] = dict(sorted(options.items()))
    return resolved


def _attack_function(name: str) -> Callable:
    from keras_takd import attacks

    return getattr(attacks, ATTACK_FUNCTIONS[name])


def evaluation_config(
    data_name: str,
    test_images: int,
    num_images: int,
    metric_images: int,
    attack_options: Mapping[str, Mapping[str, Any]],
    budgets: Mapping[str, float],
    attack_images: Mapping[str, int] | None = None,
) -> dict:
    """The settings that decide an evaluation's numbers (see the module docstring).

    `attack_images` (per-attack image counts that differ from `num_images`) is recorded only
    when it is not empty, so configurations without it keep the ids they always had.
    """
    config = {
        "data": {"dataset": data_name, "test_images": int(test_images)},
        "num_images": int(num_images),
        "metric_images": int(metric_images),
        "attack_options": {k: dict(v) for k, v in attack_options.items()},
        "budgets": {k: float(v) for k, v in sorted(budgets.items())},
    }
    if attack_images:
        config["attack_images"] = {k: int(v) for k, v in sorted(attack_images.items())}
    return config


def resolve_attack_images(
    num_images: int, attack_images: Mapping[str, int] | None, test_images: int
) -> dict[str, int]:
    """The per-attack image counts that differ from `num_images`, checked.

    Args:
        num_images: how many test images every attack takes unless overridden.
        attack_images: {attack: count} overrides, e.g. {"l0": 20} (L0 costs several times L2).
            The gradient-masking attack takes the count of "l2".
        test_images: the size of the test set.

    Raises:
        ValueError: an unknown attack, or a count outside [1, test_images].
    """
    overrides = dict(attack_images or {})
    unknown = sorted(set(overrides) - set(ATTACKS))
    if unknown:
        raise ValueError(
            f"attack_images names unknown attack(s) {unknown}: expected some of {list(ATTACKS)}"
        )
    for name, count in overrides.items():
        if not 1 <= int(count) <= test_images:
            raise ValueError(
                f"attack_images {name}={count} must be in [1, {test_images}] (the test images)"
            )
    return {name: int(n) for name, n in sorted(overrides.items()) if int(n) != num_images}


def config_id(config: Mapping) -> str:
    """A 12-hex-digit hash of a configuration (stable across runs and machines)."""
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def shard_range(num_images: int, shard_index: int, num_shards: int) -> tuple[int, int]:
    """The contiguous block [start, stop) of the first `num_images` images that a shard attacks.

    Raises:
        ValueError: unless 0 <= shard_index < num_shards and num_images >= 1.
    """
    if num_shards < 1 or not 0 <= shard_index < num_shards:
        raise ValueError(
            f"shard_index must be in [0, num_shards), got shard_index={shard_index}, "
            f"num_shards={num_shards}"
        )
    if num_images < 1:
        raise ValueError(f"num_images must be >= 1, got {num_images}")
    return num_images * shard_index // num_shards, num_images * (shard_index + 1) // num_shards


def shard_results_path(output_dir, shard_index: int, num_shards: int) -> pathlib.Path:
    """Where a shard writes its CSV by default: the results.csv of an unsharded run if N = 1."""
    name = "results.csv" if num_shards == 1 else f"results_shard{shard_index}of{num_shards}.csv"
    return pathlib.Path(output_dir) / name


# --------------------------------------------------------------------------- the run


@dataclasses.dataclass(frozen=True)
class Run:
    """A training run of `keras_takd.main`: its run.json and its trained models' rows."""

    output_dir: pathlib.Path
    run_json: dict
    rows: pd.DataFrame

    @property
    def dataset(self) -> str:
        return self.run_json["configuration"]["data"]["dataset"]

    @property
    def test_images(self) -> int:
        return int(self.run_json["configuration"]["data"]["test_images"])

    @property
    def flags(self) -> dict:
        return self.run_json.get("run_info", {}).get("flags", {}) or {}

    def model_path(self, row) -> pathlib.Path:
        return (
            self.output_dir
            / str(row["dataset"])
            / f"T{float(row['temperature']):g}"
            / f"stage{int(row['stage'])}"
            / "model.keras"
        )


def read_run(output_dir: str | pathlib.Path) -> Run:
    """Reads and checks a training run (run.json, results.csv) without loading TensorFlow.

    Raises:
        FileNotFoundError: output_dir, its run.json or its results.csv is missing.
        ValueError: they are not what `keras_takd.main` writes, or the run has no models.
    """
    out = pathlib.Path(output_dir)
    if not out.is_dir():
        raise FileNotFoundError(
            f"output_dir {out} does not exist: train with keras_takd.main first"
        )
    for name in ("run.json", "results.csv"):
        if not (out / name).is_file():
            raise FileNotFoundError(
                f"{out} is not a keras_takd run: no {name} (train with keras_takd.main first)"
            )
    try:
        run_json = json.loads((out / "run.json").read_text())
        run_json["configuration"]["data"]["dataset"]
        int(run_json["configuration"]["data"]["test_images"])
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"{out}/run.json is not a keras_takd run.json") from None
    rows = _read_csv(out / "results.csv")
    missing = [c for c in _TRAINING_KEY if c not in rows.columns]
    if missing or rows.empty:
        raise ValueError(f"{out}/results.csv is not a keras_takd results file (or has no rows)")
    return Run(out, run_json, rows)


def _read_csv(path: pathlib.Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not a readable CSV ({' '.join(str(e).split())})") from None


def known_columns(run: Run | None = None, sharded: bool = False) -> set[str]:
    """The columns a keras_takd results CSV may hold (of `run`'s own results.csv too)."""
    from_metrics = set(metrics.RESULT_COLUMNS) | {metrics.CHAIN_LENGTH_COLUMN, CONFIG_COLUMN}
    own = set(run.rows.columns) if run is not None else set()
    known = from_metrics | set(results.CHAIN_COLUMNS) | own
    if sharded:
        known |= set(SHARD_COLUMNS) | set(_stat_columns(ATTACKS + (MASKED,)))
    return known


def check_results_file(
    path: str | pathlib.Path, config: str | None, run: Run | None = None, sharded: bool = False
) -> None:
    """Checks that a results CSV may receive rows of evaluation configuration `config`.

    A missing file is fine. Otherwise it must be a keras_takd results CSV (the key columns,
    no column that no keras_takd results file has) whose `eval_config` values, if any, are
    `config` (None: skip that check).

    Raises:
        ValueError: foreign columns or an unreadable file.
        ConfigMismatchError: rows of another evaluation configuration.
    """
    path = pathlib.Path(path)
    if not path.exists():
        return
    table = _read_csv(path)
    missing = [c for c in _TRAINING_KEY if c not in table.columns]
    foreign = sorted(set(table.columns) - known_columns(run, sharded))
    if missing or foreign:
        problem = (
            f"lacks the key columns {missing}" if missing else f"has foreign columns {foreign}"
        )
        raise ValueError(
            f"{path} {problem}: not a keras_takd results file; choose another results path"
        )
    if config is not None and CONFIG_COLUMN in table.columns:
        others = sorted(set(table[CONFIG_COLUMN].dropna().astype(str)) - {config})
        if others:
            raise ConfigMismatchError(
                f"{path} holds evaluation results of configuration {others[0]} (see "
                f"eval/{others[0]}/config.json), this run is {config}: use the same settings, "
                "another results path, or --replace"
            )


# --------------------------------------------------------------------------- statistics


def _stat_columns(prefixes: Sequence[str]) -> list[str]:
    columns = [f"{p}_{s}" for p in prefixes for s in STAT_SUFFIXES]
    return columns + [f"{n}_budget{s}" for n in DEFAULT_BUDGETS for s in ("", "_within")]


def attack_statistics(
    result, prefix: str, correct: np.ndarray, budget: float | None = None
) -> dict[str, float]:
    """Sufficient statistics of one attack on one block of images (mergeable across shards).

    Args:
        result: the `AttackResult` over the correctly classified images, in order.
        prefix: the column prefix ("l0", "l2", "linf", "l2_softmax_T").
        correct: the mask [n] of correctly classified images of the block.
        budget: if given, also count successes within it (in the prefix's norm).

    Returns:
        {attacked, excluded, successes, sum, max} and, with a budget, {budget, within}.
    """
    summary = metrics.robustness_summary(result, prefix, correct)
    attacked = summary[f"{prefix}_attacked"]
    norm = prefix.split("_")[0]
    distances = np.asarray(getattr(result, norm), np.float64)[np.asarray(result.success, bool)]
    stats = {
        "attacked": attacked,
        "excluded": summary[f"{prefix}_excluded"],
        "successes": int(distances.size),
        "sum": math.fsum(distances.tolist()),
        "max": summary[f"{prefix}_max"],
    }
    if budget is not None:
        rate = metrics.success_at_budget(result, norm, budget, correct)
        stats["budget"] = float(budget)
        stats["within"] = int(round(rate * attacked)) if attacked else 0
    return stats


def _empty_statistics(excluded: int, budget: float | None) -> dict:
    stats = {"attacked": 0, "excluded": excluded, "successes": 0, "sum": 0.0, "max": math.nan}
    return stats | ({"budget": float(budget), "within": 0} if budget is not None else {})


def final_columns(prefix: str, stats: Mapping[str, float]) -> dict[str, float]:
    """The METRIC_COLUMNS of one attack from its (merged) statistics."""
    attacked, successes = int(stats["attacked"]), int(stats["successes"])
    row = {
        f"{prefix}_mean": stats["sum"] / successes if successes else math.nan,
        f"{prefix}_max": float(stats["max"]) if successes else math.nan,
        f"{prefix}_success_rate": successes / attacked if attacked else math.nan,
        f"{prefix}_attacked": attacked,
        f"{prefix}_excluded": int(stats["excluded"]),
    }
    if "budget" in stats and not pd.isna(stats["budget"]):
        row[f"{prefix}_budget"] = float(stats["budget"])
        row[f"{prefix}_budget_success_rate"] = (
            int(stats["within"]) / attacked if attacked else math.nan
        )
    return row


def _shard_columns(prefix: str, stats: Mapping[str, float]) -> dict[str, float]:
    row = {f"{prefix}_{s}": stats[s] for s in STAT_SUFFIXES}
    if "budget" in stats:
        row[f"{prefix}_budget"] = stats["budget"]
        row[f"{prefix}_budget_within"] = stats["within"]
    return row


def _column_order(columns, sharded: bool) -> list[str]:
    """Training columns, stages, [shard columns], metric columns, [stats], then the rest."""
    chain = [*results.CHAIN_COLUMNS, metrics.CHAIN_LENGTH_COLUMN]
    order = chain + (list(SHARD_COLUMNS) if sharded else []) + list(metrics.METRIC_COLUMNS)
    order += _stat_columns(ATTACKS + (MASKED,)) + [CONFIG_COLUMN]
    order = list(dict.fromkeys(order))
    columns = list(columns)
    return [c for c in order if c in columns] + [c for c in columns if c not in order]


def write_results(
    path: str | pathlib.Path, rows: Sequence[dict], config: str, sharded: bool = False
) -> pd.DataFrame:
    """Upserts rows into a results CSV (via `experiments.update_results`), columns in order.

    Raises:
        ValueError, ConfigMismatchError: see `check_results_file`.
    """
    check_results_file(path, config, sharded=sharded, run=_fake_run(rows))
    from keras_takd.experiments import update_results  # TensorFlow: after the checks

    table = _tidy(update_results(path, rows), sharded)
    files.write_csv_atomic(path, table)  # again: canonical column order and integer counts
    return table


def _tidy(table: pd.DataFrame, sharded: bool) -> pd.DataFrame:
    """Columns in `_column_order`; counts as integers (nullable), whatever rows had them."""
    table = table[_column_order(table.columns, sharded)].copy()
    counts = ("stage", "stages", "epochs", *SHARD_COLUMNS)
    for column in table.columns:
        if column in counts or column.endswith(("_attacked", "_excluded", "_successes", "_within")):
            values = pd.to_numeric(table[column], errors="coerce")
            if values.notna().any() and (values.dropna() % 1 == 0).all():
                table[column] = values.astype("Int64")
    return table


def _fake_run(rows: Sequence[dict]) -> Run:
    """Lets the columns of the rows being written count as known."""
    return Run(pathlib.Path("."), {}, pd.DataFrame(columns=sorted({k for r in rows for k in r})))


# --------------------------------------------------------------------------- units of work


def _softmax_at_temperature(model, temperature: float):
    """A Keras layer computing softmax(logits / T): what a gradient-masked attacker sees."""
    import keras

    class SoftmaxAtTemperature(keras.layers.Layer):
        def __init__(self):
            super().__init__(name="softmax_at_temperature")
            self.logits_model, self.temperature = model, float(temperature)

        def call(self, x, training=False):
            logits = self.logits_model(x, training=False)
            return keras.ops.softmax(logits / self.temperature, axis=-1)

    return SoftmaxAtTemperature()


def _sha256(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _load_unit(path: pathlib.Path, model_sha: str, images) -> dict | None:
    """The cached unit if it was computed for this model and these images, else None."""
    if not path.is_file():
        return None
    try:
        cached = json.loads(path.read_text())
    except ValueError:
        return None  # a truncated file cannot happen (atomic writes), but never trust one
    if cached.get("model_sha256") != model_sha or cached.get("images") != list(images):
        return None
    return cached


def _run_attack(name, model, x, y, correct, temperature, options, budget, verbose):
    """Attacks the correctly classified images of a block; returns (statistics, per_image)."""
    prefix = MASKED if name == MASKED else name
    attack = "l2" if name == MASKED else name
    if not correct.any():
        return _empty_statistics(int((~correct).sum()), budget), {}
    target = _softmax_at_temperature(model, temperature) if name == MASKED else model
    kwargs = dict(options[attack], verbose=verbose)
    if name == MASKED:
        kwargs["allow_probabilities"] = True
    result = _attack_function(attack)(target, x[correct], y[correct], **kwargs)
    stats = attack_statistics(result, prefix, correct, budget)
    per_image = {
        "index": np.flatnonzero(correct).tolist(),
        "success": np.asarray(result.success, bool).tolist(),
        "distance": np.asarray(getattr(result, attack), np.float64).tolist(),
    }
    return stats, per_image


@dataclasses.dataclass
class _Model:
    row: dict
    path: pathlib.Path
    sha: str
    unit_dir: pathlib.Path
    keras_model: Any = None

    def load(self):
        if self.keras_model is None:
            import keras

            self.keras_model = keras.saving.load_model(self.path)
        return self.keras_model


def _models(run: Run, cache: pathlib.Path) -> list[_Model]:
    produced = known_columns(None, sharded=True) - set(results.CHAIN_COLUMNS)
    rows = run.rows.sort_values(list(_TRAINING_KEY), kind="stable")
    chain_length = rows.groupby(["dataset", "temperature"])["stage"].transform("max")
    models = []
    for (_, row), stages in zip(rows.iterrows(), chain_length, strict=True):
        base = {c: row[c] for c in row.index if c not in produced}
        if pd.isna(base.get(metrics.CHAIN_LENGTH_COLUMN)):  # runs from before the column
            base[metrics.CHAIN_LENGTH_COLUMN] = int(stages)
        path = run.model_path(row)
        if not path.is_file():
            raise FileNotFoundError(f"model {path} of results.csv is missing: retrain the run")
        unit_dir = cache / str(row["dataset"]) / f"T{float(row['temperature']):g}"
        models.append(_Model(base, path, _sha256(path), unit_dir / f"stage{int(row['stage'])}"))
    return models


def evaluate_run(
    output_dir: str | pathlib.Path,
    data,
    attacks: Sequence[str] = ATTACKS,
    num_images: int = 1000,
    attack_options: Mapping[str, Mapping[str, Any]] | None = None,
    budgets: Mapping[str, float] | None = None,
    gradient_masking: bool = True,
    attack_images: Mapping[str, int] | None = None,
    metric_images: int | None = None,
    shard_index: int = 0,
    num_shards: int = 1,
    results_path: str | pathlib.Path | None = None,
    verbose: bool = False,
    log: Callable[[str], None] | None = None,
    replace: bool = False,
) -> pd.DataFrame:
    """Evaluates every model of a training run; resumable, shardable (module docstring).

    Args:
        output_dir: a `keras_takd.main` run (run.json, results.csv, the models).
        data: the run's `keras_takd.data.Dataset` (only the test set is used; it must have as
            many test images as the run's).
        attacks: which of "l0", "l2", "linf" to run (any order; may be empty).
        num_images: attack the first this many test images (C&W: 1,000); misclassified ones
            are skipped and counted.
        attack_images: {attack: count} to attack a different number of images with some
            attacks (e.g. {"l0": 20}: L0 costs several times L2); the gradient-masking attack
            follows "l2". Shards split each attack's images the same way.
        attack_options: {attack: {option: value}} over the attack functions' defaults (e.g.
            the paper's IV-C settings); the gradient-masking attack uses the L2 options.
        budgets: {"l2": ..., "linf": ...} for the fixed-budget success rates (default
            `DEFAULT_BUDGETS`).
        gradient_masking: also run L2 against softmax(logits / T) (`l2_softmax_T_*`).
        metric_images: compute the attack-free metrics on this test prefix (None: all).
        shard_index: which block of the attacked images this process takes.
        num_shards: into how many contiguous blocks they are split.
        results_path: the CSV to write (default: output_dir/results.csv, or
            output_dir/results_shard<i>of<N>.csv for a shard).
        verbose: show the attacks' progress bars.
        log: called with one line per finished unit.
        replace: if `results_path` holds the evaluation of another configuration, drop its
            evaluation columns (keeping the training columns) instead of refusing. Nothing is
            lost: its units stay cached under eval/<its config>/, and rerunning with its
            settings writes them back without recomputing.

    Returns:
        The results table written to `results_path`.

    Raises:
        FileNotFoundError, ValueError: not a run, unknown attack or option, bad sizes or shard.
        ConfigMismatchError: `results_path` holds results of another configuration.
    """
    run = read_run(output_dir)
    log = log or (lambda line: None)
    attacks = _check_attacks(attacks)
    x, y = _check_data(run, data)
    metric_images = len(x) if metric_images is None else int(metric_images)
    for name, value in (("num_images", num_images), ("metric_images", metric_images)):
        if not 1 <= value <= len(x):
            raise ValueError(f"{name} must be in [1, {len(x)}] (the test images), got {value}")
    shard_range(num_images, shard_index, num_shards)  # checks the shard
    per_attack = resolve_attack_images(num_images, attack_images, len(x))
    budgets = {**DEFAULT_BUDGETS, **(budgets or {})}
    options = resolve_attack_options(attack_options)
    config = evaluation_config(
        run.dataset, len(x), num_images, metric_images, options, budgets, per_attack
    )
    cid = config_id(config)
    sharded = num_shards > 1
    path = pathlib.Path(results_path or shard_results_path(run.output_dir, shard_index, num_shards))
    if replace:
        _drop_other_evaluation(path, cid, run, sharded)
    check_results_file(path, cid, run, sharded)
    cache = run.output_dir / "eval" / cid
    files.write_json_atomic(cache / "config.json", config)
    units = (["metrics"] if shard_index == 0 else []) + list(attacks)
    units += [MASKED] if gradient_masking and "l2" in attacks else []
    models = _models(run, cache)
    shard_dir = f"shard{shard_index}of{num_shards}"
    blocks = {
        unit: shard_range(
            per_attack.get("l2" if unit == MASKED else unit, num_images), shard_index, num_shards
        )
        for unit in ATTACKS + (MASKED,)
    }
    done = {id(m): _cached_units(m, shard_dir, blocks, metric_images) for m in models}

    def table():
        rows = [_row(m, done[id(m)], cid, sharded, shard_index, num_shards) for m in models]
        return write_results(path, rows, cid, sharded)

    result = table()
    for model in models:
        for unit in units:
            if unit in done[id(model)]:
                continue
            began = time.perf_counter()
            if unit == "metrics":
                value = _metrics_unit(model, x[:metric_images], y[:metric_images])
                unit_path = model.unit_dir / "metrics.json"
            else:
                start, stop = blocks[unit]
                value = _attack_unit(
                    unit, model, x[start:stop], y[start:stop], options, budgets, verbose
                )
                value["images"] = [start, stop]
                unit_path = model.unit_dir / shard_dir / f"{unit}.json"
            value |= {"model_sha256": model.sha, "seconds": time.perf_counter() - began}
            files.write_json_atomic(unit_path, value)
            done[id(model)][unit] = value
            result = table()
            log(_unit_line(model.row, unit, value))
    return result


def _drop_other_evaluation(path: pathlib.Path, config: str, run: Run, sharded: bool) -> None:
    """Rewrites `path` with only its training columns if it holds another configuration."""
    try:
        check_results_file(path, config, run, sharded)
    except ConfigMismatchError:
        table = _read_csv(path)
        kept = [c for c in table.columns if c in results.CHAIN_COLUMNS or c in SHARD_COLUMNS]
        files.write_csv_atomic(path, table[kept])


def _check_attacks(attacks: Sequence[str]) -> list[str]:
    attacks = list(attacks)
    unknown = [a for a in attacks if a not in ATTACKS]
    if unknown:
        raise ValueError(f"unknown attack(s) {unknown}: expected some of {list(ATTACKS)}")
    return [a for a in ATTACKS if a in attacks]


def _check_data(run: Run, data) -> tuple[np.ndarray, np.ndarray]:
    if data.name != run.dataset or len(data.x_test) != run.test_images:
        raise ValueError(
            f"{run.output_dir} was trained on {run.test_images} {run.dataset} test images, the "
            f"data given has {len(data.x_test)} {data.name} test images: load the run's data"
        )
    return np.asarray(data.x_test, np.float32), np.asarray(data.y_test)


def _cached_units(model: _Model, shard_dir: str, blocks: Mapping, metric_images: int) -> dict:
    done = {}
    cached = _load_unit(model.unit_dir / "metrics.json", model.sha, [0, metric_images])
    if cached is not None:
        done["metrics"] = cached
    for unit in ATTACKS + (MASKED,):
        path = model.unit_dir / shard_dir / f"{unit}.json"
        cached = _load_unit(path, model.sha, blocks[unit])
        if cached is not None:
            done[unit] = cached
    return done


def _metrics_unit(model: _Model, x, y) -> dict:
    values = metrics.model_metrics(model.load(), x, y)
    return {"metrics": dict(values), "images": [0, len(x)]}


def _attack_unit(unit, model: _Model, x, y, options, budgets, verbose) -> dict:
    keras_model = model.load()
    correct = metrics.correctly_classified(keras_model, x, y)
    budget = budgets.get(unit) if unit in ATTACKS else None
    temperature = float(model.row["temperature"])
    stats, per_image = _run_attack(
        unit, keras_model, x, y, correct, temperature, options, budget, verbose
    )
    return {"statistics": stats, "per_image": per_image}


def _row(model: _Model, done: Mapping, cid: str, sharded: bool, index: int, shards: int) -> dict:
    row = dict(model.row)
    if sharded:
        row |= {"shard_index": index, "num_shards": shards}
    if "metrics" in done and (index == 0 or not sharded):
        row |= done["metrics"]["metrics"]
    for unit in ATTACKS + (MASKED,):
        if unit in done:
            stats = done[unit]["statistics"]
            row |= _shard_columns(unit, stats) if sharded else final_columns(unit, stats)
    row[CONFIG_COLUMN] = cid
    return row


def _unit_line(row: Mapping, unit: str, value: Mapping) -> str:
    where = f"{row['dataset']} T={float(row['temperature']):g} stage {int(row['stage'])}"
    if unit == "metrics":
        m = value["metrics"]
        what = f"accuracy {100 * m['test_accuracy']:.2f}%, confidence {m['confidence']:.3f}"
    else:
        s = final_columns(unit, value["statistics"])
        what = (
            f"success {s[f'{unit}_success_rate']:.2f} of {s[f'{unit}_attacked']}, "
            f"mean {s[f'{unit}_mean']:.4g}, max {s[f'{unit}_max']:.4g}"
        )
    return f"{where} {unit}: {what} ({value['seconds']:.1f} s)"


# --------------------------------------------------------------------------- merging shards


def merge_shards(paths: Sequence[str | pathlib.Path]) -> pd.DataFrame:
    """Combines the shard CSVs of one evaluation into the table an unsharded run writes.

    Args:
        paths: every `results_shard<i>of<N>.csv` of the evaluation, i = 0 .. N - 1.

    Returns:
        The merged table (columns as in an unsharded results.csv).

    Raises:
        FileNotFoundError: a path is missing.
        ValueError: a file is not a shard CSV, shards are missing or repeated, hold different
            models, or one shard lacks an attack that another has.
        ConfigMismatchError: the shards come from different evaluation configurations.
    """
    shards = [_read_shard(pathlib.Path(p)) for p in paths]
    if not shards:
        raise ValueError("no shard CSV given")
    _check_shard_set(paths, shards)
    key = list(_TRAINING_KEY)
    ordered = [s.sort_values(key, kind="stable").reset_index(drop=True) for s in shards]
    by_index = sorted(zip(paths, ordered, strict=True), key=lambda pair: pair[1].shard_index[0])
    rows = [_merge_row([(p, s.iloc[i]) for p, s in by_index]) for i in range(len(ordered[0]))]
    return _tidy(pd.DataFrame(rows), sharded=False)


def _read_shard(path: pathlib.Path) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"shard CSV {path} not found")
    table = _read_csv(path)
    missing = [c for c in (*_TRAINING_KEY, *SHARD_COLUMNS, CONFIG_COLUMN) if c not in table.columns]
    if missing or table.empty:
        raise ValueError(
            f"{path} is not a shard CSV of keras_takd.evaluate (lacks {missing} or has no rows)"
        )
    check_results_file(path, None, sharded=True)
    for column in SHARD_COLUMNS + (CONFIG_COLUMN,):
        if table[column].nunique(dropna=False) != 1:
            raise ValueError(f"{path} mixes several values of {column}: not one shard's CSV")
    return table


def _check_shard_set(paths, shards: list[pd.DataFrame]) -> None:
    configs = {str(s[CONFIG_COLUMN][0]) for s in shards}
    if len(configs) > 1:
        raise ConfigMismatchError(
            f"the shards come from different evaluation configurations {sorted(configs)}: "
            "merge only shards of one evaluation"
        )
    counts = {int(s.num_shards[0]) for s in shards}
    indices = sorted(int(s.shard_index[0]) for s in shards)
    if len(counts) > 1 or indices != list(range(max(counts))):
        raise ValueError(
            f"expected shards 0..{max(counts) - 1} of {max(counts)} once each, got shard "
            f"indices {indices} (num_shards {sorted(counts)})"
        )
    keys = [set(map(tuple, s[list(_TRAINING_KEY)].astype(str).values)) for s in shards]
    for path, k in zip(paths, keys, strict=True):
        if k != keys[0]:
            raise ValueError(f"{path} holds other models than {paths[0]}: not shards of one run")


def _merge_row(parts: list[tuple[Any, pd.Series]]) -> dict:
    """One model's merged row from its row in every shard, in shard order."""
    first = parts[0][1]
    row = {c: first[c] for c in first.index if c not in _stat_columns(ATTACKS + (MASKED,))}
    for column in SHARD_COLUMNS:
        row.pop(column)
    for prefix in ATTACKS + (MASKED,):
        present = [
            f"{prefix}_attacked" in s.index and not pd.isna(s[f"{prefix}_attacked"])
            for _, s in parts
        ]
        if not any(present):
            continue
        if not all(present):
            lacking = [str(p) for (p, _), ok in zip(parts, present, strict=True) if not ok]
            raise ValueError(
                f"{lacking[0]} lacks {prefix} results for {first['dataset']} "
                f"T={first['temperature']:g} stage {first['stage']}: finish that shard first"
            )
        row |= final_columns(prefix, _merge_statistics(prefix, [s for _, s in parts]))
    return row


def _merge_statistics(prefix: str, rows: list[pd.Series]) -> dict:
    """Adds counts and sums, takes the largest max over shards with successes."""
    stats = {
        name: sum(int(s[f"{prefix}_{name}"]) for s in rows)
        for name in ("attacked", "excluded", "successes")
    }
    stats["sum"] = math.fsum(float(s[f"{prefix}_sum"]) for s in rows)
    maxima = [float(s[f"{prefix}_max"]) for s in rows if s[f"{prefix}_successes"]]
    stats["max"] = max(maxima, default=math.nan)
    if f"{prefix}_budget_within" in rows[0].index and not pd.isna(rows[0][f"{prefix}_budget"]):
        stats["budget"] = float(rows[0][f"{prefix}_budget"])
        stats["within"] = sum(int(s[f"{prefix}_budget_within"]) for s in rows)
    return stats
