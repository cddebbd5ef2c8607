"""The tables of the terminal summary (`python -m keras_takd.takd.summary`): a run at a glance.

What a user wants after a run of `keras_takd.main` (and `keras_takd.takd.evaluate`), before
the figures: per model, the test accuracy with its interval; per model and attack (Carlini &
Wagner, arXiv:1608.04644; the gradient-masking check of Mandal & Guo), the share of attacked
images fooled and the mean minimal perturbation, each with its interval and the number of
images it rests on (`analysis.statistics.model_robustness`); and the evaluation's settings in
words (from `<run>/eval/<id>/config.json`, the id of the results' `eval_config` column).

Intervals: accuracy and success rates are Wilson score intervals
(`keras_takd.core.statistics.proportion`); mean perturbations are BCa bootstrap intervals over
the fooled images of the per-image table (`keras_takd.core.statistics.mean_interval`, seed 0).
With per-image rows of two or more seeds (independent chains, issue 25) it adds the seed-level
comparisons (`analysis.replicates.seed_level_differences`): per attack, comparison and T the
mean over seeds with its t-interval and two-level bootstrap interval, the between- and
within-seed SDs, the t-test's p and its Holm-adjusted p; the primary comparison the run
declared (`--primary_comparison`, run.json) first; then each comparison beyond the same at
the lowest T, the control (`analysis.replicates.against_control`), and for chains of more than
three models the trend over steps (`analysis.replicates.step_trend`). Reads only; writes nothing;
imports no plotting library.
"""

from __future__ import annotations

import json
import math
import pathlib

import pandas as pd

from keras_takd.core.statistics import DEFAULT_CONFIDENCE, Estimate, proportion
from keras_takd.takd.analysis.replicates import (
    LAST_STEP,
    against_control,
    declaration,
    is_interim,
    parse_comparison,
    seed_level_differences,
    seeds_with,
    step_trend,
)
from keras_takd.takd.analysis.statistics import model_robustness
from keras_takd.takd.analysis.tables import (
    SEED_COLUMN,
    as_bool,
    chain_length,
    per_image_path,
    read_per_image,
    read_results,
)
from keras_takd.takd.schema import CONFIG_COLUMN, INDICATORS, JSMA_ATTACK

ATTACK_NAMES = {
    "l0": "C&W L0 (pixels)",
    "l2": "C&W L2",
    "linf": "C&W L-inf",
    "l2_softmax_T": "C&W L2 on softmax(z/T)",
}
_NORMS = {"l0": "L0", "l2": "L2", "linf": "L-inf"}


def _percent(estimate: Estimate) -> str:
    if math.isnan(estimate.estimate):
        return "-"
    if math.isnan(estimate.low):
        return f"{100 * estimate.estimate:.1f}%"
    return f"{100 * estimate.estimate:.1f}% [{100 * estimate.low:.1f}, {100 * estimate.high:.1f}]"


def _value(estimate: Estimate) -> str:
    if math.isnan(estimate.estimate):
        return "-"
    if math.isnan(estimate.low):
        return f"{estimate.estimate:.4g}"
    return f"{estimate.estimate:.4g} [{estimate.low:.4g}, {estimate.high:.4g}]"


def _model_name(row) -> str:
    """ "mnist T=40 stage 3 student", with "seed 2" after the label in a run of seeds."""
    seed = row.get(SEED_COLUMN)
    seed = "" if seed is None or pd.isna(seed) else f" seed {int(seed)}"
    return (
        f"{row['dataset']}{seed} T={float(row['temperature']):g} stage {int(row['stage'])} "
        f"{row['role']}"
    )


def accuracy_table(results: pd.DataFrame, test_images: int, ci_level: float) -> pd.DataFrame:
    """One row per model: its test accuracy with a Wilson interval, and n.

    Args:
        results: the run's results.csv.
        test_images: the run's test images (n where results lack `metric_images`).
        ci_level: the intervals' level.
    """
    rows = []
    for _, row in results.iterrows():
        n = row.get("metric_images", test_images)
        n = int(test_images if pd.isna(n) else n)
        estimate = proportion(round(float(row["test_accuracy"]) * n), n, ci_level)
        rows.append({"model": _model_name(row), "test accuracy [CI]": _percent(estimate), "n": n})
    return pd.DataFrame(rows)


