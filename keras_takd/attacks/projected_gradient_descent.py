"""Projected gradient descent (Madry et al., arXiv:1706.06083), L-infinity or L2, batched.

From a random start inside the eps-ball around each image, take `steps` steps of size
`step_size` up the cross-entropy of the true label (or down that of a target label): the sign of
the gradient for L-infinity, the normalised gradient for L2. After every step project back onto
the eps-ball and clip to the box. The loop runs compiled with a fixed input signature (the last
batch is padded). `pgd_perturb` is the same loop as plain TensorFlow ops, for use inside a Keras
`train_step` (PGD adversarial training).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from keras_takd.attacks import common, projections
from keras_takd.attacks.preparation import check_positive_finite, prepare_inputs

NORMS = ("linf", "l2")
_TINY = 1e-12


def projected_gradient_descent(
    model: Callable[..., Any],
    x: np.ndarray,
    y: np.ndarray,
    eps: float,
    step_size: float,
    steps: int,
    random_start: bool = True,
    norm: str = "linf",
    *,
    targeted: bool = False,
    target: np.ndarray | None = None,
    clip_min: float = 0.0,
    clip_max: float = 1.0,
    batch_size: int = 128,
    seed: int | None = 0,
    keep_failed: bool = False,
    allow_probabilities: bool = False,
    verbose: bool = False,
) -> common.AttackResult:
    """Runs PGD on a batch of images.

    Args:
        model: a Keras model (or callable) mapping float32 images in the box to logits.
        x: images [N, H, W, C] inside [clip_min, clip_max].
        y: true labels [N].
        eps: radius of the allowed perturbation ball (in `norm`), > 0.
        step_size: size of each step (in `norm`), > 0.
        steps: number of steps, >= 1.
        random_start: start at a uniformly random point of the eps-ball (else at `x`).
        norm: "linf" or "l2".
        targeted: descend the cross-entropy of `target` instead of ascending that of `y`.
        target: target labels [N], required when `targeted`.
        clip_min: the lower edge of the box.
        clip_max: the upper edge of the box.
        batch_size: images per compiled step.
        seed: seed of the random start (None: a fresh one).
        keep_failed: keep the perturbed image of failed examples (e.g. for adversarial
            training) instead of the original one; `success` stays False for them.
        allow_probabilities: attack a model that outputs probabilities on purpose.
        verbose: show a progress bar over batches.

    Returns:
        An `AttackResult` (`const` is NaN: PGD has no trade-off constant).

    Raises:
        ValueError: on invalid options or inputs.
    """
    _check_options(eps, step_size, steps, norm)
    inputs = prepare_inputs(
        model,
        x,
        y,
        targeted=targeted,
        target=target,
        clip_min=clip_min,
        clip_max=clip_max,
        batch_size=batch_size,
        allow_probabilities=allow_probabilities,
    )
    x = inputs.x
    x_init = random_start_points(x, eps, norm, clip_min, clip_max, seed) if random_start else x
    plan = inputs.batches()
    run = inputs.compiled(
        model,
        "projected_gradient_descent",
        (plan.size, norm),
        lambda: _build_runner(model, x.shape[1:], plan.size, norm, clip_min, clip_max),
    )
    options = [tf.constant(eps, tf.float32), tf.constant(step_size, tf.float32)]
    options += [tf.constant(steps, tf.int32), tf.constant(targeted)]
    x_adv, found = np.empty_like(x), np.empty(len(x), bool)
    for part in plan.each(len(x), verbose):
        padded = plan.pad(x[part], x_init[part], inputs.labels[part])
        x_adv[part], found[part] = plan.trim(part, *run(*map(tf.constant, padded), *options))
    return inputs.result(
        model,
        x_adv,
        const=np.nan,
        batch_size=plan.size,
        found=found,
        restore_failed=not keep_failed,
    )


def pgd_perturb(
    model: Callable[..., Any],
    x: tf.Tensor,
    labels: tf.Tensor,
    x_init: tf.Tensor,
    eps: float | tf.Tensor,
    step_size: float | tf.Tensor,
    steps: int | tf.Tensor,
    *,
    norm: str = "linf",
    targeted: bool | tf.Tensor = False,
    clip_min: float = 0.0,
    clip_max: float = 1.0,
) -> tf.Tensor:
    """The PGD loop in TensorFlow ops (no input checks), usable inside a `tf.function`.

    Args:
        model: maps float32 images to logits.
        x: the clean images [B, H, W, C].
        labels: int labels [B]: true labels, or targets when `targeted`.
        x_init: the starting points (e.g. `x`, or `random_start_points(...)`).
        eps: radius of the ball in `norm`.
        step_size: size of each step in `norm`.
        steps: number of steps.
        norm: "linf" or "l2".
        targeted: descend the target's cross-entropy instead of ascending the label's.
        clip_min: the lower edge of the box.
        clip_max: the upper edge of the box.

    Returns:
        The adversarial images [B, H, W, C], inside the eps-ball around `x` and the box.

    Raises:
        ValueError: for an unknown `norm`.
    """
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    options = dict(norm=norm, targeted=targeted, clip_min=clip_min, clip_max=clip_max)
    return _pgd_loop(model, x, labels, x_init, eps, step_size, steps, track=False, **options)[0]


def _pgd_loop(
    model: Callable[..., Any],
    x: tf.Tensor,
    labels: tf.Tensor,
    x_init: tf.Tensor,
    eps: float | tf.Tensor,
    step_size: float | tf.Tensor,
    steps: int | tf.Tensor,
    *,
    track: bool,
    norm: str,
    targeted: bool | tf.Tensor,
    clip_min: float,
    clip_max: float,
) -> tuple[tf.Tensor, tf.Tensor]:
    """`pgd_perturb`'s loop, returning the images and bool [B] `found`.

    With `track`, `found` says whether any iterate before the last was adversarial (read off
    the logits each step computes anyway); without, it stays all False.
    """
    x = tf.convert_to_tensor(x, tf.float32)
    targeted = tf.convert_to_tensor(targeted)
    direction = tf.where(targeted, -1.0, 1.0)

    def step(i, x_adv, found):
        with tf.GradientTape() as tape:
            tape.watch(x_adv)
            logits = common.call_model(model, x_adv)
            loss = tf.reduce_sum(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
            )
        grad = direction * tape.gradient(loss, x_adv)
        if track:
            hit = tf.equal(tf.argmax(logits, axis=-1, output_type=labels.dtype), labels)
            found = found | tf.where(targeted, hit, ~hit)
        if norm == "linf":
            x_adv = x_adv + step_size * tf.sign(grad)
        else:
            x_adv = x_adv + step_size * grad / (_l2_norm(grad) + _TINY)
        return i + 1, _project(x_adv, x, eps, norm, clip_min, clip_max), found

    x_start = _project(tf.convert_to_tensor(x_init, tf.float32), x, eps, norm, clip_min, clip_max)
    found = tf.zeros(tf.shape(x)[:1], tf.bool)
    _, x_adv, found = tf.while_loop(lambda i, *_: i < steps, step, (tf.constant(0), x_start, found))
    return x_adv, found


def random_start_points(
    x: np.ndarray,
    eps: float,
    norm: str,
    clip_min: float,
    clip_max: float,
    seed: int | None = 0,
) -> np.ndarray:
    """Uniformly random points of the eps-ball around each image, clipped to the box.

    Args:
        x: images [N, H, W, C].
        eps: the ball's radius.
        norm: "linf" (uniform in the cube) or "l2" (uniform in the Euclidean ball).
        clip_min: the lower edge of the box.
        clip_max: the upper edge of the box.
        seed: numpy seed (None: a fresh one).

    Returns:
        float32 [N, H, W, C].
    """
    rng = np.random.default_rng(seed)
    if norm == "linf":
        delta = rng.uniform(-eps, eps, size=x.shape)
    else:
        direction = rng.standard_normal(size=x.shape)
        direction /= np.sqrt(np.sum(direction**2, axis=(1, 2, 3), keepdims=True)) + _TINY
        dims = np.prod(x.shape[1:])
        radius = eps * rng.uniform(size=(len(x), 1, 1, 1)) ** (1.0 / dims)
        delta = direction * radius
    return np.clip(x + delta, clip_min, clip_max).astype(np.float32)


def _l2_norm(t: tf.Tensor) -> tf.Tensor:
    return tf.sqrt(tf.reduce_sum(tf.square(t), axis=[1, 2, 3], keepdims=True))


def _project(
    x_adv: tf.Tensor, x: tf.Tensor, eps: Any, norm: str, clip_min: float, clip_max: float
) -> tf.Tensor:
    """Projects onto the eps-ball around x in `norm`, then clips to the box."""
    delta = projections.project_ball(x_adv - x, eps, norm)
    return tf.clip_by_value(x + delta, clip_min, clip_max)


def _build_runner(
    model: Callable[..., Any],
    image_shape: tuple[int, ...],
    batch_size: int,
    norm: str,
    clip_min: float,
    clip_max: float,
) -> Callable[..., Any]:
    images = tf.TensorSpec([batch_size, *image_shape], tf.float32)
    scalar = tf.TensorSpec([], tf.float32)
    signature = [
        images,
        images,
        tf.TensorSpec([batch_size], tf.int64),
        scalar,
        scalar,
        tf.TensorSpec([], tf.int32),
        tf.TensorSpec([], tf.bool),
    ]

    @tf.function(input_signature=signature)
    def run(x, x_init, labels, eps, step_size, steps, targeted):
        return _pgd_loop(
            model,
            x,
            labels,
            x_init,
            eps,
            step_size,
            steps,
            track=True,
            norm=norm,
            targeted=targeted,
            clip_min=clip_min,
            clip_max=clip_max,
        )

    return run


def _check_options(eps: float, step_size: float, steps: int, norm: str) -> None:
    check_positive_finite("eps", eps)
    check_positive_finite("step_size", step_size)
    if int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps}")
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
