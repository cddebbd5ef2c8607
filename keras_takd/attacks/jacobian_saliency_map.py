"""The Jacobian-based Saliency Map Attack (JSMA; Papernot et al., EuroS&P 2016, arXiv:1511.07528).

A targeted L0 attack: it changes a few input features by a fixed amount theta, two at a time,
choosing each pair from the Jacobian of the model's output F. Each iteration (the paper's
Algorithm 3 with the pairwise saliency map of its Section III-B, as defensive distillation's
evaluation uses it, arXiv:1511.04508 Section V):

1. computes, at the current image, the gradient of the target class's output F_t and the sum of
   the gradients of the other classes' outputs;
2. for every pair (p, q) of distinct features still in the search domain, alpha = the sum of
   the target's gradient over p and q, beta = the sum of the other classes' gradients over p
   and q; for theta > 0 the pair is admissible when alpha > 0 and beta < 0 (the mirrored rule
   for theta < 0: alpha < 0 and beta > 0), and its saliency is -alpha * beta;
3. adds theta to both features of the most salient pair and clips to the box; a feature that
   reaches its bound (clip_max for theta > 0, clip_min for theta < 0) leaves the search domain.

The search domain starts as the features not already at that bound. An image stops when the
model predicts the target, when the next pair would change more than the maximum distortion
gamma (a fraction of the features; the paper's 14.5% on MNIST by default), or when no admissible
pair is left (or, with a theta too small for float32, when the pair's change rounds away).
Success is verified by classifying the returned image; a failed image gets its original back.

F is the softmax of the model's logits by default, as in both papers; `gradients="logits"`
differentiates the logits Z instead (the paper's own remark that the last hidden layer works
too, and cleverhans' choice). With the softmax the other classes' gradients sum to minus the
target's, so beta = -alpha up to rounding and the saliency is alpha squared.

Where this implementation deviates from the paper:
- Batched: the images of a batch are attacked together in one compiled `tf.while_loop`; an
  image that has stopped keeps its image while the others go on. Rows of a batch do not
  interact, so the result is that of one image at a time (up to the rounding of CPU kernels
  at different batch sizes).
- The gradient of the other classes is taken as the gradient of their summed outputs (one
  backward pass) instead of the sum of K - 1 per-class gradients; the two are equal up to
  float32 rounding.
- The maximum distortion is a hard bound: an image stops before a pair that would take the
  number of changed features above floor(gamma * features). The paper's loop tests the
  distortion before the step and can end one pair above it; for theta = +-1 this rule allows
  floor(gamma * features / 2) pairs, cleverhans 3.1's iteration limit (56 on MNIST).
- Saliencies are float32 products, as in the papers' and cleverhans' code: with saturated
  softmax gradients (defensive distillation at high temperature) the product of two admissible
  sums can underflow to 0; such a pair stays admissible (its signs decide), and among equal
  saliencies the first pair in row-major order wins. cleverhans instead treats a zero
  saliency as inadmissible and, when no pair scores above 0, keeps "changing" feature 0; this
  implementation stops that image (no admissible pair left).
- Features are the entries of the image tensor (channels apart), as in the paper;
  `AttackResult.l0` counts pixels: the two agree for one-channel images like MNIST.
- Memory grows with the square of the feature count: a batch holds a few
  [batch_size, features, features] float32 tensors (about 80 MB each for 32 MNIST images).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf

from keras_takd.attacks import common
from keras_takd.attacks.preparation import AttackInputs, prepare_inputs

GRADIENTS = ("softmax", "logits")
DEFAULT_GAMMA = 0.145  # the maximum distortion on MNIST, Papernot et al. 2016 (both papers)
DEFAULT_BATCH_SIZE = 32  # pairwise saliencies take batch_size * features**2 floats


def jacobian_saliency_map(
    model: Callable[..., Any],
    x: np.ndarray,
    y: np.ndarray,
    *,
    targeted: bool = True,
    target: np.ndarray | None = None,
    theta: float = 1.0,
    gamma: float = DEFAULT_GAMMA,
    gradients: str = "softmax",
    batch_size: int = DEFAULT_BATCH_SIZE,
    clip_min: float = 0.0,
    clip_max: float = 1.0,
    allow_probabilities: bool = False,
    jit_compile: bool = False,
    verbose: bool = False,
) -> common.AttackResult:
    """Runs JSMA towards `target` on a batch of images.

    Args:
        model: a Keras model (or callable) mapping float32 images in the box to logits.
        x: images [N, H, W, C] inside [clip_min, clip_max].
        y: true labels [N].
        targeted: must be True: JSMA is a targeted attack (the argument exists so that
            `all_targets` can run it).
        target: target labels [N], each different from `y`.
        theta: the change of a chosen feature, non-zero: +1 sets features to clip_max (the
            papers' setting on MNIST), -1 to clip_min.
        gamma: the maximum distortion, the largest fraction of features changed, in (0, 1].
        gradients: "softmax" (F = softmax(Z), the papers) or "logits" (Z).
        batch_size: images attacked together.
        clip_min: the lower edge of the box.
        clip_max: the upper edge of the box.
        allow_probabilities: attack a model that outputs probabilities on purpose.
        jit_compile: compile the loop with XLA.
        verbose: show a progress bar over batches.

    Returns:
        An `AttackResult` (`const` is NaN; `found` is whether the loop saw the target predicted;
        `iterations` the pairs changed per image).

    Raises:
        ValueError: on invalid options or inputs (see `preparation.prepare_inputs`).
    """
    _check_options(targeted, theta, gamma, gradients)
    inputs = prepare_inputs(
        model,
        x,
        y,
        targeted=True,
        target=target,
        clip_min=clip_min,
        clip_max=clip_max,
        batch_size=batch_size,
        allow_probabilities=allow_probabilities,
    )
    features = int(np.prod(inputs.x.shape[1:]))
    max_changed = math.floor(gamma * features)
    plan = inputs.batches()
    run = inputs.compiled(
        model,
        "jacobian_saliency_map",
        (plan.size, theta > 0, gradients, jit_compile),
        lambda: _build_runner(model, inputs, plan.size, theta > 0, gradients, jit_compile),
    )
    settings = (tf.constant(theta, tf.float32), tf.constant(max_changed, tf.int32))
    x_adv = np.empty_like(inputs.x)
    found = np.empty(len(inputs.x), bool)
    iterations = np.empty(len(inputs.x), np.int64)
    for part in plan.each(len(inputs.x), verbose):
        images, onehot = plan.pad(inputs.x[part], inputs.onehot[part])
        x_adv[part], found[part], iterations[part] = plan.trim(
            part, *run(tf.constant(images), tf.constant(onehot), *settings)
        )
    result = inputs.result(model, x_adv, const=np.nan, batch_size=plan.size, found=found)
    result.iterations = iterations
    return result


def _check_options(targeted: bool, theta: float, gamma: float, gradients: str) -> None:
    if not targeted:
        raise ValueError("jacobian_saliency_map is targeted: expected targeted=True and target")
    if not math.isfinite(theta) or theta == 0:
        raise ValueError(f"theta must be a finite non-zero change, got {theta}")
    if not 0 < gamma <= 1:
        raise ValueError(f"gamma must be a fraction of the features in (0, 1], got {gamma}")
    if gradients not in GRADIENTS:
        raise ValueError(f"gradients must be one of {GRADIENTS}, got {gradients!r}")


class _State(NamedTuple):
    x_adv: Any  # [B, M] the current images, flattened
    domain: Any  # [B, M] bool: features still in the search domain
    running: Any  # [B] bool: the image has not stopped
    found: Any  # [B] bool: the model predicted the target at the current image
    iterations: Any  # [B] int32: pairs changed so far


def _target_and_other_gradients(
    model: Callable[..., Any], x_flat: tf.Tensor, onehot: tf.Tensor, shape: list[int], softmax: bool
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """The logits at `x_flat` and the gradients of F_t and of sum_{j != t} F_j, each [B, M]."""
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x_flat)
        logits = common.call_model(model, tf.reshape(x_flat, shape))
        outputs = tf.nn.softmax(logits) if softmax else logits
        target_output = tf.reduce_sum(outputs * onehot)
        other_output = tf.reduce_sum(outputs * (1.0 - onehot))
    grad_target = tape.gradient(target_output, x_flat)
    grad_other = tape.gradient(other_output, x_flat)
    del tape
    return logits, grad_target, grad_other


def _most_salient_pair(
    grad_target: tf.Tensor, grad_other: tf.Tensor, domain: tf.Tensor, increase: bool
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """The admissible pair of largest saliency -alpha * beta per image.

    Returns:
        `(p, q, admissible)`: the pair's two feature indices [B] (p < q) and whether any pair
        of the domain meets the conditions [B].
    """
    features = grad_target.shape[1]
    alpha = grad_target[:, :, None] + grad_target[:, None, :]
    beta = grad_other[:, :, None] + grad_other[:, None, :]
    conditions = (alpha > 0) & (beta < 0) if increase else (alpha < 0) & (beta > 0)
    distinct = ~tf.eye(features, dtype=tf.bool)[None]
    in_domain = domain[:, :, None] & domain[:, None, :]
    admissible = conditions & distinct & in_domain
    # Admissible saliencies are >= 0, so -1 ranks every other pair below them.
    scores = tf.where(admissible, -alpha * beta, -1.0)
    best = tf.argmax(tf.reshape(scores, [-1, features * features]), axis=1, output_type=tf.int32)
    p, q = best // features, best % features
    return tf.minimum(p, q), tf.maximum(p, q), tf.reduce_any(admissible, axis=[1, 2])


def _build_runner(
    model: Callable[..., Any],
    inputs: AttackInputs,
    batch_size: int,
    increase: bool,
    gradients: str,
    jit_compile: bool,
) -> Callable[..., Any]:
    image_shape = list(inputs.x.shape[1:])
    features = int(np.prod(image_shape))
    clip_min, clip_max = inputs.clip_min, inputs.clip_max
    signature = [
        tf.TensorSpec([batch_size, *image_shape], tf.float32),
        tf.TensorSpec([batch_size, inputs.num_classes], tf.float32),
        tf.TensorSpec([], tf.float32),
        tf.TensorSpec([], tf.int32),
    ]

    def at_bound(values: tf.Tensor) -> tf.Tensor:
        return values >= clip_max if increase else values <= clip_min

    @tf.function(input_signature=signature, jit_compile=jit_compile, reduce_retracing=False)
    def run(x, onehot, theta, max_changed):
        x_flat = tf.reshape(x, [batch_size, features])
        target = tf.argmax(onehot, axis=-1)

        def step(s: _State) -> tuple[_State]:
            logits, grad_target, grad_other = _target_and_other_gradients(
                model, s.x_adv, onehot, [batch_size, *image_shape], gradients == "softmax"
            )
            found = tf.equal(tf.argmax(logits, axis=-1), target)
            p, q, admissible = _most_salient_pair(grad_target, grad_other, s.domain, increase)
            pair = tf.one_hot(p, features) + tf.one_hot(q, features)
            candidate = tf.clip_by_value(s.x_adv + theta * pair, clip_min, clip_max)
            changed = tf.reduce_sum(tf.cast(tf.not_equal(candidate, x_flat), tf.int32), axis=1)
            # A theta lost to float32 rounding moves nothing: stop rather than loop for ever.
            moves = tf.reduce_any(tf.not_equal(candidate, s.x_adv), axis=1)
            running = s.running & ~found & admissible & moves & (changed <= max_changed)
            moving = running[:, None]
            x_adv = tf.where(moving, candidate, s.x_adv)
            domain = tf.where(moving, s.domain & ~at_bound(x_adv), s.domain)
            return (
                _State(
                    x_adv=x_adv,
                    domain=domain,
                    running=running,
                    found=found,
                    iterations=s.iterations + tf.cast(running, tf.int32),
                ),
            )

        start = _State(
            x_adv=x_flat,
            domain=~at_bound(x_flat),
            running=tf.ones([batch_size], tf.bool),
            found=tf.zeros([batch_size], tf.bool),
            iterations=tf.zeros([batch_size], tf.int32),
        )
        (final,) = tf.while_loop(lambda s: tf.reduce_any(s.running), step, (start,))
        return tf.reshape(final.x_adv, [batch_size, *image_shape]), final.found, final.iterations

    return run
