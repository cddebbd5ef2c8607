"""FMN L2's budget curve: how many steps until its distances are those of 1,000 steps?

Issue 25 takes FMN L2 as the replicates' measure of robustness. FMN anneals its step size and
epsilon factor over the K steps it is given, so each budget is its own run, not a prefix of a
longer one. On the models of a keras_takd.main run (by default the decisive run's chains at
T = 1 and T = 40, teacher, assistant and student) and the first --images test images that every
one of them classifies correctly, this runs `keras_takd.attacks.fast_minimum_norm` (L2, its
defaults) with each of --budgets steps and reports, per model and budget, the success rate, the
mean L2 over successes, and on the images both this budget and the --reference budget fooled,
the ratio of the mean L2 to the reference's with its BCa bootstrap interval (images resampled
in pairs, `analysis.fmn_vs_cw.ratio_stats`).

The recommended budget is the fewest steps whose ratio interval lies within 1 +- --tolerance
(0.5%) on every model; the fewest whose point estimate does is given beside it.

Each (model, budget) result is cached in --output_dir (outside the repository), keyed by the
model file's weights and the images, so a stopped run resumes.

    nice -n 19 python benchmarks/fmn_budget_curve.py --run_dir=/work/runs/mnist_decisive

Writes benchmarks/results/fmn_budget_curve.json and .md; `--report_only` redraws the .md from
the .json.
"""

from __future__ import annotations

import hashlib
import pathlib
import sys
from typing import Any

import numpy as np
from absl import flags
from analysis.fmn_vs_cw import ratio_stats
from common import cache, reports
from common.environment import RESULTS_DIR, git_commit, machine_info, versions
from common.models import load_run_model
from common.timing import timed, utc_now

from keras_takd.attacks import fast_minimum_norm
from keras_takd.core import cli
from keras_takd.core.data import load_dataset

NAME = "fmn_budget_curve"

FLAGS = flags.FLAGS
flags.DEFINE_string("run_dir", "/work/runs/mnist_decisive", "A keras_takd.main run folder.")
flags.DEFINE_list("temperatures", ["1", "40"], "Temperatures of the run's chains to attack.")
flags.DEFINE_list("stages", ["1", "2", "3"], "Stages of each chain to attack.")
flags.DEFINE_integer("images", 100, "Test images every model classifies correctly.", lower_bound=2)
flags.DEFINE_list("budgets", ["100", "200", "300", "500", "700"], "FMN steps to measure.")
flags.DEFINE_integer("reference", 1000, "The budget the others are compared with.", lower_bound=1)
flags.DEFINE_float("tolerance", 0.005, "Largest relative difference from the reference.")
flags.DEFINE_float("ci_level", 0.95, "Confidence level of the ratio intervals.")
flags.DEFINE_string("data_dir", "/work/shared/data", "Folder holding mnist.npz.")
flags.DEFINE_string("output_dir", "/work/tmp/fmn_budget_curve", "Per-result cache, outside git.")
flags.DEFINE_string("results_dir", str(RESULTS_DIR), "Report folder.")
flags.DEFINE_string("results_name", NAME, "Report files: <results_dir>/<results_name>.{json,md}.")
flags.DEFINE_bool("report_only", False, "Redraw the .md from the .json; run nothing.")


def _models() -> dict[str, tuple[Any, dict]]:
    models = {}
    for temperature in FLAGS.temperatures:
        for stage in FLAGS.stages:
            model, info = load_run_model(FLAGS.run_dir, float(temperature), int(stage))
            models[f"T{temperature} stage{stage} {info['role']}"] = (model, info)
    return models


def _attack(model, x: np.ndarray, y: np.ndarray, steps: int) -> dict[str, Any]:
    with timed() as timing:
        result = fast_minimum_norm(model, x, y, norm="l2", steps=steps)
    return {
        "success": [bool(v) for v in result.success],
        "distance": [float(v) for v in result.l2],
        "seconds": timing.as_dict(),
    }


def _weights_key(model) -> str:
    digest = hashlib.sha256()
    for weight in model.get_weights():
        digest.update(np.ascontiguousarray(weight).tobytes())
    return digest.hexdigest()[:16]


