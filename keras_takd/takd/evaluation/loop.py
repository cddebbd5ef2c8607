"""The evaluation loop: the units a run still needs, run by an executor, stored and tabulated here.

`evaluate_run` reads a trained run, finds every model's finished units in the run's record
that were computed for the same weights, architecture, test images, code and settings
(`cache.cached_units`; one that differs is named in a line), and hands the missing ones
(`units.Unit`) to an executor (`executors`), in two waves: the metrics and attack units, then
the indicator units, which need their attack unit's result. As each result comes back, this
process, the only writer, stores the unit in the record (`cache.store_unit`, one transaction)
and rewrites the results CSV and the per-image table, so a killed evaluation loses at most the
units it was running.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

from keras_takd.core import files, identity, record
from keras_takd.core.results import ConfigMismatchError
from keras_takd.takd import exports, layout
from keras_takd.takd.evaluation import cache, progress
from keras_takd.takd.evaluation.config import (
    EvaluationConfig,
    config_id,
    resolve_attack_options,
    shard_results_path,
)
from keras_takd.takd.evaluation.executors import Executor, SerialExecutor
from keras_takd.takd.evaluation.indicator_units import (
    has_indicators,
    indicated_attack,
    indicator_counts,
    indicator_unit,
    indicator_warnings,
)
from keras_takd.takd.evaluation.per_image import (
    prediction_rows,
    unit_rows,
    write_per_image,
    write_predictions,
)
from keras_takd.takd.evaluation.runs import (
    WEIGHTS_COLUMN,
    Run,
    check_results_file,
    known_columns,
    model_key_columns,
    read_csv,
    read_run,
    row_seed,
)
from keras_takd.takd.evaluation.tables import final_columns, shard_columns, write_results
from keras_takd.takd.evaluation.units import Unit, compute_unit, load_model
from keras_takd.takd.schema import (
    ATTACK_PREFIXES,
    CHAIN_COLUMNS,
    CHAIN_LENGTH_COLUMN,
    CONFIG_COLUMN,
    MASKED_L2_PREFIX,
    SHARD_COLUMNS,
)


def run_units(
    units: Iterable[Unit],
    executor: Executor,
    store: Callable[[Unit, dict], None],
    announce: Callable[[Unit], None] | None = None,
) -> None:
    """Runs `units` on `executor`, calling `store(unit, result)` here as each finishes.

    Args:
        units: the units to compute (none of them cached).
        executor: where they run.
        store: called in this process with each unit and what `compute_unit` returned.
        announce: called with each unit as the executor takes it.
    """

    def taken() -> Iterator[Unit]:
        for unit in units:
            if announce is not None:
                announce(unit)
            yield unit

    for unit, result in executor.map(compute_unit, taken()):
        store(unit, result)


def unit_kinds(config: EvaluationConfig) -> tuple[list[str], list[str]]:
    """The kinds of a model's units: (the first wave's, the second's).

    The first wave holds the metrics (on shard 0) and the attacks; the second the indicator
    units, each of which needs its attack unit's result.
    """
    attacked = list(config.attacks)
    attacked += [MASKED_L2_PREFIX] if config.gradient_masking and "l2" in config.attacks else []
    first = (["metrics"] if config.shard_index == 0 else []) + attacked
    checked = [a for a in attacked if has_indicators(a)] if config.indicators else []
    return first, [indicator_unit(a) for a in checked]


def evaluate_run(
    output_dir: str | pathlib.Path,
    data,
    config: EvaluationConfig | None = None,
    output: str | pathlib.Path | None = None,
    verbose: bool = False,
    log: Callable[[str], None] | None = None,
    replace: bool = False,
    executor: Executor | None = None,
    warn: Callable[[str], None] | None = None,
    models: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Evaluates every model of a training run; resumable, shardable (package docstring).

    Args:
        output_dir: a `keras_takd.main` run (run.json, results.csv, the models).
        data: the run's `keras_takd.core.data.Dataset` (only the test set is used; it must have
            as many test images as the run's).
        config: what to compute (default: `EvaluationConfig()`, the paper's C&W evaluation
            of 1,000 images with the attacks' default options).
        output: the results CSV to write (default: output_dir/results.csv, or
            output_dir/results_shard<i>of<N>.csv for a shard).
        verbose: show the attacks' progress bars.
        log: called with progress lines: the number of units to compute at the start, then
            for each unit a line when the executor takes it (with its expected time, from the
            finished units of the same kind) and one when it ends (its results and the time
            left). None: quiet.
        replace: if `output` holds the evaluation of another configuration, drop its
            evaluation columns (keeping the training columns) instead of refusing. Nothing is
            lost: its units stay in the run's record, and rerunning with its
            settings writes them back without recomputing.
        executor: where the units run (default: `SerialExecutor()`, in order, in this
            process).
        warn: called with the warning lines of indicators that tripped (default: `log`);
            each indicator's explanation comes once, with its first warning.
        models: compute the units of these models only, named `T<temperature>/stage<k>`
            (`T<temperature>/seed<s>/stage<k>` in a run of several seeds; `model_name`;
            None: every model). The tables keep every model, with the units
            the record holds.

    Returns:
        The results table written to `output`.

    Raises:
        FileNotFoundError, ValueError: not a run, or image counts the test set cannot hold.
        ConfigMismatchError: `output` holds results of another configuration.
    """
    log = log or (lambda line: None)
    evaluation = open_evaluation(
        output_dir, data, config, output, verbose, log, replace, warn, models
    )
    executor = executor or SerialExecutor()
    evaluation.heartbeat = progress.Heartbeat(log)
    try:
        for wave in (evaluation.attack_wave, evaluation.indicator_wave):
            run_units(wave(), executor, evaluation.store, evaluation.announce)
    finally:
        evaluation.heartbeat.stop()
    return evaluation.table


