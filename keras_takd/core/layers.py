"""Temperature softmax, the layer at the heart of defensive distillation.

Papernot et al. 2016 (arXiv:1511.04508) train with softmax(z / T) at a high temperature T and
evaluate at T = 1; Mandal & Guo ("Improving Defensive Distillation using Teacher Assistant")
keep that recipe for every model of a teacher -> assistant -> student chain.
"""

from __future__ import annotations

import math

import keras


def check_temperature(temperature: float) -> float:
    """Returns `temperature` as a float after checking it is finite and positive.

    Raises:
        ValueError: if the temperature is not a finite number > 0.
    """
    try:
        value = float(temperature)
    except (TypeError, ValueError):
        raise ValueError(f"temperature must be a number > 0, got {temperature!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    return value


@keras.saving.register_keras_serializable(package="keras_takd")
class TemperatureSoftmax(keras.layers.Layer):
    """Softmax of logits divided by a temperature: softmax(z / T).

    Args:
        temperature: the softmax temperature T > 0. T = 1 is the ordinary softmax.
        **kwargs: standard `keras.layers.Layer` arguments (name, dtype, ...).

    Raises:
        ValueError: if `temperature` is not a finite number > 0.
    """

    def __init__(self, temperature: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.temperature = check_temperature(temperature)

    def call(self, logits):
        return keras.ops.softmax(logits / self.temperature, axis=-1)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "temperature": self.temperature}