def robustness_table(per_image: pd.DataFrame, ci_level: float) -> pd.DataFrame:
    """One row per model and attack, from the per-image table (`statistics.model_robustness`).

    Columns: model, attack, attacked (correctly classified images it was run on), excluded
    (misclassified, not attacked), fooled (success rate and interval over the attacked
    images), mean distance (the mean minimal perturbation over the fooled images, with its
    bootstrap interval) and n (the fooled images it rests on). A targeted attack (JSMA, a row
    per (image, target) pair) counts its images in attacked and excluded, with its pairs in
    parentheses; its fooled share and n are of the pairs. A table with a `seed` column gives
    each seed's models rows of their own, named by their seed.
    """
    order = {a: k for k, a in enumerate(ATTACK_NAMES)}
    if SEED_COLUMN in per_image:
        models = [
            m | {SEED_COLUMN: seed}
            for seed, rows in per_image.groupby(SEED_COLUMN, sort=True)
            for m in model_robustness(rows, ci_level).to_dict("records")
        ]
    else:
        models = model_robustness(per_image, ci_level).to_dict("records")
    models.sort(
        key=lambda m: (
            m["dataset"],
            m["temperature"],
            m.get(SEED_COLUMN, 0),
            m["stage"],
            order.get(m["attack"], 99),
        )
    )
    rows = [
        {
            "model": _model_name(model),
            "attack": ATTACK_NAMES.get(model["attack"], model["attack"]),
            **_image_counts(model, per_image),
            "fooled [CI]": _percent(model["success"]),
            "mean distance [CI]": _value(model["distance"]),
            "n": model["fooled"],
        }
        for model in models
    ]
    return pd.DataFrame(rows)


def _image_counts(model: dict, per_image: pd.DataFrame) -> dict:
    """attacked and excluded of one model's row: images; and a targeted attack's pairs."""
    if "target" not in per_image or model["attack"] != JSMA_ATTACK:
        return {"attacked": model["attacked"], "excluded": model["images"] - model["attacked"]}
    rows = per_image[
        (per_image["attack"] == model["attack"])
        & (per_image["temperature"] == model["temperature"])
        & (per_image["stage"] == model["stage"])
        & (per_image["dataset"] == model["dataset"])
    ]
    if SEED_COLUMN in model:
        rows = rows[rows[SEED_COLUMN] == model[SEED_COLUMN]]
    correct = as_bool(rows["correct"])
    images = rows["image"].nunique()
    attacked = rows.loc[correct, "image"].nunique()
    return {"attacked": f"{attacked} ({model['attacked']} pairs)", "excluded": images - attacked}


def _attack_words(name: str, options: dict) -> str:
    options = dict(options)
    steps = options.pop("binary_search_steps", None)
    iterations = options.pop("max_iterations", None)
    words = [f"{steps} binary-search steps of" if steps else "up to"]
    words.append(f"{iterations:,} Adam iterations" if iterations else "the default iterations")
    if steps:
        words.insert(1, "up to")
    parts = [" ".join(words)]
    known = (
        ("learning_rate", "learning rate {}"),
        ("initial_const", "c from {}"),
        ("largest_const", "c at most {}"),
        ("confidence", "margin kappa {}"),
    )
    for option, text in known:
        if option in options:
            value = options.pop(option)
            if value is not None:
                parts.append(text.format(value))
    abort = options.pop("abort_early", None)
    if abort is not None:
        parts.append("early abort " + ("on" if abort else "off"))
    rest = ", ".join(f"{k}={v}" for k, v in sorted(options.items()))
    return f"{ATTACK_NAMES.get(name, name)}: {', '.join(parts)}" + (f" ({rest})" if rest else "")


def describe_evaluation(config: dict, attacks=None) -> list[str]:
    """The settings of an evaluation (its config.json) as sentences, one per line.

    Args:
        config: the evaluation configuration (`EvaluationConfig.identity`).
        attacks: the attacks that ran (default: every attack of the configuration).
    """
    data = config["data"]
    counts = config.get("attack_images", {})
    overrides = ", ".join(f"{_NORMS.get(a, a)}: {n}" for a, n in sorted(counts.items()))
    lines = [
        f"accuracy, sensitivity and confidence on the first {config['metric_images']:,} of "
        f"{data['test_images']:,} {data['dataset']} test images",
        f"attacks on the first {config['num_images']:,} test images"
        + (f" ({overrides})" if overrides else "")
        + "; misclassified images are excluded, not attacked",
    ]
    options = config.get("attack_options", {})
    for name in attacks if attacks is not None else list(options):
        if name in options:
            lines.append(_attack_words(name, options[name]))
    budgets = config.get("budgets", {})
    if budgets:
        lines.append(
            "fixed-budget success (Papernot): "
            + ", ".join(f"{_NORMS.get(k, k)} <= {v:g}" for k, v in sorted(budgets.items()))
        )
    return lines