def open_evaluation(
    output_dir: str | pathlib.Path,
    data,
    config: EvaluationConfig | None = None,
    output: str | pathlib.Path | None = None,
    verbose: bool = False,
    log: Callable[[str], None] | None = None,
    replace: bool = False,
    warn: Callable[[str], None] | None = None,
    models: Sequence[str] | None = None,
) -> _Evaluation:
    """What `evaluate_run` does before its first unit: the plan, the tables, the first lines.

    For a caller that hands the units out itself (`keras_takd.takd.study`): it takes
    `ready_units()`, calls `announce(unit)` as each starts and `store(unit, result)` as each
    returns, and reads `table`. Arguments as `evaluate_run`'s (it has no executor).

    Returns:
        The evaluation, with every unit the run's record holds already counted as done.

    Raises:
        As `evaluate_run`.
    """
    config = config or EvaluationConfig()
    run = read_run(output_dir)
    log = log or (lambda line: None)
    x, y = _check_data(run, data)
    config.check_test_images(len(x))
    evaluation_identity = _identity(config, run, x, y)
    cid = config_id(evaluation_identity)
    _log_other_test_set(run, cid, evaluation_identity, log)
    default = shard_results_path(run.output_dir, config.shard_index, config.num_shards)
    path = pathlib.Path(output or default)
    if replace:
        _drop_other_evaluation(path, cid, run, config.sharded)
    check_results_file(path, cid, run, config.sharded)
    unit_cache = run.inside(run.output_dir / "eval" / cid)  # a link out of the run is refused
    files.write_json_atomic(unit_cache / "config.json", evaluation_identity)
    metric_images = evaluation_identity["metric_images"]
    all_models = _models(run, (cid, evaluation_identity), config, (x, y, metric_images), log)
    evaluation = _Evaluation(
        path,
        cid,
        config,
        all_models,
        (x, y),
        metric_images=metric_images,
        verbose=verbose,
        log=log,
        selected=_selected(all_models, models),
    )
    evaluation.stored_in = run.output_dir, (cid, evaluation_identity)
    evaluation.record = _recorded(run, path, evaluation_identity, config.sharded)
    evaluation.table = evaluation.write_tables()
    evaluation.warn = warn or log
    log(evaluation.header(run.output_dir))
    cost = progress.cost_line(evaluation.reference_cost(), "flags/smoke_eval.cfg")
    if cost:
        log(cost)
    return evaluation


