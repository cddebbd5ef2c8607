"""Indicators of attack failure (Pintor et al., "Indicators of Attack Failure: Debugging and
Improving Optimization of Adversarial Examples", NeurIPS 2022, arXiv:2106.09947).

An evaluation can look robust because its attacks failed, not because the model resisted them;
defensive distillation is the textbook case (its softmax at high temperature saturates, the
input gradient underflows and gradient attacks stall). Each function here checks one symptom and
returns per-image boolean flags; `count_flags` turns flags into counts and fractions:

- `silent_success`: the attack's search met its success test at some iterate but the image it
  returned is not adversarial (needs `AttackResult.found`, which every attack here records).
- `incomplete_optimization`: the attack loss was still falling over the last iterations, so
  more iterations would have helped (from per-image loss traces, e.g. `pgd_loss_trace`).
- `vanishing_gradients`: the input gradient of the attack loss at the clean image is (nearly)
  zero, so no gradient attack can start.
- `unconstrained_attack_failure`: PGD with a budget covering the whole box, which any working
  attack on a non-constant classifier should win, fails on the image.

`check_attack` runs all of them for one attack result. None of them touches an attack's inner
loop; each costs a few forward and backward passes per image (the unconstrained attack and the
loss trace one PGD run each).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from keras_takd.attacks import common
from keras_takd.attacks.projected_gradient_descent import (
    projected_gradient_descent,
    random_start_points,
)
from keras_takd.core.precision import call_in_float64, float64_copy

LOSSES = ("margin", "cross_entropy")
# Gradients whose L1 norm per image, computed in float64, is below this count as vanished. The
# logits of a well-behaved network give norms of 1e-3 and more at clean images; a saturated
# softmax gives its true size, exp(-margin) (1e-40 and less), and float64 rounding noise stays
# near 1e-16 of the logits' gradient.
VANISHING_GRADIENT_THRESHOLD = 1e-10
# Incomplete optimisation: the loss fell by more than this fraction of its scale over the window.
INCOMPLETE_TOLERANCE = 1e-3
INCOMPLETE_WINDOW = 10


@dataclasses.dataclass
class IndicatorReport:
    """Per-image flags of every indicator that was computed, and their counts.

    Attributes:
        flags: indicator name -> bool [N]; True marks an image on which the indicator tripped.
    """

    flags: dict[str, np.ndarray]

    def counts(self) -> dict[str, dict[str, float]]:
        """`count_flags(self.flags)`."""
        return count_flags(self.flags)

    def tripped(self) -> list[str]:
        """Names of the indicators that tripped on at least one image."""
        return [name for name, flag in self.flags.items() if flag.any()]


def count_flags(flags: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Counts and fractions of flagged images per indicator.

    Args:
        flags: indicator name -> bool [N].

    Returns:
        name -> {"images": N, "flagged": count, "fraction": count / N (NaN for N = 0)}.
    """
    out = {}
    for name, flag in flags.items():
        flag = np.asarray(flag, bool)
        n = int(flag.size)
        out[name] = {
            "images": n,
            "flagged": int(flag.sum()),
            "fraction": float(flag.mean()) if n else float("nan"),
        }
    return out


def silent_success(result: common.AttackResult) -> np.ndarray:
    """Images where the search saw an adversarial point but did not return one.

    Args:
        result: an attack's result with `found` recorded.

    Returns:
        bool [N]: `result.found & ~result.success`.

    Raises:
        ValueError: if the result does not record `found`.
    """
    if result.found is None:
        raise ValueError(
            "result.found is None: silent success needs an AttackResult whose attack records "
            "what its search found (every attack in keras_takd.attacks does)"
        )
    return np.asarray(result.found, bool) & ~np.asarray(result.success, bool)


