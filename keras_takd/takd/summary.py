r"""`python -m keras_takd.takd.summary`: a run at a glance, in the terminal.

What a user wants after a run of `keras_takd.main` (and `keras_takd.takd.evaluate`), before
the figures: per model, the test accuracy with its 95% interval; per model and attack
(Carlini & Wagner, arXiv:1608.04644; the gradient-masking check of Mandal & Guo), the share
of attacked images fooled and the mean minimal perturbation, each with its interval and the
number of images it rests on; and the evaluation's settings in words (from
`<output_dir>/eval/<id>/config.json`, the id of the results' `eval_config` column).

  python -m keras_takd.takd.summary --output_dir=runs/smoke

Intervals: accuracy and success rates are Wilson score intervals
(`keras_takd.core.statistics.proportion`); mean perturbations are BCa bootstrap intervals over
the fooled images of the per-image table (`keras_takd.core.statistics.mean_interval`, seed 0).
Reads only; writes nothing.
"""

from __future__ import annotations

import json
import math
import pathlib

import pandas as pd
from absl import flags

from keras_takd.core.cli import run_main
from keras_takd.takd import run_flags as shared_flags
from keras_takd.takd.run_flags import OUTPUT_DIR

_CONFIDENCE = flags.DEFINE_float(
    "confidence", 0.95, "Level of the confidence intervals, in (0, 1)."
)
flags.register_validator(
    "confidence", lambda v: 0 < v < 1, message="--confidence must be in (0, 1), e.g. 0.95"
)
flags.adopt_module_key_flags(shared_flags)

ATTACK_NAMES = {
    "l0": "C&W L0 (pixels)",
    "l2": "C&W L2",
    "linf": "C&W L-inf",
    "l2_softmax_T": "C&W L2 on softmax(z/T)",
}
_NORMS = {"l0": "L0", "l2": "L2", "linf": "L-inf"}


def _percent(estimate) -> str:
    if math.isnan(estimate.estimate):
        return "-"
    if math.isnan(estimate.low):
        return f"{100 * estimate.estimate:.1f}%"
    return f"{100 * estimate.estimate:.1f}% [{100 * estimate.low:.1f}, {100 * estimate.high:.1f}]"


def _value(estimate) -> str:
    if math.isnan(estimate.estimate):
        return "-"
    if math.isnan(estimate.low):
        return f"{estimate.estimate:.4g}"
    return f"{estimate.estimate:.4g} [{estimate.low:.4g}, {estimate.high:.4g}]"


def _model_name(row) -> str:
    return (
        f"{row['dataset']} T={float(row['temperature']):g} stage {int(row['stage'])} {row['role']}"
    )


def accuracy_table(results: pd.DataFrame, test_images: int, confidence: float) -> pd.DataFrame:
    """One row per model: its test accuracy with a Wilson interval, and n.

    Args:
        results: the run's results.csv.
        test_images: the run's test images (n where results lack `metric_images`).
        confidence: the intervals' level.
    """
    from keras_takd.core.statistics import proportion

    rows = []
    for _, row in results.iterrows():
        n = row.get("metric_images", test_images)
        n = int(test_images if pd.isna(n) else n)
        estimate = proportion(round(float(row["test_accuracy"]) * n), n, confidence)
        rows.append({"model": _model_name(row), "test accuracy [CI]": _percent(estimate), "n": n})
    return pd.DataFrame(rows)


def robustness_table(per_image: pd.DataFrame, confidence: float) -> pd.DataFrame:
    """One row per model and attack, from the per-image table.

    Columns: model, attack, attacked (correctly classified images it was run on), excluded
    (misclassified, not attacked), fooled (success rate and interval over the attacked
    images), mean distance (the mean minimal perturbation over the fooled images, with its
    bootstrap interval) and n (the fooled images it rests on).
    """
    from keras_takd.core.statistics import mean_interval, proportion

    rows = []
    keys = ["dataset", "temperature", "stage", "role", "attack"]
    order = {a: k for k, a in enumerate(ATTACK_NAMES)}
    groups = per_image.groupby(keys, sort=False)
    for key, group in sorted(groups, key=lambda g: (*g[0][:3], order.get(g[0][4], 99))):
        attacked = group[group["correct"].astype(bool)]
        fooled = attacked[attacked["success"].astype(bool)]
        success = proportion(len(fooled), len(attacked), confidence)
        distance = mean_interval(fooled["distance"].to_numpy(float), confidence, seed=0)
        rows.append(
            {
                "model": _model_name(dict(zip(keys, key, strict=True))),
                "attack": ATTACK_NAMES.get(key[4], key[4]),
                "attacked": len(attacked),
                "excluded": len(group) - len(attacked),
                "fooled [CI]": _percent(success),
                "mean distance [CI]": _value(distance),
                "n": len(fooled),
            }
        )
    return pd.DataFrame(rows)


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