def _identity(config: EvaluationConfig, run: Run, x: np.ndarray, y: np.ndarray) -> dict:
    """The evaluation's identity: the configuration's, and the test set's content."""
    evaluation = config.identity(run.dataset, len(x))
    evaluation["data"]["test_set_sha256"] = identity.array_sha256(x, y)
    return evaluation


def _log_other_test_set(run: Run, cid: str, wanted: dict, log: Callable[[str], None]) -> None:
    """Logs a line if the run was evaluated with these settings on other test images."""
    for other, recorded in record.evaluations(run.output_dir).items():
        data = {k: v for k, v in recorded.items() if k != "data"}
        if other != cid and data == {k: v for k, v in wanted.items() if k != "data"}:
            differs = identity.differences(recorded["data"], wanted["data"])
            log(f"evaluation {cid}: not evaluation {other}, {', '.join(differs)}: no unit reused")


@dataclasses.dataclass
class _Model:
    """A model of the run: its results row, file, record key, the units it needs
    ({kind: (images, identity)}, `cache.unit_identity`) and those finished ({kind: unit})."""

    row: dict
    path: pathlib.Path
    sha: str
    key: tuple
    wanted: dict[str, tuple[tuple[int, int], dict]]
    done: dict[str, dict]


def _models(
    run: Run,
    evaluation: tuple[str, dict],
    config: EvaluationConfig,
    test_set: tuple[np.ndarray, np.ndarray, int],
    log: Callable[[str], None],
) -> list[_Model]:
    """The run's models in key order, each loaded once to identify its weights."""
    produced = known_columns(None, sharded=True) - set(CHAIN_COLUMNS) - {"seed"}
    key = list(model_key_columns(run.rows.columns))
    rows = run.rows.sort_values(key, kind="stable")
    chain_length = rows.groupby(key[:-1])["stage"].transform("max")  # a chain: all but stage
    seeds = _Seeds(run)
    wanted = _Wanted(config, *test_set)
    stored = cache.stored_units(run.output_dir, evaluation[0])
    models = []
    for (_, row), stages in zip(rows.iterrows(), chain_length, strict=True):
        base = {c: row[c] for c in row.index if c not in produced}
        if pd.isna(base.get(CHAIN_LENGTH_COLUMN)):  # runs from before the column
            base[CHAIN_LENGTH_COLUMN] = int(stages)
        path = run.model_file(row)  # inside the run folder, complete (else named)
        _, sha = load_model(path)
        model = {"weights_sha256": sha, "architecture_sha256": identity.architecture_sha256(path)}
        key, needs = seeds.key(row), wanted.of(model)
        name = functools.partial(progress.unit_name, base)
        done = cache.cached_units(stored, key, needs, name, log)
        models.append(_Model(base, path, sha, key, needs, done))
    return models


def model_name(row: Mapping) -> str:
    """`T<temperature>/stage<k>` (`T<temperature>/seed<s>/stage<k>` in a run of several
    seeds): a model's folder below its dataset, as --models names it."""
    folder = layout.model_folder("", row["temperature"], row["stage"], row_seed(row))
    return folder.as_posix()


def _selected(models: list[_Model], names: Sequence[str] | None) -> set[pathlib.Path] | None:
    """The paths of the models `names` selects (None: all).

    Raises:
        ValueError: a name the run has no model of.
    """
    if names is None:
        return None
    have = {model_name(m.row): m.path for m in models}
    missing = [n for n in names if n not in have]
    if missing:
        raise ValueError(
            f"models {','.join(missing)}: the run has no such model (it has {','.join(have)})"
        )
    return {have[n] for n in names}