def incomplete_optimization(
    loss_trace: np.ndarray,
    window: int = INCOMPLETE_WINDOW,
    tolerance: float = INCOMPLETE_TOLERANCE,
) -> np.ndarray:
    """Images whose attack loss was still falling over the last `window` iterations.

    Pintor et al.'s check: compare the loss at the end of the solve with its value `window`
    iterations earlier; a drop larger than `tolerance` times the range the loss covered over
    the whole solve means the solve stopped while still making progress. A constant trace
    (e.g. a stalled attack) is not incomplete; `vanishing_gradients` catches that.

    Args:
        loss_trace: [N, T] attack loss per image and iteration (T > window), to be minimised.
        window: how many final iterations to look at.
        tolerance: the drop, as a fraction of the trace's range, that counts as still falling.

    Returns:
        bool [N].

    Raises:
        ValueError: if the trace is not [N, T] with T > window, or holds NaN or inf.
    """
    trace = np.asarray(loss_trace, np.float64)
    if trace.ndim != 2 or trace.shape[1] <= window or window < 1:
        raise ValueError(
            f"loss_trace must be [N, T] with T > window={window} >= 1, got shape {trace.shape}"
        )
    if not np.all(np.isfinite(trace)):
        raise ValueError("loss_trace holds NaN or infinite values; expected finite losses")
    before, after = trace[:, -window - 1], trace[:, -1]
    progress = trace.max(axis=1) - trace.min(axis=1)  # the solve's whole range
    return (before - after) > tolerance * np.maximum(progress, 1e-12)