def summarize(results: str | pathlib.Path, ci_level: float = DEFAULT_CONFIDENCE) -> str:
    """The summary of a run, as text.

    Args:
        results: the results.csv of a `keras_takd.main` run, evaluated or not.
        ci_level: the intervals' level.

    Returns:
        The text `python -m keras_takd.takd.summary` prints.

    Raises:
        FileNotFoundError, ValueError: not a keras_takd run's results.csv (see
            `keras_takd.takd.evaluation.read_run`), or results and per-image tables that
            `tables.read_results` and `tables.read_per_image` refuse, as claims and figures do.
    """
    from keras_takd.takd.evaluation.runs import read_run  # keeps this module TensorFlow-free

    results = pathlib.Path(results)
    if results.name != "results.csv":
        raise ValueError(f"results must be a run's results.csv, got {str(results)!r}")
    if not results.is_file():
        raise FileNotFoundError(
            f"results file {str(results)!r} not found: train with keras_takd.main first"
        )
    rows = read_results(results)  # the analysis' one reader, before the run's own checks
    run = read_run(results.parent)
    parts = [
        _run_line(run),
        "",
        f"test accuracy ({100 * ci_level:g}% Wilson interval, n test images):",
        accuracy_table(rows, run.test_images, ci_level).to_string(index=False),
    ]
    tables, ids, note = _evaluated(results, rows)
    if not tables:
        parts += [
            "",
            "not evaluated yet: python -m keras_takd.takd.evaluate "
            f"--output_dir={run.output_dir} adds robustness",
        ]
        return "\n".join(parts)
    per_image = read_per_image(tables, rows)
    parts += [
        "",
        f"robustness ({100 * ci_level:g}% intervals; fooled: share of the attacked images, "
        "Wilson; mean distance: mean minimal perturbation over the n fooled images, bootstrap; "
        "JSMA's share and n are of (image, target) pairs):",
        *([note] if note else []),
        robustness_table(per_image, ci_level).to_string(index=False),
    ]
    declared = declaration(run.run_json)
    parts += seed_level_lines(per_image, ci_level, *declared)
    parts += step_lines(per_image, ci_level, *declared)
    parts += indicator_lines(_evaluated_rows(run.output_dir / "results.csv", rows))
    attacks = list(dict.fromkeys(per_image["attack"]))
    return "\n".join(parts + _settings(run.output_dir, ids, attacks))


def seed_level_lines(
    per_image: pd.DataFrame,
    ci_level: float,
    primary: str | None = None,
    declared_seeds: int | None = None,
) -> list[str]:
    """The seed-level comparisons of a run of several seeds, the declared primary first.

    Args:
        per_image: the run's per-image table.
        ci_level: the intervals' level.
        primary: the declared primary comparison, e.g. "student-teacher@40", or None.
        declared_seeds: the seeds it was declared for (--num_seeds): with fewer seeds in
            `per_image`, its row says it is an interim look. None: not known.

    Returns:
        A blank line, a header and the table; nothing below two seeds or without a model pair
        of a chain of at most 3 models.
    """
    if not _several_seeds(per_image):
        return []
    table = seed_level_differences(per_image, ci_level)
    if table.empty:  # no 3-model chain (a multi-step run): `step_lines` has its rows
        return []
    declared = parse_comparison(primary) if primary else None
    short = per_image[chain_length(per_image) <= 3]  # a long chain's student is its last step
    rows = []
    for row in table.itertuples(index=False):
        later, earlier = row.comparison.split(" - ")
        is_primary = declared == (later, earlier, float(row.temperature))
        label = _primary_label(short, declared, declared_seeds) if is_primary else ""
        rows.append(
            {
                "comparison": f"{row.comparison}{label}",
                "T": f"{row.temperature:g}",
                "attack": ATTACK_NAMES.get(row.attack, row.attack),
                "mean [t CI]": f"{row.estimate:+.4f} [{row.t_low:+.4f}, {row.t_high:+.4f}]",
                "two-level bootstrap": f"[{row.bootstrap_low:+.4f}, {row.bootstrap_high:+.4f}]",
                "between SD": f"{row.between_sd:.4f}",
                "within SD": f"{row.within_sd:.4f}",
                "p": f"{row.p_value:.2g}",
                "Holm p": f"{row.holm_p:.2g}",
                "seeds": row.seeds,
                "images": row.images,
                "_first": not is_primary,
            }
        )
    ordered = pd.DataFrame(rows).sort_values("_first", kind="stable").drop(columns="_first")
    header = (
        f"seed level ({100 * ci_level:g}% intervals; per seed the mean paired difference later "
        "- earlier model on the images both fooled, then over seeds: t-interval, two-level "
        "bootstrap, t-test of the seed means, Holm over the T; primary declared before the run):"
    )
    return ["", header, ordered.to_string(index=False), *control_lines(table, ci_level)]