class _Seeds:
    """The record key (`record.MODEL_KEY`) of a run's rows: their own seed (a run of several
    seeds), else their seed in the record, else the run's seed (a run trained before
    records)."""

    def __init__(self, run: Run) -> None:
        self.default = int(run.run_json["configuration"].get("train", {}).get("seed", 0))
        self.seeds = {
            (m["dataset"], m["temperature"], m["stage"]): m["seed"]
            for m in record.models(run.output_dir)
        }

    def key(self, row: Mapping) -> tuple:
        dataset, temperature, stage = (
            str(row["dataset"]),
            float(row["temperature"]),
            int(row["stage"]),
        )
        seed = row_seed(row)
        if seed is None:
            seed = self.seeds.get((dataset, temperature, stage), self.default)
        return dataset, temperature, seed, stage


class _Wanted:
    """The images and identity of every unit a model may have (`cache.unit_identity`)."""

    def __init__(self, config: EvaluationConfig, x: np.ndarray, y: np.ndarray, metric_images: int):
        self.config, self.x, self.y = config, x, y
        self.images = {"metrics": (0, metric_images)}
        for attack in ATTACK_PREFIXES:
            block = config.block(attack)
            self.images |= {attack: block, indicator_unit(attack): block}
        self.hashed: dict[tuple[int, int], str] = {}

    def _test_set_sha256(self, images: tuple[int, int]) -> str:
        if images not in self.hashed:
            start, stop = images
            self.hashed[images] = identity.array_sha256(self.x[start:stop], self.y[start:stop])
        return self.hashed[images]

    def of(self, model: Mapping[str, str]) -> dict[str, tuple[tuple[int, int], dict]]:
        """{kind: (images, identity)} of the model with these weights and architecture."""
        return {
            kind: (
                images,
                cache.unit_identity(kind, self.config, model, self._test_set_sha256(images)),
            )
            for kind, images in self.images.items()
        }


