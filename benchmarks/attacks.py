"""Benchmark of keras_takd's Carlini-Wagner attacks against ART, cleverhans and a bare floor.

Issue 3, "Benchmark": on the paper's MNIST network (`keras_takd.core.models.build_model("mnist")`,
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

Counting: the model is wrapped in `_bench_util.CountingModel`, whose tf.Variable counters count
every forward and backward pass (rows = images) inside compiled loops too. "Optimiser
image-iterations" count the iterations of the original algorithm, one per image per step of
its loop: for keras_takd, the rows whose step count the attacks advance (Adam steps, plus L0's
succeeding iteration, whose step the original takes and discards; `_IterationCounter` wraps the
attacks' helpers in this process only, no attack file is changed); for ART, the rows passed to
each `_loss_gradient` call, which all three ART attacks make once per optimiser step. Rows
computed for anything else (padding, examples idle after their solve ended, L-inf's success
check) are the attack's waste.

Settings: C&W's defaults with fewer iterations so that everything runs in about 30 minutes on
two busy CPU cores: L2 5 binary steps x 200 iterations; L0 and L-inf 50 iterations per c, L0's
largest c 1e2 instead of 2e6 (see settings_from_flags).

Run:
    python benchmarks/attacks.py
    python benchmarks/attacks.py --images=8 --batch_size=8 --skip=art,cleverhans \\
        --output_dir=/tmp/bench  # quick check of the harness
Writes benchmarks/results/attacks.json and benchmarks/results/attacks.md.
"""

from __future__ import annotations

import json
import pathlib
import sys
import time
import traceback
from typing import Any

import numpy as np
from absl import app, flags

