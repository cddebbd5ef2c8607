"""Benchmark of keras_takd's Carlini-Wagner attacks against ART, cleverhans and a bare floor.

On the paper's MNIST network (`keras_takd.core.models.build_model("mnist")`,
trained a few epochs at T = 1 with `keras_takd.core.distillation.train_on_labels`) and the first N
correctly classified MNIST test images, with the same hyperparameters for every library, it
reports per attack the seconds, image-iterations per second, success rate and mean / median
distortion of

* keras_takd's C&W L2, L0 and L-inf attacks on all N images in one batch, and the same attacks
  run one image at a time (on the first `--one_at_a_time_images`, extrapolated to N);
* ART 1.20's CarliniL2Method, CarliniL0Method and CarliniLInfMethod through a
  TensorFlowV2Classifier (on the first `--art_images`; ART runs that exceed `--art_budget_s`
  are stopped and reported as lower bounds), and cleverhans 4's tf2 `carlini_wagner_l2`
  (its exact error is recorded when it does not run);
* the floor: a compiled `tf.while_loop` of forward + backward passes (gradient with respect to
  the images, as an attack takes it) at the same batch size, the most any attack iteration can
  cost less than.

Counting: the model is wrapped in `common.counting.CountingModel`, whose tf.Variable counters count
every forward and backward pass (rows = images) inside compiled loops too. "Optimiser
image-iterations" count the iterations of the original algorithm, one per image per step of
its loop: for keras_takd, the rows whose step count the attacks advance (Adam steps, plus L0's
succeeding iteration, whose step the original takes and discards;
`common.counting.IterationCounter` wraps the attacks' helpers in this process only, no attack
file is changed); for ART, the rows passed to
each `_loss_gradient` call, which all three ART attacks make once per optimiser step. Rows
computed for anything else (padding, examples idle after their solve ended, L-inf's success
check) are the attack's waste.

Settings: C&W's defaults with fewer iterations so that everything runs in about 30 minutes on
two busy CPU cores: L2 5 binary steps x 200 iterations; L0 and L-inf 50 iterations per c, L0's
largest c 1e2 instead of 2e6 (see settings_from_flags).

ART and cleverhans are not dependencies (`references/art.py`, `references/cleverhans.py` say
how to install them); without them, skip them.

Run:
    python benchmarks/cw_speed_vs_references.py
    python benchmarks/cw_speed_vs_references.py --images=8 --batch_size=8 --skip=art,cleverhans \\
        --output_dir=/tmp/bench  # quick check of the harness
    python benchmarks/cw_speed_vs_references.py --report_only  # redraw the .md from the .json
Writes benchmarks/results/cw_speed_vs_references.json and cw_speed_vs_references.md.
"""

from __future__ import annotations

import json
import pathlib
import sys
import time
from typing import Any

import numpy as np
from absl import flags
from analysis.cw_speed import NAME, evaluate_targets, markdown_report
from common import environment, models, reports
from common.counting import CountingModel, IterationCounter, measure_batching_gain, measure_floor
from common.environment import carlini_wagner_attack
from common.timing import timed, utc_now
from references import art, cleverhans

from keras_takd.core import cli, files