class _Evaluation:
    """The state of one evaluation in the calling process: its plan, its units, its tables."""

    def __init__(
        self,
        path: pathlib.Path,
        cid: str,
        config: EvaluationConfig,
        models: list[_Model],
        test_set: tuple[np.ndarray, np.ndarray],
        metric_images: int,
        verbose: bool,
        log: Callable[[str], None],
        selected: set[pathlib.Path] | None = None,
    ) -> None:
        self.path, self.cid, self.config, self.models = path, cid, config, models
        self.selected = selected
        self.x, self.y = test_set
        self.metric_images, self.verbose, self.log = metric_images, verbose, log
        self.first_kinds, self.later_kinds = unit_kinds(config)
        todo = self._todo(self.first_kinds) + self._todo(self.later_kinds)
        self.steps = {(m.path, k): step for step, (m, k) in enumerate(todo, 1)}
        self.remaining = [(m.path, k) for m, k in todo]
        self.by_path = {m.path: m for m in models}
        self.explained: set[str] = set()
        self.warn, self.heartbeat = log, None
        self.record: tuple[pathlib.Path, dict] | None = None
        self.stored_in: tuple[pathlib.Path, tuple[str, dict]] | None = None
        self.table: pd.DataFrame | None = None

    def header(self, folder: pathlib.Path) -> str:
        """The first line: how many units, of which kinds, how many to compute."""
        kinds = self.first_kinds + self.later_kinds
        cached = sum(kind in m.done for m in self.models for kind in kinds)
        selected = "" if self.selected is None else f" ({len(self.selected)} selected)"
        return (
            f"evaluation {self.cid}: {len(self.models)} models{selected} x {len(kinds)} units "
            f"({', '.join(kinds)}), {len(self.remaining)} to compute, {cached} cached in "
            f"{record.record_path(folder)}"
        )

    def reference_cost(self) -> dict[str, float]:
        """{kind: expected seconds} of the attack units to compute that have a reference."""
        defaults = resolve_attack_options()
        cost = {}
        for _, kind in self._todo(self.first_kinds):
            attack = "l2" if kind == MASKED_L2_PREFIX else kind
            default = self.config.attack_options.get(attack) == defaults.get(attack)
            start, stop = self.config.block(kind)
            seconds = progress.reference_seconds(kind, stop - start, default)
            if seconds is not None:
                cost[kind] = cost.get(kind, 0.0) + seconds
        return cost

    def _todo(self, kinds: list[str]) -> list[tuple[_Model, str]]:
        return [
            (m, kind)
            for m in self.models
            if self.selected is None or m.path in self.selected
            for kind in kinds
            if kind not in m.done
        ]

    def attack_wave(self) -> list[Unit]:
        """The metrics and attack units to compute."""
        return [self._unit(m, kind) for m, kind in self._todo(self.first_kinds)]

    def indicator_wave(self) -> list[Unit]:
        """The indicator units to compute (after the attack units they check)."""
        return [self._unit(m, kind) for m, kind in self._todo(self.later_kinds)]

    def ready_units(self) -> list[Unit]:
        """The units to compute whose inputs exist: the metrics and attack units, and each
        indicator unit whose attack unit is stored (`store`)."""
        later = [(m, k) for m, k in self._todo(self.later_kinds) if indicated_attack(k) in m.done]
        return [self._unit(m, kind) for m, kind in self._todo(self.first_kinds) + later]

    def _unit(self, model: _Model, kind: str) -> Unit:
        attack = indicated_attack(kind)
        if kind == "metrics":
            images = (0, self.metric_images)
        else:
            images = self.config.block(attack or kind)
        start, stop = images
        return Unit(
            kind=kind,
            model_path=model.path,
            weights_sha256=model.sha,
            temperature=float(model.row["temperature"]),
            images=images,
            x=self.x[start:stop],
            y=self.y[start:stop],
            config=self.config,
            verbose=self.verbose,
            attack_unit=model.done[attack] if attack else None,
        )

    def _step(self, unit: Unit) -> str:
        return f"[{self.steps[unit.model_path, unit.kind]}/{len(self.steps)}]"

    def announce(self, unit: Unit) -> None:
        """Logs the start line of a unit the executor takes, unless it is expected to be short.

        Its end line follows anyway; a unit expected to take `progress.SHORT_UNIT_SECONDS` or
        less (from the finished units of its kind) gets no start line.
        """
        row = self.by_path[unit.model_path].row
        measured = progress.seconds_by_kind(m.done for m in self.models)
        seconds = measured.get(unit.kind)
        expected = float(np.mean(seconds)) if seconds else None
        line = progress.start_line(row, unit.kind, unit.images, measured)
        if self.heartbeat is not None:
            name = f"{self._step(unit)} {progress.unit_name(row, unit.kind)}"
            self.heartbeat.started((unit.model_path, unit.kind), name, expected)
        if expected is None or expected > progress.SHORT_UNIT_SECONDS:
            self.log(f"{self._step(unit)} {line}")

    def store(self, unit: Unit, result: dict) -> None:
        """Stores a computed unit in the record, rewrites the tables, logs its end line."""
        model = self.by_path[unit.model_path]
        images, unit_identity = model.wanted[unit.kind]
        folder, evaluation = self.stored_in
        key = (*model.key, unit.kind, *images)
        value = cache.store_unit(folder, evaluation, key, unit_identity, result)
        model.done[unit.kind] = value
        self.table = self.write_tables()
        self.remaining.remove((unit.model_path, unit.kind))
        measured = progress.seconds_by_kind(m.done for m in self.models)
        left = progress.time_left([kind for _, kind in self.remaining], measured)
        if self.heartbeat is not None:
            self.heartbeat.ended((unit.model_path, unit.kind))
        self.log(f"{self._step(unit)} {progress.unit_line(model.row, unit.kind, value)}{left}")
        for line in indicator_warnings(model.row, unit.kind, value, self.explained):
            self.warn(line)

    def write_tables(self) -> pd.DataFrame:
        """Writes the finished units' rows: into the run's record, then its exports (and the
        metrics units' predictions beside the results, `per_image.write_predictions`).

        An evaluation written elsewhere than the run's results.csv (a shard, an `output`)
        writes its CSVs directly.
        """
        per_image = [row for m in self.models for row in _per_image_rows(m)]
        predictions = [
            row
            for m in self.models
            if "metrics" in m.done and self.config.shard_index == 0  # shard 0 owns the metrics
            for row in prediction_rows(m.row, m.done["metrics"], self.y)
        ]
        write_predictions(self.path, predictions)
        if self.record is None:
            rows = [_row(m, self.cid, self.config) for m in self.models]
            written = write_results(self.path, rows, self.cid, self.config.sharded)
            write_per_image(self.path, per_image)
            return written
        folder, identity = self.record
        columns = [_evaluation_columns(m, self.cid, self.config) | _seed(m) for m in self.models]
        per_image = [row | _seed(m) for m in self.models for row in _per_image_rows(m)]
        with record.writing(folder) as connection:
            record.put_evaluation(connection, self.cid, identity)
            record.put_evaluation_rows(connection, self.cid, columns, per_image)
        return exports.export_run(folder)