def _primary_label(rows: pd.DataFrame, declared: tuple, declared_seeds: int | None) -> str:
    """ " (primary)" beside the declared comparison's row, or " (primary, interim: 4 of 5
    declared seeds)" while fewer seeds of `rows` (chains of its length) hold both its models
    (`declared`: (later role, earlier role, T), the last step's role being "student")."""
    seeds = seeds_with(rows, declared)
    if is_interim(seeds, declared_seeds):
        return f" (primary, interim: {seeds} of {declared_seeds} declared seeds)"
    return " (primary)"


def control_lines(table: pd.DataFrame, ci_level: float) -> list[str]:
    """Each seed-level comparison beyond the same comparison at the lowest T (the control).

    Args:
        table: `seed_level_differences`'s table.
        ci_level: the intervals' level.

    Returns:
        A blank line, a header and the table of `replicates.against_control`; nothing where no
        comparison has two T.
    """
    found = against_control(table, ci_level)
    if found.empty:
        return []
    rows = [
        {
            "comparison": row.comparison,
            "T": f"{row.temperature:g} - {row.control:g}",
            "attack": ATTACK_NAMES.get(row.attack, row.attack),
            "mean [t CI]": _over_seeds_text(row),
            "p": _p_text(row.p_value),
            "seeds": row.seeds,
        }
        for row in found.itertuples(index=False)
    ]
    header = (
        f"against the control ({100 * ci_level:g}% intervals; per seed, the comparison at T - "
        "the same comparison at the lowest T, on the same test images (a seed's chains share "
        "its warm start); over seeds: t-interval and t-test, not declared, not adjusted):"
    )
    return ["", header, pd.DataFrame(rows).to_string(index=False)]


def _several_seeds(per_image: pd.DataFrame) -> bool:
    """Whether the per-image rows hold two or more seeds: a seed-level table needs them."""
    return SEED_COLUMN in per_image and per_image[SEED_COLUMN].nunique() >= 2


def _p_text(p_value: float) -> str:
    """ "0.0024", or "-" where no test could be made."""
    return "-" if math.isnan(p_value) else f"{p_value:.2g}"


def _over_seeds_text(row) -> str:
    """ "+0.0413 [+0.0189, +0.0638]", or "+0.0100 [no interval: fewer than 2 seeds]"."""
    if math.isnan(row.low):
        return f"{row.estimate:+.4f} [no interval: {row.reason}]"
    return f"{row.estimate:+.4f} [{row.low:+.4f}, {row.high:+.4f}]"


def step_lines(
    per_image: pd.DataFrame,
    ci_level: float,
    primary: str | None = None,
    declared_seeds: int | None = None,
) -> list[str]:
    """The multi-step chains' trend over steps at the seed level (`replicates.step_trend`).

    Args:
        per_image: the run's per-image table.
        ci_level: the intervals' level.
        primary: the declared primary comparison; "last-teacher@40" (`replicates.LAST_STEP`)
            marks the last step's row at T = 40 (of the longest chain there) and puts it
            first. None: none declared.
        declared_seeds: the seeds it was declared for: with fewer, its row says it is an
            interim look. None: not known.

    Returns:
        A blank line, a header and the table; nothing below two seeds or without a chain of
        more than three models.
    """
    if not _several_seeds(per_image):
        return []
    found = step_trend(per_image, ci_level)
    if found.empty:
        return []
    declared = parse_comparison(primary) if primary else None
    if declared is not None and declared[:2] != LAST_STEP:
        declared = None  # a 3-model comparison: `seed_level_lines` marks it
    longest = found.groupby("temperature")["stages"].max()  # the last step is the longest's
    rows = []
    for row in found.itertuples(index=False):
        step = "slope per step" if row.step == "slope" else f"step {row.step} - teacher"
        is_primary = (
            declared is not None
            and row.step == str(row.stages) == str(longest[row.temperature])
            and math.isclose(row.temperature, declared[2])
        )
        if is_primary:
            long_chains = per_image[chain_length(per_image) == row.stages]
            step += _primary_label(long_chains, ("student", "teacher", declared[2]), declared_seeds)
        rows.append(
            {
                "chain": f"{row.stages} models",
                "T": f"{row.temperature:g}",
                "attack": ATTACK_NAMES.get(row.attack, row.attack),
                "step": step,
                "mean [t CI]": _over_seeds_text(row),
                "p": _p_text(row.p_value),
                "seeds": row.seeds,
                "images": row.images or "-",
                "_first": not is_primary,
            }
        )
    declared_row = not all(row["_first"] for row in rows)
    ordered = pd.DataFrame(rows).sort_values("_first", kind="stable").drop(columns="_first")
    header = (
        f"multi-step chains, seed level ({100 * ci_level:g}% t-intervals over seeds; per seed "
        "each step's mean paired difference from the teacher on the images both fooled, and "
        "the least-squares slope of the steps' mean distances over the images every step "
        "fooled; t-test of the seed values, not adjusted"
        + ("; primary declared before the run):" if declared_row else "):")
    )
    return ["", header, ordered.to_string(index=False)]