def _attack_loss_and_gradients(
    model: Callable[..., Any],
    x: np.ndarray,
    labels: np.ndarray,
    *,
    loss: str,
    targeted: bool,
    confidence: float,
    batch_size: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The attack loss [N] and its input gradient [N, H, W, C] at `x`, both in float64."""
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    model64 = float64_copy(model)
    x = np.asarray(x, np.float64)
    labels = np.asarray(labels, np.int64)
    values, grads = [], []
    for part in common.batch_slices(len(x), batch_size):
        images = tf.constant(x[part], tf.float64)
        with tf.GradientTape() as tape:
            tape.watch(images)
            outputs = call_in_float64(model64, images)
            onehot = tf.one_hot(labels[part], outputs.shape[-1], dtype=tf.float64)
            if loss == "margin":
                value = common.margin_loss(outputs, onehot, confidence, targeted)
            else:
                value = tf.nn.softmax_cross_entropy_with_logits(onehot, outputs)
                value = value if targeted else -value  # both minimised by the attack
            total = tf.reduce_sum(value)
        values.append(value.numpy())
        grads.append(tape.gradient(total, images).numpy())
    return np.concatenate(values), np.concatenate(grads, axis=0)


def attack_loss_gradients(
    model: Callable[..., Any],
    x: np.ndarray,
    labels: np.ndarray,
    *,
    loss: str = "margin",
    targeted: bool = False,
    confidence: float = 0.0,
    batch_size: int = common.DEFAULT_BATCH_SIZE,
) -> np.ndarray:
    """The input gradient of an attack's loss at `x`, per image, computed in float64.

    The model runs as its float64 copy (`keras_takd.core.precision.float64_copy`): a float32
    softmax saturated at 1 - 1e-40 gives 0 on one CPU and float32 rounding noise (about 1e-7
    of the logits' gradient) on another (oneDNN on AVX-512 CPUs, Eigen elsewhere); in float64
    it gives the gradient's true size on every CPU.

    Args:
        model: a Keras model, or a callable computing in the precision of its input, mapping
            images to its outputs (treated as logits, as the attacks treat them, even when
            they are probabilities).
        x: images [N, H, W, C].
        labels: [N] true labels (untargeted) or target labels (targeted).
        loss: "margin" (C&W's f_6 with kappa `confidence`) or "cross_entropy" (PGD's).
        targeted: the attack's direction.
        confidence: the margin kappa of the "margin" loss.
        batch_size: images per gradient computation.

    Returns:
        float64 [N, H, W, C] gradients.

    Raises:
        ValueError: for an unknown `loss`, or a callable that does not return float64 outputs
            for float64 images.
    """
    _, grads = _attack_loss_and_gradients(
        model,
        x,
        labels,
        loss=loss,
        targeted=targeted,
        confidence=confidence,
        batch_size=batch_size,
    )
    return grads


def vanishing_gradients(
    model: Callable[..., Any],
    x: np.ndarray,
    labels: np.ndarray,
    *,
    loss: str = "margin",
    targeted: bool = False,
    threshold: float = VANISHING_GRADIENT_THRESHOLD,
    batch_size: int = common.DEFAULT_BATCH_SIZE,
) -> np.ndarray:
    """Images at which the attack loss has a (nearly) zero input gradient.

    What it measures: the L1 norm, over pixels and channels, of the input gradient of the
    attack loss at the clean image, computed in float64 by the model's float64 copy (see
    `attack_loss_gradients`); an image is flagged when that norm is below `threshold` or not
    finite (a non-finite gradient gives an attack no direction either). A saturated softmax's
    gradient, about exp(-margin), is then its true size (1e-40 and less) on every CPU instead
    of float32's 0 or rounding noise. With the margin loss, an image whose margin is already
    met (loss 0 in float64, gradient 0 by the hinge) is not flagged: there is nothing left to
    attack.

    Args:
        model: a Keras model, or a callable computing in the precision of its input, mapping
            images to its outputs.
        x: images [N, H, W, C].
        labels: [N] true labels (untargeted) or target labels (targeted).
        loss: "margin" or "cross_entropy" (see `attack_loss_gradients`).
        targeted: the attack's direction.
        threshold: the per-image L1 norm of the float64 gradient below which it counts as
            vanished.
        batch_size: images per gradient computation.

    Returns:
        bool [N].

    Raises:
        ValueError: as `attack_loss_gradients`.
    """
    values, grads = _attack_loss_and_gradients(
        model, x, labels, loss=loss, targeted=targeted, confidence=0.0, batch_size=batch_size
    )
    norm = np.abs(grads.reshape(len(grads), -1)).sum(axis=1)
    vanished = ~np.isfinite(norm) | (norm < threshold)
    if loss == "margin":
        vanished &= values > 0  # a met margin has nothing left to attack
    return vanished


def unconstrained_attack_failure(
    model: Callable[..., Any],
    x: np.ndarray,
    y: np.ndarray,
    *,
    targeted: bool = False,
    target: np.ndarray | None = None,
    steps: int = 100,
    clip_min: float = 0.0,
    clip_max: float = 1.0,
    batch_size: int = common.DEFAULT_BATCH_SIZE,
    allow_probabilities: bool = False,
) -> np.ndarray:
    """Images on which L-inf PGD with a budget covering the whole box still fails.

    With eps = clip_max - clip_min every image in the box is allowed, so a working attack on
    a classifier that predicts more than one class in the box should succeed; a failure points
    at the attack (masked gradients, too few steps), not at robustness.

    Args:
        model: a Keras model or callable mapping images to logits.
        x: images [N, H, W, C] inside the box.
        y: true labels [N].
        targeted: aim for `target` instead of any wrong class.
        target: target labels [N] when `targeted`.
        steps: PGD steps of size (clip_max - clip_min) / 10, from the clean image (a random
            start anywhere in the box would win by chance and hide a stalled attack).
        clip_min: the lower edge of the box.
        clip_max: the upper edge of the box.
        batch_size: images per compiled step.
        allow_probabilities: attack a model that outputs probabilities on purpose.

    Returns:
        bool [N]: True where the unbounded attack failed.
    """
    width = clip_max - clip_min
    result = projected_gradient_descent(
        model,
        x,
        y,
        eps=width,
        step_size=width / 10,
        steps=steps,
        random_start=False,
        targeted=targeted,
        target=target,
        clip_min=clip_min,
        clip_max=clip_max,
        batch_size=batch_size,
        allow_probabilities=allow_probabilities,
    )
    return ~result.success


def pgd_loss_trace(
    model: Callable[..., Any],
    x: np.ndarray,
    y: np.ndarray,
    *,
    eps: float,
    step_size: float,
    steps: int,
    random_start: bool = True,
    clip_min: float = 0.0,
    clip_max: float = 1.0,
    seed: int = 0,
) -> np.ndarray:
    """The per-image loss of an untargeted L-inf PGD run at every step, for
    `incomplete_optimization` (the attack minimises minus the cross-entropy of `y`).

    Runs the same iteration as `projected_gradient_descent` eagerly, one step at a time, so
    it costs about one PGD run and leaves the compiled attack untouched.

    Args:
        model: a Keras model or callable mapping images to logits.
        x: images [N, H, W, C] inside the box.
        y: true labels [N].
        eps: the L-inf budget.
        step_size: the size of each step.
        steps: number of steps.
        random_start: start at a random point of the eps-ball, as the attack does.
        clip_min: the lower edge of the box.
        clip_max: the upper edge of the box.
        seed: seed of the random start (the attack's default 0 gives the attack's start).

    Returns:
        float64 [N, steps + 1]: the loss before each step and after the last.
    """
    from keras_takd.attacks.projected_gradient_descent import pgd_perturb

    x = np.asarray(x, np.float32)
    labels = tf.constant(np.asarray(y, np.int64))
    current = random_start_points(x, eps, "linf", clip_min, clip_max, seed) if random_start else x
    trace = []
    for step in range(steps + 1):
        logits = common.call_model(model, tf.constant(current))
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        trace.append(-ce.numpy().astype(np.float64))
        if step < steps:
            current = pgd_perturb(
                model, x, labels, current, eps, step_size, 1, clip_min=clip_min, clip_max=clip_max
            ).numpy()
    return np.stack(trace, axis=1)


def check_attack(
    model: Callable[..., Any],
    x: np.ndarray,
    y: np.ndarray,
    result: common.AttackResult,
    *,
    loss: str = "margin",
    targeted: bool = False,
    loss_trace: np.ndarray | None = None,
    unconstrained_steps: int | None = 100,
    allow_probabilities: bool = False,
    batch_size: int = common.DEFAULT_BATCH_SIZE,
) -> IndicatorReport:
    """Every indicator that applies to one attack's result on `x`.

    Args:
        model: the attacked model.
        x: the clean images [N, H, W, C], in [0, 1].
        y: true labels [N].
        result: the attack's `AttackResult` on `x`.
        loss: the attack's loss, for the gradient check ("margin" for C&W, "cross_entropy"
            for PGD and FGSM).
        targeted: whether the attack was targeted (its targets are read from `result.target`).
        loss_trace: [N, T] losses of the attack's last solve, if recorded (e.g. from
            `pgd_loss_trace`); without it incomplete optimisation is not checked.
        unconstrained_steps: PGD steps of the unconstrained attack (None skips it).
        allow_probabilities: the model outputs probabilities on purpose.
        batch_size: images per batch.

    Returns:
        An `IndicatorReport` with "silent_success", "vanishing_gradients" and, when
        computed, "incomplete_optimization" and "unconstrained_attack_failure".
    """
    labels = np.asarray(result.target if targeted else y, np.int64)
    flags = {}
    if result.found is not None:
        flags["silent_success"] = silent_success(result)
    if loss_trace is not None:
        flags["incomplete_optimization"] = incomplete_optimization(loss_trace)
    flags["vanishing_gradients"] = vanishing_gradients(
        model, x, labels, loss=loss, targeted=targeted, batch_size=batch_size
    )
    if unconstrained_steps is not None:
        flags["unconstrained_attack_failure"] = unconstrained_attack_failure(
            model,
            x,
            y,
            targeted=targeted,
            target=labels if targeted else None,
            steps=unconstrained_steps,
            batch_size=batch_size,
            allow_probabilities=allow_probabilities,
        )
    return IndicatorReport(flags)
