"""The optimiser and the compiled-function cache that every attack in `keras_takd.attacks` uses.

Carlini & Wagner's reference attacks (arXiv:1608.04644, github.com/carlini/nn_robust_attacks)
minimise with TF1's `tf.train.AdamOptimizer`. `adam_step` is that optimiser written out as a
pure function with one state per example, with TF1's arithmetic, operation for operation, so
that an attack here follows the original's float32 trajectory bitwise where its gradients
agree: the bias-corrected step size from running products of the betas (TF1 keeps
`beta1_power` and `beta2_power` variables, multiplied by the betas after each step, rather
than computing beta ** t), and the moments updated as `m += (g - m) * (1 - beta1)` in float32,
as TF's `ApplyAdam` kernel does.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Hashable
from typing import Any

import tensorflow as tf

# tf.compat.v1.train.AdamOptimizer defaults, which the originals use.
ADAM_BETA1, ADAM_BETA2, ADAM_EPSILON = 0.9, 0.999, 1e-8

_COMPILED_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def expand_to(vector: tf.Tensor, like: tf.Tensor) -> tf.Tensor:
    """Reshapes a per-example [N] vector (or a scalar) to broadcast against `like` [N, ...]."""
    return tf.reshape(vector, [-1] + [1] * (len(like.shape) - 1))


def adam_step(
    w: tf.Tensor,
    grad: tf.Tensor,
    m: tf.Tensor,
    v: tf.Tensor,
    beta1_power: tf.Tensor,
    beta2_power: tf.Tensor,
    learning_rate: float | tf.Tensor,
    moving: tf.Tensor,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """One step of TF1's AdamOptimizer with a separate state per example.

    A fresh state has zero moments and `beta1_power`, `beta2_power` equal to `ADAM_BETA1`,
    `ADAM_BETA2`, as TF1 initialises them.

    Args:
        w: the variable [N, ...].
        grad: its gradient [N, ...].
        m: first moments [N, ...].
        v: second moments [N, ...].
        beta1_power: float32 [N], beta1 ** t for the t-th step of each example.
        beta2_power: float32 [N], beta2 ** t likewise.
        learning_rate: Adam's learning rate, a scalar or float32 [N] per example.
        moving: bool [N]; examples that are False keep their whole state.

    Returns:
        The updated `(w, m, v, beta1_power, beta2_power)`.
    """
    one = tf.constant(1.0, tf.float32)
    beta1 = tf.constant(ADAM_BETA1, tf.float32)
    beta2 = tf.constant(ADAM_BETA2, tf.float32)
    alpha = learning_rate * tf.sqrt(one - beta2_power) / (one - beta1_power)
    m_new = m + (grad - m) * (one - beta1)
    v_new = v + (tf.square(grad) - v) * (one - beta2)
    w_new = w - (m_new * expand_to(alpha, w)) / (tf.sqrt(v_new) + ADAM_EPSILON)
    selected = expand_to(moving, w)
    return (
        tf.where(selected, w_new, w),
        tf.where(selected, m_new, m),
        tf.where(selected, v_new, v),
        tf.where(moving, beta1_power * beta1, beta1_power),
        tf.where(moving, beta2_power * beta2, beta2_power),
    )


def cached_compiled(
    model: Callable[..., Any], key: Hashable, build: Callable[[], Callable[..., Any]]
) -> Callable[..., Any]:
    """Returns `build()` for (model, key), building it only once while `model` lives.

    Attacks keep their compiled `tf.function`s here so that repeated calls on the same model
    and settings do not trace again. The cache holds each model weakly, so entries go with
    their model; models that cannot be weakly referenced get a fresh build every call.

    Args:
        model: the attacked model.
        key: everything else the compiled function depends on (shapes, box, options).
        build: makes the compiled function.

    Returns:
        The cached or newly built function.
    """
    try:
        per_model = _COMPILED_CACHE.setdefault(model, {})
    except TypeError:
        return build()
    if key not in per_model:
        per_model[key] = build()
    return per_model[key]