FLAGS = flags.FLAGS
flags.DEFINE_integer("images", 100, "Correctly classified test images to attack.", lower_bound=1)
flags.DEFINE_integer("batch_size", 100, "keras_takd batch size (and the floor's).", lower_bound=1)
flags.DEFINE_integer(
    "one_at_a_time_images", 5, "Images attacked one at a time (extrapolated).", lower_bound=1
)
flags.DEFINE_integer("art_images", 3, "Images given to each ART attack.", lower_bound=1)
flags.DEFINE_list(
    "art_budget_s",
    ["200", "60", "90"],
    "Seconds after which ART's L2, L0 and L-inf attacks are stopped (lower bounds then).",
)
flags.DEFINE_integer("cleverhans_images", 10, "Images given to cleverhans.", lower_bound=1)
flags.DEFINE_integer("l2_iterations", 200, "C&W L2 iterations per binary step.", lower_bound=1)
flags.DEFINE_integer("l2_binary_steps", 5, "C&W L2 binary-search steps.", lower_bound=1)
flags.DEFINE_float(
    "l2_initial_const",
    1e-3,
    "C&W L2 first c (the original's 1e-3). ART doubles c after a failure where the original"
    " multiplies it by 10, so a larger start (e.g. 1) lets ART reach the c that fools.",
    lower_bound=0,
)
flags.DEFINE_integer("l0_iterations", 50, "C&W L0 iterations per c.", lower_bound=1)
flags.DEFINE_float("l0_largest_const", 1e2, "C&W L0 largest c (original: 2e6).")
flags.DEFINE_integer("linf_iterations", 50, "C&W L-inf iterations per c.", lower_bound=1)
flags.DEFINE_integer("floor_iterations", 100, "Iterations per floor repeat.", lower_bound=1)
flags.DEFINE_integer("floor_repeats", 5, "Floor repeats (median reported).", lower_bound=1)
flags.DEFINE_integer(
    "overhead_iterations", 200, "Iterations per interleaved overhead round.", lower_bound=1
)
flags.DEFINE_integer("overhead_rounds", 5, "Interleaved overhead rounds.", lower_bound=1)
flags.DEFINE_integer("train_epochs", 3, "Epochs of the MNIST model.", lower_bound=1)
flags.DEFINE_string("cache_dir", "/tmp/keras_takd_benchmarks", "Trained-model cache, outside git.")
flags.DEFINE_string("data_dir", "/work/shared/data", "Folder holding mnist.npz.")
flags.DEFINE_string("output_dir", str(environment.RESULTS_DIR), "Results folder.")
flags.DEFINE_bool(
    "rewrite_report",
    False,
    "Only recompute the targets, and rewrite the json and the report.",
)
flags.DEFINE_bool(
    "report_only", False, "Compute nothing: redraw the report from <output_dir>'s json."
)
flags.DEFINE_list("attacks", ["l2", "linf", "l0"], "Attacks to run, in order: l2, l0, linf.")
flags.DEFINE_list(
    "skip",
    [],
    "Parts to skip: any of floor, overhead, batched, one_at_a_time, art, cleverhans.",
)
flags.register_validator(
    "attacks", lambda v: set(v) <= {"l2", "l0", "linf"}, "attacks: any of l2, l0, linf"
)
flags.register_validator(
    "skip",
    lambda v: set(v) <= {"floor", "overhead", "batched", "one_at_a_time", "art", "cleverhans"},
    "skip: any of floor, overhead, batched, one_at_a_time, art, cleverhans",
)
flags.register_validator(
    "art_budget_s",
    lambda v: len(v) == 3 and all(float(t) > 0 for t in v),
    "art_budget_s: three positive seconds, for l2, l0, linf",
)


def settings_from_flags() -> dict[str, dict[str, Any]]:
    """The shared hyperparameters of each attack (C&W's defaults, fewer iterations)."""
    return {
        "l2": dict(
            confidence=0.0,
            learning_rate=1e-2,
            binary_search_steps=FLAGS.l2_binary_steps,
            max_iterations=FLAGS.l2_iterations,
            initial_const=FLAGS.l2_initial_const,
            abort_early=True,
        ),
        "l0": dict(
            confidence=0.01,
            learning_rate=1e-2,
            max_iterations=FLAGS.l0_iterations,
            initial_const=1e-3,
            largest_const=FLAGS.l0_largest_const,
            abort_early=True,
        ),
        "linf": dict(
            confidence=0.0,
            learning_rate=5e-3,
            max_iterations=FLAGS.linf_iterations,
            initial_const=1e-5,
            largest_const=20.0,
            decrease_factor=0.9,
            abort_early=True,
        ),
    }