def summarize(output_dir: str | pathlib.Path, confidence: float = 0.95) -> str:
    """The summary of a run folder, as text.

    Args:
        output_dir: a `keras_takd.main` run, evaluated or not.
        confidence: the intervals' level.

    Returns:
        The text `python -m keras_takd.takd.summary` prints.

    Raises:
        FileNotFoundError, ValueError: not a keras_takd run (see
            `keras_takd.takd.evaluation.read_run`).
    """
    from keras_takd.takd.evaluation.runs import read_run

    run = read_run(output_dir)
    results = run.rows
    source = run.run_json.get("run_info", {}).get("data_source", "unknown")
    train = run.run_json["configuration"].get("train", {})
    labels = ", ".join(sorted(set(results["dataset"].astype(str))))
    parts = [
        f"run {run.output_dir}: {labels} ({source}), {len(results)} models, "
        f"{train.get('epochs', '?')} epoch(s) each",
        "",
        f"test accuracy ({100 * confidence:g}% Wilson interval, n test images):",
        accuracy_table(results, run.test_images, confidence).to_string(index=False),
    ]
    from keras_takd.takd.evaluation.per_image import read_per_image

    tables, ids, note = _evaluated(run, results)
    if not tables:
        parts += [
            "",
            "not evaluated yet: python -m keras_takd.takd.evaluate "
            f"--output_dir={run.output_dir} adds robustness",
        ]
        return "\n".join(parts)
    per_image = pd.concat([read_per_image(p) for p in tables], ignore_index=True)
    parts += [
        "",
        f"robustness ({100 * confidence:g}% intervals; fooled: share of the attacked images, "
        "Wilson; mean distance: mean minimal perturbation over the n fooled images, bootstrap):",
        *([note] if note else []),
        robustness_table(per_image, confidence).to_string(index=False),
    ]
    attacks = list(dict.fromkeys(per_image["attack"]))
    for config_id in ids:
        path = run.output_dir / "eval" / config_id / "config.json"
        parts += ["", f"evaluation {config_id} ({path}):"]
        if not path.is_file():
            parts.append(f"  {path} is missing: the settings cannot be shown")
            continue
        config = json.loads(path.read_text())
        parts += [f"  {line}" for line in describe_evaluation(config, attacks)]
    return "\n".join(parts)


def _evaluated(run, results: pd.DataFrame) -> tuple[list[pathlib.Path], list[str], str]:
    """The per-image tables of a run, its evaluation ids, and a note if they are shards'.

    The merged per_image.csv when results.csv holds an evaluation; else the shard tables of an
    evaluation still running or not merged yet (per_image_shard<i>of<N>.csv), with their ids.
    """
    merged = run.output_dir / "per_image.csv"
    if "eval_config" in results and results["eval_config"].notna().any() and merged.is_file():
        return [merged], sorted(set(results["eval_config"].dropna().astype(str))), ""
    shards = sorted(run.output_dir.glob("per_image_shard*of*.csv"))
    ids = set()
    for path in sorted(run.output_dir.glob("results_shard*of*.csv")):
        ids |= set(pd.read_csv(path, usecols=["eval_config"])["eval_config"].dropna().astype(str))
    note = (
        f"(from {len(shards)} shard tables, not merged yet: {', '.join(p.name for p in shards)}; "
        "a shard still running counts only its finished units)"
    )
    return shards, sorted(ids), note if shards else ""


def main(argv: list[str]) -> None:
    del argv  # run_main refuses positional arguments
    print(summarize(OUTPUT_DIR.value, _CONFIDENCE.value), flush=True)


def run() -> None:
    """Console-script entry point `keras-takd-summary`."""
    run_main(main, "keras-takd-summary")


if __name__ == "__main__":
    run()