_REPO = pathlib.Path(__file__).resolve().parents[1]
_RESULTS_DIR = _REPO / "benchmarks" / "results"
sys.path.insert(0, str(_REPO / "benchmarks"))
from _bench_util import prepare_model  # noqa: E402  (the benchmark MNIST model, shared)

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
flags.DEFINE_string(
    "output_dir", str(_RESULTS_DIR), "Results folder (the default also updates README.md)."
)
flags.DEFINE_bool(
    "rewrite_report", False, "Only recompute targets and rewrite the report from attacks.json."
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


class _BudgetExceeded(Exception):
    """Raised inside a reference implementation when its time budget runs out."""


def measure_batching_gain(model, x: np.ndarray, batch_size: int, iterations: int, rounds: int):
    """The floor at `batch_size` against the floor at batch 1, interleaved round by round.

    Their ratio is the most that batching can make one image-iteration cheaper on this machine,
    so it bounds how much faster a batched attack can be than the same attack run one image at
    a time (when both run the same iterations per image).
    """
    import _bench_util as util

    pairs = []
    for _ in range(rounds):
        batched = util.measure_floor(model, x, batch_size, iterations, 1)
        single = util.measure_floor(model, x, 1, iterations * 5, 1)
        pairs.append(
            {
                "batch": batched["image_iterations_per_s_median"],
                "batch_per_cpu_s": batched["image_iterations_per_cpu_s_median"],
                "one": single["image_iterations_per_s_median"],
                "one_per_cpu_s": single["image_iterations_per_cpu_s_median"],
            }
        )
    return {
        "batch_size": batch_size,
        "ratio_median": float(np.median([p["batch"] / p["one"] for p in pairs])),
        "ratio_per_cpu_s_median": float(
            np.median([p["batch_per_cpu_s"] / p["one_per_cpu_s"] for p in pairs])
        ),
        "rounds": pairs,
    }


class _IterationCounter:
    """Counts keras_takd's per-image algorithm iterations (wraps the attacks' step helpers).

    `rows`: iterations of the original algorithm, one per image per step of its loop. For L2
    every such iteration is an Adam step. For L0 and L-inf they are the rows whose step count
    `const_schedule` advances: Adam steps, plus L0's succeeding iteration, whose step the
    original takes and then discards (it restores the succeeding iterate), which keras_takd
    skips. Not counted: padding rows, rows idle in a chunk after their solve ended, and
    L-inf's check of a qualifying step (the original's extra forward pass).
    `moved`: rows on which an Adam step was applied.
    """

    def __init__(self):
        import tensorflow as tf

        self.rows = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.moved = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.patched: list[str] = []

    def reset(self) -> None:
        self.rows.assign(0)
        self.moved.assign(0)

    def install(self) -> None:
        import importlib

        # Where each attack looks the helpers up when it traces: L2 calls optimizers.adam_step
        # by its own name; L0 and L-inf share search's Adam step and call const_schedule.
        targets = {
            "keras_takd.attacks.carlini_wagner.l2": [("adam_step", (self.rows, self.moved))],
            "keras_takd.attacks.carlini_wagner.search": [("adam_step", (self.moved,))],
            "keras_takd.attacks.carlini_wagner.l0": [("const_schedule", (self.rows,))],
            "keras_takd.attacks.carlini_wagner.linf": [("const_schedule", (self.rows,))],
        }
        for module_name, wrapped in targets.items():
            module = importlib.import_module(module_name)
            for function_name, counters in wrapped:
                original = getattr(module, function_name, None)
                if original is None:  # a renamed helper must not silently count nothing
                    raise RuntimeError(
                        f"{module_name}.{function_name} not found: update the counter"
                    )
                if getattr(original, "_counted", False):
                    continue
                setattr(module, function_name, self._wrap(original, counters))
                self.patched.append(f"{module_name}.{function_name}")

    @staticmethod
    def _mask(original, args, kwargs):
        """The per-example rows a helper call counts: Adam's moving mask, or the iterations
        `const_schedule` counts (its `stepped`, default `running`)."""
        import inspect

        names = list(inspect.signature(original).parameters)
        bound = dict(zip(names, args, strict=False)) | kwargs
        if original.__name__ == "const_schedule":
            stepped = bound.get("stepped")
            return bound["running"] if stepped is None else stepped
        return bound["active" if "active" in bound else "moving"]

    def _wrap(self, original, counters):
        import tensorflow as tf

        def counted(*args, **kwargs):
            added = tf.reduce_sum(tf.cast(self._mask(original, args, kwargs), tf.int64))
            updates = [counter.assign_add(added) for counter in counters]
            with tf.control_dependencies(updates):
                return tuple(tf.identity(t) for t in original(*args, **kwargs))

        counted = tf.autograph.experimental.do_not_convert(counted)
        counted._counted = True
        return counted


def _attack_fn(kind: str):
    from keras_takd import attacks

    return {
        "l2": attacks.carlini_wagner_l2,
        "l0": attacks.carlini_wagner_l0,
        "linf": attacks.carlini_wagner_linf,
    }[kind]


def _takd_options(kind: str, settings: dict[str, Any]) -> dict[str, Any]:
    options = dict(settings)
    if kind == "linf":
        options.pop("decrease_factor")  # the attack's own default, 0.9, is the same
    return options


def _summary(kind, x, y, x_adv, success, timing, extra) -> dict[str, Any]:
    """Success, distortion and timing of one run, with per-image values for comparisons."""
    import _bench_util as util

    from keras_takd.attacks.common import perturbation_norms

    l0, l2, linf = perturbation_norms(x_adv, x)
    distortion = {"l0": l0, "l2": l2, "linf": linf}[kind]
    stats = util.distortion_stats(distortion, success)
    return {
        "images": int(len(x)),
        "seconds": timing.wall_s,
        "seconds_per_image": timing.wall_s / len(x),
        "cpu_seconds_per_image": timing.cpu_s / len(x),
        "timing": timing.as_dict(),
        "success_rate": float(np.mean(success)),
        "distortion_metric": kind,
        "mean_distortion": stats["mean"],
        "median_distortion": stats["median"],
        "per_image_success": [bool(v) for v in success],
        "per_image_distortion": [float(v) for v in distortion],
        **extra,
    }


def run_takd(kind, model, x, y, settings, batch_size, adam: _IterationCounter, one_at_a_time=False):
    """Times keras_takd's attack on `x` in batches of `batch_size`, or one call per image."""
    import _bench_util as util

    attack = _attack_fn(kind)
    options = _takd_options(kind, settings)
    model.reset()
    adam.reset()
    calls = [slice(i, i + 1) for i in range(len(x))] if one_at_a_time else [slice(None)]
    parts = []
    with util.timed() as t:
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
    return _summary(kind, x, y, x_adv, success, t, extra)


def fixed_call_cost(kind, model, x, y, settings, batch_size) -> dict[str, float]:
    """Seconds of a call doing one iteration (first and second call): tracing and checks."""
    import _bench_util as util

    attack = _attack_fn(kind)
    options = _takd_options(kind, settings) | {"max_iterations": 1}
    if kind == "l2":
        options["binary_search_steps"] = 1
    else:
        options["largest_const"] = options["initial_const"] * 2.0
    out = {}
    for label in ("first_call_s", "second_call_s"):
        with util.timed() as t:
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
    import _bench_util as util

    attack = _attack_fn(kind)
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
        floor = util.measure_floor(counting, x, batch_size, iterations, 1)
        counting.reset()
        with util.timed() as t:
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


def _art_attack(kind, classifier, settings, n):
    from art.attacks import evasion

    common = dict(targeted=False, verbose=False)
    if kind == "l2":
        return evasion.CarliniL2Method(
            classifier,
            confidence=settings["confidence"],
            learning_rate=settings["learning_rate"],
            binary_search_steps=settings["binary_search_steps"],
            max_iter=settings["max_iterations"],
            initial_const=settings["initial_const"],
            batch_size=n,
            **common,
        )
    if kind == "l0":
        return evasion.CarliniL0Method(
            classifier,
            confidence=settings["confidence"],
            learning_rate=settings["learning_rate"],
            binary_search_steps=ART_L0_BINARY_STEPS,
            max_iter=settings["max_iterations"],
            initial_const=settings["initial_const"],
            warm_start=True,
            batch_size=n,
            **common,
        )
    return evasion.CarliniLInfMethod(
        classifier,
        confidence=settings["confidence"],
        learning_rate=settings["learning_rate"],
        max_iter=settings["max_iterations"],
        decrease_factor=settings["decrease_factor"],
        initial_const=settings["initial_const"],
        largest_const=settings["largest_const"],
        const_factor=2.0,
        batch_size=1,
        **common,
    )


# ART's L0 runs a full binary search over c in each pixel-freezing round; the original has none.
ART_L0_BINARY_STEPS = 5


def run_art(kind, model, x, y, settings, budget_s: float) -> dict[str, Any]:
    """Runs ART's attack on `x` (L2/L0 in one batch, L-inf one image at a time, as ART does).

    ART's `_loss_gradient` is wrapped to count optimiser rows and to stop the run once
    `budget_s` has passed; a stopped run is reported with `finished: False`.
    """
    import _bench_util as util
    import keras
    from art.attacks.evasion import carlini
    from art.estimators.classification import TensorFlowV2Classifier

    classifier = TensorFlowV2Classifier(
        model=model,
        nb_classes=10,
        input_shape=x.shape[1:],
        clip_values=(0.0, 1.0),
        loss_object=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    counter = {"rows": 0, "deadline": float("inf")}
    originals = {}
    for cls in (carlini.CarliniL2Method, carlini.CarliniLInfMethod):
        originals[cls] = cls.__dict__["_loss_gradient"]

        def counted(self, z_logits, *args, _original=originals[cls], **kwargs):
            if time.perf_counter() > counter["deadline"]:
                raise _BudgetExceeded
            counter["rows"] += int(np.shape(z_logits)[0])
            return _original(self, z_logits, *args, **kwargs)

        cls._loss_gradient = counted
    model.reset()
    model.count_eager = True  # ART computes its gradients eagerly
    x_adv, finished, done = x.copy(), True, 0
    try:
        per_image = kind == "linf"
        attack = _art_attack(kind, classifier, settings, 1 if per_image else len(x))
        counter["deadline"] = time.perf_counter() + budget_s
        with util.timed() as t:
            try:
                if per_image:
                    for i in range(len(x)):
                        x_adv[i : i + 1] = attack.generate(x[i : i + 1], y=y[i : i + 1])
                        done += 1
                else:
                    x_adv = attack.generate(x, y=y)
                    done = len(x)
            except _BudgetExceeded:
                finished = False
    finally:
        model.count_eager = False
        for cls, original in originals.items():
            cls._loss_gradient = original
    counts = model.snapshot()
    extra = {
        "art_class": _ART_CLASSES[kind],
        "art_batch_size": 1 if kind == "linf" else len(x),
        "finished": finished,
        "images_finished": done,
        "budget_s": budget_s,
        "model_passes": counts,
        "optimizer_image_iterations": counter["rows"],
        "optimizer_image_iterations_per_s": counter["rows"] / t.wall_s,
        "model_backward_rows_per_s": counts["backward_rows"] / t.wall_s,
    }
    if kind == "l0":
        extra["art_binary_search_steps"] = ART_L0_BINARY_STEPS
    if not finished:
        # Unfinished images keep their original; only finished ones count for quality.
        x_adv[done:] = x[done:]
    logits = model.model.predict(x_adv, batch_size=500, verbose=0)
    success = np.argmax(logits, axis=-1) != y
    if not finished:
        success[done:] = False
    return _summary(kind, x, y, x_adv, success, t, extra)


class _DeadlineModel:
    """Raises `_BudgetExceeded` when called (eagerly) after a deadline."""

    def __init__(self, model, budget_s: float):
        self.model = model
        self.deadline = time.perf_counter() + budget_s

    def __call__(self, x, **kwargs):
        if time.perf_counter() > self.deadline:
            raise _BudgetExceeded
        return self.model(x, **kwargs)


def run_cleverhans(model, x, y, settings, budget_s: float) -> dict[str, Any]:
    """cleverhans 4's tf2 carlini_wagner_l2 with the shared L2 settings, or the error it raises."""
    import _bench_util as util

    record: dict[str, Any] = {"library": "cleverhans"}
    model.reset()
    model.count_eager = True
    try:
        from cleverhans.tf2.attacks.carlini_wagner_l2 import carlini_wagner_l2 as cw_l2

        wrapped = _DeadlineModel(model, budget_s)
        with util.timed() as t:
            x_adv = cw_l2(
                wrapped,
                x,
                y=y,
                targeted=False,
                batch_size=len(x),
                clip_min=0.0,
                clip_max=1.0,
                binary_search_steps=settings["binary_search_steps"],
                max_iterations=settings["max_iterations"],
                abort_early=settings["abort_early"],
                confidence=settings["confidence"],
                initial_const=settings["initial_const"],
                learning_rate=settings["learning_rate"],
            )
    except _BudgetExceeded:
        return record | {"runs": False, "error": f"stopped after the {budget_s} s budget"}
    except Exception as error:  # noqa: BLE001 - the exact error is the result here
        lines = traceback.format_exception(error)
        return record | {
            "runs": False,
            "error": f"{type(error).__name__}: {error}",
            "traceback_tail": "".join(lines[-6:]),
        }
    finally:
        model.count_eager = False
    x_adv = np.asarray(x_adv, np.float32)
    counts = model.snapshot()
    logits = model.model.predict(x_adv, batch_size=500, verbose=0)
    success = np.argmax(logits, axis=-1) != y
    x_adv = np.where(success[:, None, None, None], x_adv, x)
    extra = {
        "runs": True,
        "batch_size": len(x),
        "model_passes": counts,
        "optimizer_image_iterations": counts["backward_rows"],
        "optimizer_image_iterations_per_s": counts["backward_rows"] / t.wall_s,
        "model_backward_rows_per_s": counts["backward_rows"] / t.wall_s,
    }
    return record | _summary("l2", x, y, x_adv, success, t, extra)


def _subset_mean(record: dict[str, Any], n: int, both: np.ndarray | None = None) -> float:
    """Mean distortion of `record` over its first n images that succeeded (and `both`)."""
    success = np.asarray(record["per_image_success"][:n], bool)
    if both is not None:
        success &= both
    values = np.asarray(record["per_image_distortion"][:n])[success]
    return float(np.mean(values)) if values.size else float("nan")


def _art_l2_projection(art: dict[str, Any], settings: dict[str, Any]) -> float | None:
    """Seconds ART's L2 would need to finish, from its measured seconds per optimiser row.

    ART 1.20's CarliniL2Method runs all max_iter iterations of every binary-search step on the
    whole batch (it stops early only when every learning rate has fallen to 0), so its work is
    known in advance.
    """
    rows = art["optimizer_image_iterations"]
    if not rows:
        return None
    planned = settings["l2"]["binary_search_steps"] * settings["l2"]["max_iterations"]
    return art["seconds"] / rows * planned * art["images"]


def evaluate_targets(results: dict[str, Any], images: int) -> list[dict[str, Any]]:
    """The issue's three targets, each with the numbers it was decided on."""
    targets = []
    floor = results.get("floor", {}).get("batch", {})
    floor_rate = floor.get("image_iterations_per_s_median")
    floor_cpu_rate = floor.get("image_iterations_per_cpu_s_median", float("nan"))
    floor_share = float(np.median([r["cpu_share"] for r in floor.get("repeats", [])] or [0]))
    gain = results.get("floor", {}).get("batching_gain", {}).get("ratio_median", float("nan"))
    for kind, runs in results["attacks"].items():
        batched = runs.get("keras_takd_batched")
        single = runs.get("keras_takd_one_at_a_time")
        art = runs.get("art")
        if batched and floor_rate:
            ratio = batched["optimizer_image_iterations_per_s"] / floor_rate
            cpu_ratio = batched["optimizer_image_iterations_per_cpu_s"] / floor_cpu_rate
            overhead = runs.get("overhead", {}).get("ratio_to_floor_median", float("nan"))
            useful = 1.0 - batched["padding_or_idle_row_fraction"]
            # The floor and a long attack run minutes apart, under different loads; the
            # interleaved ratio does not, so it decides, times the share of useful rows.
            value = overhead * useful
            targets.append(
                {
                    "target": f"{kind}: batched >= 0.8x floor image-iterations/s",
                    "value": round(value, 3),
                    "detail": f"interleaved per-iteration cost {overhead:.2f}x the floor x"
                    f" {100 * useful:.1f}% of computed rows that were iterations of the algorithm"
                    f" = {value:.2f}x; end to end (floor measured minutes earlier) per wall"
                    f" second {ratio:.2f}x ({batched['optimizer_image_iterations_per_s']:.0f}"
                    f" vs {floor_rate:.0f}, cpu share {batched['timing']['cpu_share']:.2f} vs"
                    f" {floor_share:.2f}), per CPU second {cpu_ratio:.2f}x",
                    "pass": bool(value >= 0.8) if np.isfinite(value) else None,
                }
            )
        if kind in ("l0", "linf") and batched and single:
            k = single["images"]
            speedup = (single["seconds_per_image"] * images) / batched["seconds"]
            cpu_speedup = single["cpu_seconds_per_image"] * images / batched["timing"]["cpu_s"]
            single_mean = _subset_mean(single, k)
            batched_mean = _subset_mean(batched, k)
            gap = abs(batched_mean - single_mean) / single_mean if single_mean else float("nan")
            targets.append(
                {
                    "target": f"{kind}: batched >= 10x one-at-a-time, mean distortion within 5%",
                    "value": round(speedup, 2),
                    "detail": f"one-at-a-time {single['seconds_per_image']:.2f} s/image x {images}"
                    f" vs batched {batched['seconds']:.1f} s; in CPU seconds {cpu_speedup:.1f}x;"
                    f" the floor itself is only {gain:.1f}x cheaper per image-iteration at batch"
                    f" {batched['batch_size']} than at batch 1 on this machine; mean {kind} on"
                    f" the first {k}: batched {batched_mean:.4g}, one-at-a-time"
                    f" {single_mean:.4g} ({100 * gap:.1f}% apart)",
                    "pass": bool(min(speedup, cpu_speedup) >= 10 and gap <= 0.05),
                }
            )
        if batched and art:
            k = art["images_finished"]  # quality is compared on the images ART finished
            speedup = art["seconds_per_image"] / batched["seconds_per_image"]
            cpu_speedup = art["cpu_seconds_per_image"] / batched["cpu_seconds_per_image"]
            if art["finished"]:
                speedup_text = f"{speedup:.1f}x, in CPU seconds {cpu_speedup:.1f}x"
            else:
                speedup_text = (
                    f">= {speedup:.1f}x, in CPU seconds >= {cpu_speedup:.1f}x"
                    " (ART stopped at its budget)"
                )
                projected = _art_l2_projection(art, results["settings"]) if kind == "l2" else None
                if projected:
                    speedup_text += (
                        f"; projected {projected / art['images']:.1f} s/image ="
                        f" {projected / art['images'] / batched['seconds_per_image']:.0f}x"
                    )
            ours = np.asarray(batched["per_image_success"][:k], bool)
            theirs = np.asarray(art["per_image_success"][:k], bool)
            both = ours & theirs
            ours_mean, art_mean = _subset_mean(batched, k, both), _subset_mean(art, k, both)
            quality = ours.mean() >= theirs.mean() and (not both.any() or ours_mean <= art_mean)
            evaluable = k > 0
            targets.append(
                {
                    "target": f"{kind}: >= 10x ART, distortion <=, success >=",
                    "value": round(speedup, 2),
                    "detail": f"seconds/image ART {art['seconds_per_image']:.2f} vs batched"
                    f" {batched['seconds_per_image']:.3f} ({speedup_text}); "
                    + (
                        f"on the {k} images ART finished: success {ours.mean():.2f} vs ART"
                        f" {theirs.mean():.2f}, mean {kind} where both succeed"
                        f" ({int(both.sum())}) {ours_mean:.4g} vs ART {art_mean:.4g}"
                        if k
                        else "ART finished no image, so quality cannot be compared"
                    ),
                    "pass": (
                        bool(min(speedup, cpu_speedup) >= 10 and quality) if evaluable else None
                    ),
                }
            )
    return targets


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
    """Runs every part of the benchmark and writes attacks.json and attacks.md."""
    import _bench_util as util

    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    model, data, correct, model_info = prepare_model(cache_dir, data_dir, train_epochs)
    chosen = np.flatnonzero(correct)[:images]
    x, y = data.x_test[chosen], data.y_test[chosen]
    counting = util.CountingModel(model, count_eager=False)
    adam = _IterationCounter()
    adam.install()
    results: dict[str, Any] = {
        "command": command,
        "started_utc": started,
        "machine": util.machine_info(),
        "versions": util.versions(
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
        "keras_takd_commit": util.git_commit(str(_REPO)),
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
        (output_dir / "attacks.json.tmp").write_text(
            json.dumps(results, indent=1, default=float) + "\n"
        )

    if "floor" not in skip:
        results["floor"]["batch"] = util.measure_floor(
            model, x, batch_size, floor_iterations, floor_repeats
        )
        results["floor"]["batch_counted"] = util.measure_floor(
            counting, x, batch_size, floor_iterations, max(1, floor_repeats // 2)
        )
        results["floor"]["batch_1"] = util.measure_floor(
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
            runs["art"] = run_art(kind, counting, x[:k], y[:k], settings[kind], art_budget_s[kind])
            log(f"{kind} ART {runs['art']['seconds']:.1f} s")
    if "cleverhans" not in skip and "l2" in attacks:
        k = min(cleverhans_images, len(x))
        results["attacks"]["l2"]["cleverhans"] = run_cleverhans(
            counting, x[:k], y[:k], settings["l2"], art_budget_s["l2"]
        )
        log(f"cleverhans: runs={results['attacks']['l2']['cleverhans']['runs']}")
    results["targets"] = evaluate_targets(results, len(x))
    results["finished_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    (output_dir / "attacks.json.tmp").unlink(missing_ok=True)
    (output_dir / "attacks.json").write_text(json.dumps(results, indent=1, default=float) + "\n")
    _write_report(results, output_dir)
    return results


def _write_report(results: dict[str, Any], output_dir: pathlib.Path) -> None:
    report = markdown_report(results)
    (output_dir / "attacks.md").write_text(report)
    if output_dir.resolve() == _RESULTS_DIR.resolve():
        _update_readme(_REPO / "benchmarks" / "README.md", report)


def rewrite_report(output_dir: pathlib.Path) -> None:
    """Recomputes the targets of a finished run and rewrites attacks.json, attacks.md, README."""
    path = output_dir / "attacks.json"
    results = json.loads(path.read_text())
    results["targets"] = evaluate_targets(results, results["images"]["count"])
    path.write_text(json.dumps(results, indent=1, default=float) + "\n")
    _write_report(results, output_dir)


_README_START, _README_END = "<!-- attacks results: start -->", "<!-- attacks results: end -->"


def _update_readme(readme: pathlib.Path, report: str) -> None:
    """Replaces the results section of the benchmarks README with the new report."""
    text = readme.read_text()
    if _README_START not in text or _README_END not in text:
        return
    head, rest = text.split(_README_START, 1)
    tail = rest.split(_README_END, 1)[1]
    body = report.split("\n", 2)[2]  # drop the report's own title
    readme.write_text(f"{head}{_README_START}\n{body}{_README_END}{tail}")


_ROW_NAMES = {
    "keras_takd_batched": "keras_takd, batched",
    "keras_takd_one_at_a_time": "keras_takd, one image at a time",
    "art": "ART 1.20",
    "cleverhans": "cleverhans 4 (tf2)",
}


def _fmt(value, digits=3) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "-"
    return f"{value:.{digits}g}"


def markdown_report(results: dict[str, Any]) -> str:
    """The results table, the floor, the settings and the targets as markdown."""
    n = results["images"]["count"]
    lines = [
        "# C&W attack benchmark (benchmarks/attacks.py)",
        "",
        f"Generated by `{results['command']}` from {results['started_utc']} to"
        f" {results['finished_utc']}; every number below is measured in that run"
        " (see attacks.json for per-image values, load and pass counts).",
        "",
        f"Machine: {results['machine']['cpu']}, {results['machine']['cores_usable']} usable"
        f" cores, no GPU. Versions: "
        + ", ".join(f"{k} {v}" for k, v in results["versions"].items())
        + ".",
        f"Model: {results['model']['builder']}, {results['model']['training']}, test accuracy"
        f" {results['model']['test_accuracy']:.4f}. Images: the first {n} correctly"
        " classified MNIST test images, untargeted.",
        "",
        "| attack | implementation | images timed | seconds | s / image | est. s for"
        f" {n} | optimiser img-it/s | model bwd rows/s | success | mean | median |"
        " cpu share | load1 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for kind, runs in results["attacks"].items():
        for key in ("keras_takd_batched", "keras_takd_one_at_a_time", "art", "cleverhans"):
            run = runs.get(key)
            if run is None:
                continue
            if key == "cleverhans" and not run.get("runs"):
                lines.append(
                    f"| {kind} | {_ROW_NAMES[key]} | - | - | - | - | - | - | does not"
                    f" run: `{run['error'][:160]}` | - | - | - | - |"
                )
                continue
            note = ""
            if key == "art" and not run["finished"]:
                note = f" (stopped at {run['budget_s']:.0f} s, {run['images_finished']} done)"
            estimate = run["seconds_per_image"] * n
            estimate_text = _fmt(estimate) if run["images"] != n else _fmt(run["seconds"])
            if key == "art" and not run["finished"]:
                estimate_text = f"> {_fmt(estimate)}"
            timing = run["timing"]
            success_text = f"{run['success_rate']:.2f}"
            if key == "art" and not run["finished"]:
                done = run["images_finished"]
                rate = np.mean(run["per_image_success"][:done]) if done else float("nan")
                success_text = f"{_fmt(rate)} of {done} done"
            lines.append(
                f"| {kind} | {_ROW_NAMES[key]}{note} | {run['images']} | {_fmt(run['seconds'])}"
                f" | {_fmt(run['seconds_per_image'])} | {estimate_text}"
                f" | {_fmt(run['optimizer_image_iterations_per_s'])}"
                f" | {_fmt(run['model_backward_rows_per_s'])} | {success_text}"
                f" | {_fmt(run['mean_distortion'])} | {_fmt(run['median_distortion'])}"
                f" | {timing['cpu_share']:.2f} | {timing['load1_before']:.1f}-"
                f"{timing['load1_after']:.1f} |"
            )
    floor = results["floor"]
    if floor:
        lines += ["", "Floor (compiled forward + backward loop, gradient w.r.t. the images):", ""]
        for key, label in (
            ("batch", "bare model"),
            ("batch_counted", "through the pass counter"),
            ("batch_1", "bare model"),
        ):
            f = floor[key]
            lines.append(
                f"- {label}, batch {f['batch_size']}: median"
                f" {f['image_iterations_per_s_median']:.0f}"
                f" image-iterations/s (min {f['image_iterations_per_s_min']:.0f}, max"
                f" {f['image_iterations_per_s_max']:.0f}, {len(f['repeats'])} repeats of"
                f" {f['iterations_per_repeat']} iterations)"
            )
    gain = floor.get("batching_gain")
    if gain:
        lines.append(
            f"- batching gain, interleaved rounds: batch {gain['batch_size']} is"
            f" {gain['ratio_median']:.2f}x batch 1 per wall second"
            f" ({gain['ratio_per_cpu_s_median']:.2f}x per CPU second); no attack can be faster"
            " batched than one image at a time by more than this for the same iterations"
            " per image, except by saving per-call overhead"
        )
    overhead = {k: r["overhead"] for k, r in results["attacks"].items() if "overhead" in r}
    if overhead:
        lines += [
            "",
            "Per-iteration cost against the floor, interleaved (attack with abort_early=False,"
            " one c and an unreachable margin so the whole batch runs one solve, each round"
            " right after a floor run; both through the pass counter):",
            "",
        ]
        for kind, o in overhead.items():
            lines.append(
                f"- {kind}: {o['ratio_to_floor_median']:.2f}x the floor's rows/s (rounds: "
                + ", ".join(f"{r:.2f}" for r in o["ratios"])
                + f"; {o['iterations']} iterations, batch {o['batch_size']})"
            )
    lines += ["", "Settings (shared by every library):", ""]
    for kind, options in results["settings"].items():
        lines.append(f"- {kind}: " + ", ".join(f"{k}={v}" for k, v in options.items()))
    lines += ["", "Targets (issue 3):", "", "| target | value | pass | detail |"]
    lines.append("|---|---|---|---|")
    for t in results["targets"]:
        verdict = {True: "PASS", False: "FAIL", None: "not evaluable"}[t["pass"]]
        lines.append(f"| {t['target']} | {t['value']} | {verdict} | {t['detail']} |")
    return "\n".join(lines) + "\n"


_KINDS = {"l2": "l2", "l0": "l0", "linf": "linf"}  # attack -> the distortion it minimises
_ART_CLASSES = {"l2": "CarliniL2Method", "l0": "CarliniL0Method", "linf": "CarliniLInfMethod"}


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if FLAGS.rewrite_report:
        rewrite_report(pathlib.Path(FLAGS.output_dir))
        return
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
    app.run(main)