# --- the benchmark (library-style functions; only main() reads FLAGS) ---


def _takd_options(kind: str, settings: dict[str, Any]) -> dict[str, Any]:
    options = dict(settings)
    if kind == "linf":
        options.pop("decrease_factor")  # the attack's own default, 0.9, is the same
    return options


def run_takd(kind, model, x, y, settings, batch_size, adam: IterationCounter, one_at_a_time=False):
    """Times keras_takd's attack on `x` in batches of `batch_size`, or one call per image."""
    attack = carlini_wagner_attack(kind)
    options = _takd_options(kind, settings)
    model.reset()
    adam.reset()
    calls = [slice(i, i + 1) for i in range(len(x))] if one_at_a_time else [slice(None)]
    parts = []
    with timed() as t:
        for part in calls:
            size = 1 if one_at_a_time else batch_size
            parts.append(attack(model, x[part], y[part], batch_size=size, **options))
    counts = model.snapshot()
    optimiser = int(adam.rows.numpy())
    moved = int(adam.moved.numpy())
    x_adv = np.concatenate([r.x_adv for r in parts])
    success = np.concatenate([r.success for r in parts])
    extra = {
        "calls": len(calls),
        "batch_size": 1 if one_at_a_time else batch_size,
        "model_passes": counts,
        "optimizer_image_iterations": optimiser,
        "adam_moved_rows": moved,
        "optimizer_image_iterations_per_s": optimiser / t.wall_s,
        "optimizer_image_iterations_per_cpu_s": optimiser / max(t.cpu_s, 1e-9),
        "model_backward_rows_per_s": counts["backward_rows"] / t.wall_s,
        "padding_or_idle_row_fraction": 1 - optimiser / max(counts["backward_rows"], 1),
    }
    return reports.attack_summary(kind, x, x_adv, success, t, extra)


def fixed_call_cost(kind, model, x, y, settings, batch_size) -> dict[str, float]:
    """Seconds of a call doing one iteration (first and second call): tracing and checks."""
    attack = carlini_wagner_attack(kind)
    options = _takd_options(kind, settings) | {"max_iterations": 1}
    if kind == "l2":
        options["binary_search_steps"] = 1
    else:
        options["largest_const"] = options["initial_const"] * 2.0
    out = {}
    for label in ("first_call_s", "second_call_s"):
        with timed() as t:
            attack(model, x[:batch_size], y[:batch_size], batch_size=batch_size, **options)
        out[label] = t.wall_s
    return out


def measure_overhead(kind, model, counting, x, y, settings, batch_size, iterations, rounds):
    """Per-iteration cost of an attack against the floor, interleaved to cancel load drift.

    The attack runs with abort_early=False, a single c and a margin (confidence 1e4) that no
    image can reach, so every example stays in the batch for exactly one solve of `iterations`
    steps (a success would start further solves on ever fewer rows, which measures small
    batches, not bookkeeping; the margin changes no operation of an iteration). The ratio of
    its counted backward rows per second to the floor's, measured right before, is the share
    left after the attack's bookkeeping. The floor runs
    through the same pass counter as the attack, so the counter's own cost (about 10% of the
    bare floor here) is not charged to the attack; rounds are long enough (200 iterations by
    default) that per-call costs (input checks, the final classification) are amortised as
    in a real attack, and `fixed_call_cost` reports them separately.
    """
    attack = carlini_wagner_attack(kind)
    options = _takd_options(kind, settings) | {
        "max_iterations": iterations,
        "abort_early": False,
        "confidence": 1e4,
    }
    if kind == "l2":
        options["binary_search_steps"] = 1
    else:
        options["largest_const"] = options["initial_const"] * 1.5
    x, y = x[:batch_size], y[:batch_size]
    attack(counting, x, y, batch_size=batch_size, **options)  # trace with the same settings
    ratios, runs = [], []
    for _ in range(rounds):
        floor = measure_floor(counting, x, batch_size, iterations, 1)
        counting.reset()
        with timed() as t:
            attack(counting, x, y, batch_size=batch_size, **options)
        rate = counting.snapshot()["backward_rows"] / t.wall_s
        ratios.append(rate / floor["image_iterations_per_s_median"])
        runs.append({"floor": floor["image_iterations_per_s_median"], "attack": rate} | t.as_dict())
    return {
        "iterations": iterations,
        "batch_size": batch_size,
        "ratio_to_floor_median": float(np.median(ratios)),
        "ratios": ratios,
        "rounds": runs,
    }