def _seed(model: _Model) -> dict:
    """{"seed": the model's seed in the record} (`record.MODEL_KEY`)."""
    return {"seed": model.key[record.MODEL_KEY.index("seed")]}


def _recorded(
    run: Run, path: pathlib.Path, identity: dict, sharded: bool
) -> tuple[pathlib.Path, dict] | None:
    """(run folder, identity) if the evaluation writes the run's record.

    It does when it writes the run's own results.csv, unsharded, and the run has a record.
    """
    models = record.models(run.output_dir)
    if sharded or not models or path.resolve() != (run.output_dir / "results.csv").resolve():
        return None
    return run.output_dir, identity


def _row(model: _Model, cid: str, config: EvaluationConfig) -> dict:
    """The model's results row: its training columns and those of its finished units."""
    return dict(model.row) | _evaluation_columns(model, cid, config)


def _evaluation_columns(model: _Model, cid: str, config: EvaluationConfig) -> dict:
    """The columns of the model's results row its finished units give (its key too)."""
    key = model_key_columns(model.row)
    row, done = {c: model.row[c] for c in key}, model.done
    if config.sharded:
        row |= {"shard_index": config.shard_index, "num_shards": config.num_shards}
        row[WEIGHTS_COLUMN] = model.sha
    if "metrics" in done and config.shard_index == 0:
        start, stop = done["metrics"]["images"]
        row |= {"metric_images": stop - start, **done["metrics"]["metrics"]}
    for unit in ATTACK_PREFIXES:
        if unit in done:
            stats = done[unit]["statistics"]
            row |= shard_columns(unit, stats) if config.sharded else final_columns(unit, stats)
        if indicator_unit(unit) in done:
            row |= indicator_counts(unit, done[indicator_unit(unit)]["flags"])
    row[CONFIG_COLUMN] = cid
    return row


def _per_image_rows(model: _Model) -> list[dict]:
    """The per-image rows of one model's finished attack units."""
    rows = []
    for unit in ATTACK_PREFIXES:
        if unit in model.done:
            flags = model.done.get(indicator_unit(unit))
            rows += unit_rows(model.row, unit, model.done[unit], flags)
    return rows


def _drop_other_evaluation(path: pathlib.Path, config: str, run: Run, sharded: bool) -> None:
    """Rewrites `path` with only its training columns if it holds another configuration."""
    try:
        check_results_file(path, config, run, sharded)
    except ConfigMismatchError:
        table = read_csv(path)
        kept = [c for c in table.columns if c in CHAIN_COLUMNS or c in SHARD_COLUMNS]
        files.write_csv_atomic(path, table[kept])


def _check_data(run: Run, data) -> tuple[np.ndarray, np.ndarray]:
    if data.name != run.dataset or len(data.x_test) != run.test_images:
        raise ValueError(
            f"{run.output_dir} was trained on {run.test_images} {run.dataset} test images, the "
            f"data given has {len(data.x_test)} {data.name} test images: load the run's data"
        )
    return np.asarray(data.x_test, np.float32), np.asarray(data.y_test)