def indicator_lines(results: pd.DataFrame) -> list[str]:
    """The indicators of attack failure that tripped, per model and attack.

    Args:
        results: results rows with `<attack>_<indicator>` counts (`schema.INDICATORS`).

    Returns:
        A blank line, a header and a line per model with a flagged image ("none flagged" if
        none was); nothing if no indicator was checked.
    """
    found = [
        (column.removesuffix(f"_{name}"), name, column)
        for column in results.columns
        for name in INDICATORS
        if column.endswith(f"_{name}") and results[column].notna().any()
    ]
    if not found:
        return []
    lines = []
    for _, row in results.iterrows():
        flagged = [
            f"{attack} {name} {int(row[column])} of {_attacked(row, attack)}"
            for attack, name, column in found
            if pd.notna(row[column]) and row[column] > 0
        ]
        if flagged:
            lines.append(f"  {_model_name(row)}: {', '.join(flagged)}")
    header = (
        "indicators of attack failure (Pintor et al., arXiv:2106.09947; attacked images "
        "flagged, per model and attack; a flag means its robustness may be overstated):"
    )
    return ["", header, *(lines or ["  none flagged"])]


def _attacked(row, attack: str) -> str:
    value = row.get(f"{attack}_attacked")
    return "?" if value is None or pd.isna(value) else str(int(value))


def _evaluated_rows(results_path: pathlib.Path, results: pd.DataFrame) -> pd.DataFrame:
    """The evaluated results rows: results.csv's, or the shard CSVs' before they are merged."""
    if "eval_config" in results and results["eval_config"].notna().any():
        return results
    shards = sorted(results_path.parent.glob("results_shard*of*.csv"))
    return pd.concat([pd.read_csv(p) for p in shards], ignore_index=True) if shards else results


def _run_line(run) -> str:
    source = run.run_json.get("run_info", {}).get("data_source", "unknown")
    train = run.run_json["configuration"].get("train", {})
    labels = ", ".join(sorted(set(run.rows["dataset"].astype(str))))
    return (
        f"run {run.output_dir}: {labels} ({source}), {len(run.rows)} models, "
        f"{train.get('epochs', '?')} epoch(s) each"
    )


def _settings(output_dir: pathlib.Path, ids: list[str], attacks: list[str]) -> list[str]:
    """The lines that state each evaluation's settings (its config.json) in words."""
    parts = []
    for config_id in ids:
        path = output_dir / "eval" / config_id / "config.json"
        parts += ["", f"evaluation {config_id} ({path}):"]
        if not path.is_file():
            parts.append(f"  {path} is missing: the settings cannot be shown")
            continue
        config = json.loads(path.read_text())
        parts += [f"  {line}" for line in describe_evaluation(config, attacks)]
    return parts


def _evaluated(
    results_path: pathlib.Path, results: pd.DataFrame
) -> tuple[list[pathlib.Path], list[str], str]:
    """The per-image tables of a run, its evaluation ids, and a note if they are shards'.

    The merged table beside results.csv when it holds an evaluation; else the tables beside
    the shard CSVs of an evaluation still running or not merged yet (`tables.per_image_path`
    of each results_shard<i>of<N>.csv), with their ids.
    """
    merged = per_image_path(results_path)
    if CONFIG_COLUMN in results and results[CONFIG_COLUMN].notna().any() and merged.is_file():
        return [merged], sorted(set(results[CONFIG_COLUMN].dropna().astype(str))), ""
    shard_results = sorted(results_path.parent.glob("results_shard*of*.csv"))
    shards = [p for p in map(per_image_path, shard_results) if p.is_file()]
    ids = set()
    for path in shard_results:
        shard = read_results(path)
        ids |= set(shard.get(CONFIG_COLUMN, pd.Series()).dropna().astype(str))
    note = (
        f"(from {len(shards)} shard tables, not merged yet: {', '.join(p.name for p in shards)}; "
        "a shard still running counts only its finished units)"
    )
    return shards, sorted(ids), note if shards else ""