def run_benchmark(
    *,
    images: int,
    batch_size: int,
    one_at_a_time_images: int,
    art_images: int,
    art_budget_s: dict[str, float],
    cleverhans_images: int,
    settings: dict[str, dict[str, Any]],
    floor_iterations: int,
    floor_repeats: int,
    overhead_iterations: int,
    overhead_rounds: int,
    train_epochs: int,
    cache_dir: pathlib.Path,
    data_dir: str,
    output_dir: pathlib.Path,
    attacks: list[str],
    skip: set[str],
    command: str,
) -> dict[str, Any]:
    """Runs every part of the benchmark and writes <output_dir>/cw_speed_vs_references.{json,md}."""
    started = utc_now()
    model, data, correct, model_info = models.prepare_model(cache_dir, data_dir, train_epochs)
    chosen = np.flatnonzero(correct)[:images]
    x, y = data.x_test[chosen], data.y_test[chosen]
    counting = CountingModel(model, count_eager=False)
    adam = IterationCounter()
    adam.install()
    results: dict[str, Any] = {
        "command": command,
        "started_utc": started,
        "machine": environment.machine_info(),
        "versions": environment.versions(
            [
                "tensorflow",
                "tensorflow-cpu",
                "keras",
                "numpy",
                "adversarial-robustness-toolbox",
                "cleverhans",
                "keras_takd",
            ]
        ),
        "keras_takd_commit": environment.git_commit(environment.REPO),
        "model": model_info,
        "images": {"count": len(x), "test_indices": [int(i) for i in chosen]},
        "settings": settings,
        "counting": {"adam_helpers_wrapped": adam.patched},
        "floor": {},
        "attacks": {kind: {} for kind in attacks},
    }
    output_dir.mkdir(parents=True, exist_ok=True)

    def log(text: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)
        # Partial results survive an interrupted run.
        files.write_text_atomic(
            output_dir / f"{NAME}.json.tmp", json.dumps(results, indent=1, default=float) + "\n"
        )

    if "floor" not in skip:
        results["floor"]["batch"] = measure_floor(
            model, x, batch_size, floor_iterations, floor_repeats
        )
        results["floor"]["batch_counted"] = measure_floor(
            counting, x, batch_size, floor_iterations, max(1, floor_repeats // 2)
        )
        results["floor"]["batch_1"] = measure_floor(
            model, x, 1, floor_iterations, max(1, floor_repeats // 2)
        )
        results["floor"]["batching_gain"] = measure_batching_gain(
            model, x, batch_size, overhead_iterations, overhead_rounds
        )
        log(f"floor {results['floor']['batch']['image_iterations_per_s_median']:.0f} img-it/s")
    for kind in attacks:
        runs = results["attacks"][kind]
        if "overhead" not in skip:
            runs["overhead"] = measure_overhead(
                kind,
                model,
                counting,
                x,
                y,
                settings[kind],
                batch_size,
                overhead_iterations,
                overhead_rounds,
            )
            log(f"{kind} overhead ratio {runs['overhead']['ratio_to_floor_median']:.2f}")
        if "batched" not in skip:
            runs["keras_takd_batched"] = run_takd(
                kind, counting, x, y, settings[kind], batch_size, adam
            )
            log(f"{kind} batched {runs['keras_takd_batched']['seconds']:.1f} s")
        if "one_at_a_time" not in skip:
            k = min(one_at_a_time_images, len(x))
            runs["keras_takd_one_at_a_time"] = run_takd(
                kind, counting, x[:k], y[:k], settings[kind], 1, adam, one_at_a_time=True
            )
            runs["fixed_call_cost"] = {
                "batch": fixed_call_cost(kind, counting, x, y, settings[kind], batch_size),
                "one_image": fixed_call_cost(kind, counting, x, y, settings[kind], 1),
            }
            log(f"{kind} one at a time {runs['keras_takd_one_at_a_time']['seconds']:.1f} s")
        if "art" not in skip:
            k = min(art_images, len(x))
            runs["art"] = art.run_art(
                kind, counting, x[:k], y[:k], settings[kind], art_budget_s[kind]
            )
            log(f"{kind} ART {runs['art']['seconds']:.1f} s")
    if "cleverhans" not in skip and "l2" in attacks:
        k = min(cleverhans_images, len(x))
        results["attacks"]["l2"]["cleverhans"] = cleverhans.run_cleverhans(
            counting, x[:k], y[:k], settings["l2"], art_budget_s["l2"]
        )
        log(f"cleverhans: runs={results['attacks']['l2']['cleverhans']['runs']}")
    results["targets"] = evaluate_targets(results, len(x))
    results["finished_utc"] = utc_now()
    (output_dir / f"{NAME}.json.tmp").unlink(missing_ok=True)
    reports.write_results(output_dir, NAME, results, markdown_report)
    return results


def rewrite_report(output_dir: pathlib.Path) -> None:
    """Recomputes the targets of a finished run and rewrites its json and report.

    Raises:
        FileNotFoundError: `output_dir` holds no finished run.
    """
    path = output_dir / f"{NAME}.json"
    if not path.is_file():
        raise FileNotFoundError(f"--rewrite_report: no {path}; expected a finished run's json")
    results = json.loads(path.read_text())
    results["targets"] = evaluate_targets(results, results["images"]["count"])
    reports.write_results(output_dir, NAME, results, markdown_report)


def main(argv: list[str]) -> None:
    del argv
    if FLAGS.report_only:
        reports.rewrite_report(FLAGS.output_dir, NAME, markdown_report)
        return
    if FLAGS.rewrite_report:
        rewrite_report(pathlib.Path(FLAGS.output_dir))
        return
    if "art" not in FLAGS.skip:
        art.require()
    if "cleverhans" not in FLAGS.skip and "l2" in FLAGS.attacks:
        cleverhans.require()
    run_benchmark(
        images=FLAGS.images,
        batch_size=FLAGS.batch_size,
        one_at_a_time_images=FLAGS.one_at_a_time_images,
        art_images=FLAGS.art_images,
        art_budget_s={
            kind: float(seconds)
            for kind, seconds in zip(("l2", "l0", "linf"), FLAGS.art_budget_s, strict=True)
        },
        cleverhans_images=FLAGS.cleverhans_images,
        settings=settings_from_flags(),
        floor_iterations=FLAGS.floor_iterations,
        floor_repeats=FLAGS.floor_repeats,
        overhead_iterations=FLAGS.overhead_iterations,
        overhead_rounds=FLAGS.overhead_rounds,
        train_epochs=FLAGS.train_epochs,
        cache_dir=pathlib.Path(FLAGS.cache_dir),
        data_dir=FLAGS.data_dir,
        output_dir=pathlib.Path(FLAGS.output_dir),
        attacks=FLAGS.attacks,
        skip=set(FLAGS.skip),
        command=" ".join(sys.argv),
    )


if __name__ == "__main__":
    cli.run_main(main, NAME)  # bad input: one line and exit 1, not a traceback
