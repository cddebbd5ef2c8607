"""Models run in float64, for gradients whose size must not hinge on float32 underflow.

A network distilled at high temperature and deployed at T = 1 has a saturated softmax: the
probabilities of the other classes are about exp(-margin), 1e-40 and less. In float32 the
gradients that go through them come out as exactly 0 on one CPU and as rounding noise (about
1e-7) on another (TensorFlow uses oneDNN on CPUs with AVX-512, Eigen elsewhere), so a count of
near-zero gradients flips with the machine. The same network copied into float64 gives their
true size on every CPU. Papernot et al. (arXiv:1511.04508) and Carlini & Wagner
(arXiv:1608.04644) describe the vanishing gradients this measures; `keras_takd.core.metrics`
(sensitivity) and `keras_takd.attacks.indicators` (vanishing gradients) both use this module.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import tensorflow as tf


def float64_copy(model: Callable[..., Any]) -> Callable[..., Any]:
    """The same model computing in float64.

    A Keras model is rebuilt from its config with every layer's (and every nested model's)
    dtype set to float64 and given the same weights; any other callable is returned as it is
    and must compute in the precision of the images it is given (`call_in_float64` checks).

    Args:
        model: a Keras model, or a callable that computes in the precision of its input.

    Returns:
        A float64 Keras model with `model`'s weights, or `model` itself.
    """
    if not isinstance(model, keras.Model):
        return model
    copy = model.__class__.from_config(_float64_config(model.get_config()))
    copy.set_weights(model.get_weights())
    return copy


def _float64_config(config: Any) -> Any:
    """`config` with every non-empty "dtype" entry, at any depth, replaced by "float64"."""
    if isinstance(config, dict):
        return {
            key: "float64" if key == "dtype" and value is not None else _float64_config(value)
            for key, value in config.items()
        }
    if isinstance(config, list):
        return [_float64_config(value) for value in config]
    return config


def call_in_float64(model64: Callable[..., Any], images: tf.Tensor) -> tf.Tensor:
    """Runs a float64 model (from `float64_copy`) on float64 images, in inference mode.

    Args:
        model64: a Keras layer or model (called with training=False), or a callable (called
            as it is), that computes in float64.
        images: float64 images [N, H, W, C].

    Returns:
        The model's float64 outputs.

    Raises:
        ValueError: if the outputs are not float64 (e.g. a callable that computes in float32).
    """
    if isinstance(model64, keras.layers.Layer):
        outputs = model64(images, training=False)
    else:
        outputs = model64(images)
    if outputs.dtype != tf.float64:
        raise ValueError(
            f"the model returned {outputs.dtype.name} outputs for float64 images; expected a "
            "Keras model (copied in float64) or a callable computing in the precision of its "
            "input"
        )
    return outputs