def run_benchmark() -> dict[str, Any]:
    data = load_dataset("mnist", FLAGS.data_dir)
    models = _models()
    right = np.ones(len(data.y_test), bool)
    for model, _ in models.values():
        logits = model.predict(data.x_test, batch_size=1000, verbose=0)
        right &= logits.argmax(axis=1) == data.y_test
    index = np.flatnonzero(right)[: FLAGS.images]
    x, y = data.x_test[index], data.y_test[index]
    budgets = sorted({int(b) for b in FLAGS.budgets} | {FLAGS.reference})
    results: dict[str, Any] = {
        "command": " ".join(["python", *sys.argv]),
        "started": utc_now(),
        "commit": git_commit(pathlib.Path(__file__).parent),
        "machine": machine_info(),
        "versions": versions(["tensorflow", "keras", "numpy", "scipy"]),
        "run_dir": FLAGS.run_dir,
        "images": len(index),
        "last_image_index": int(index[-1]),
        "budgets": budgets,
        "reference": FLAGS.reference,
        "tolerance": FLAGS.tolerance,
        "ci_level": FLAGS.ci_level,
        "models": {},
    }
    images_key = hashlib.sha256(index.tobytes()).hexdigest()[:12]
    for name, (model, info) in models.items():
        folder = cache.cache_folder(
            pathlib.Path(FLAGS.output_dir), "fmn_l2", _weights_key(model), images=images_key
        )
        runs = {
            steps: cache.cached(folder / f"steps{steps}.json", _attack, model, x, y, steps)
            for steps in budgets
        }
        results["models"][name] = {"info": info, "runs": runs, "ratios": {}}
        for steps in budgets:
            ratio = ratio_stats(runs[steps], runs[FLAGS.reference], FLAGS.ci_level)
            results["models"][name]["ratios"][steps] = ratio
        print(f"{name}: done", flush=True)
        reports.write_results(FLAGS.results_dir, FLAGS.results_name, results, markdown_report)
    results["finished"] = utc_now()
    results["recommended"] = recommended_budgets(results)
    reports.write_results(FLAGS.results_dir, FLAGS.results_name, results, markdown_report)
    return results


def recommended_budgets(results: dict[str, Any]) -> dict[str, int | None]:
    """The fewest steps within 1 +- tolerance of the reference on every model.

    Returns:
        "interval": by the ratio's interval (both ends inside), "point": by its estimate;
        None where no budget below the reference qualifies.
    """
    tolerance = results["tolerance"]

    def within(ratio: dict, low_key: str, high_key: str) -> bool:
        low, high = ratio.get(low_key), ratio.get(high_key)
        return low is not None and 1 - tolerance <= low and high <= 1 + tolerance

    out: dict[str, int | None] = {"interval": None, "point": None}
    for steps in results["budgets"]:
        ratios = [m["ratios"][str(steps)] for m in _json_models(results)]
        if out["interval"] is None and all(
            within(r, "ratio_of_means_low", "ratio_of_means_high") for r in ratios
        ):
            out["interval"] = steps
        if out["point"] is None and all(
            within(r, "ratio_of_means", "ratio_of_means") for r in ratios
        ):
            out["point"] = steps
    return out


def _json_models(results: dict[str, Any]) -> list[dict]:
    """The models' records with budgets as string keys (as after a JSON round trip)."""
    return [
        m | {"ratios": {str(k): v for k, v in m["ratios"].items()}}
        for m in results["models"].values()
    ]


def _mean(run: dict) -> float:
    success = np.array(run["success"])
    return float(np.mean(np.array(run["distance"])[success])) if success.any() else float("nan")


def markdown_report(results: dict[str, Any]) -> str:
    level = results["ci_level"]
    lines = [
        "# FMN L2's budget curve: steps against distance, relative to "
        f"{results['reference']:,} steps",
        "",
        f"Command: `{results['command']}` (started {results['started']}, finished "
        f"{results.get('finished', 'not yet: partial')}). keras_takd {results['commit']}; "
        f"{results['machine']['cpu']}, {results['machine']['cores_usable']} cores.",
        "",
        f"Models of the run `{results['run_dir']}`; the first {results['images']} test images "
        f"every one of them classifies correctly (up to index {results['last_image_index']}). "
        "FMN L2 with its defaults, each budget a separate run (its schedules anneal over the "
        "steps it is given). Ratio: mean L2 at this budget / mean L2 at the reference, on the "
        f"images both fooled, with its BCa bootstrap {level:.0%} interval (images resampled "
        "in pairs).",
        "",
        "| model | steps | success | mean L2 | ratio of means [interval] | ratio median "
        "| s / image |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, model in results["models"].items():
        for steps, run in model["runs"].items():
            r = model["ratios"][steps]
            interval = (
                f" [{r['ratio_of_means_low']:.4f}, {r['ratio_of_means_high']:.4f}]"
                if "ratio_of_means_low" in r
                else ""
            )
            lines.append(
                f"| {name} | {int(steps):,} | {np.mean(run['success']):.2f} | "
                f"{_mean(run):.4f} | {r.get('ratio_of_means', float('nan')):.4f}{interval} | "
                f"{r.get('ratio_median', float('nan')):.4f} | "
                f"{run['seconds']['wall_s'] / len(run['success']):.3f} |"
            )
    pick = results.get("recommended")
    if pick:
        tolerance = results["tolerance"]
        lines += [
            "",
            f"Fewest steps within 1 +- {tolerance:.1%} of {results['reference']:,} steps on "
            f"every model: by the {level:.0%} interval, "
            f"{pick['interval'] or 'none below the reference'}; by the point estimate, "
            f"{pick['point'] or 'none below the reference'}.",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    del argv
    if FLAGS.report_only:
        reports.rewrite_report(FLAGS.results_dir, FLAGS.results_name, markdown_report)
        return
    run_benchmark()


if __name__ == "__main__":
    cli.run_main(main, NAME)  # bad input: one line and exit 1, not a traceback
