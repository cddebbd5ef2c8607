"""Smoothed inference over noise-injected networks: the teachers of Katz & Reches.

Nemcovsky et al. 2020, "Smoothed Inference for Adversarially-Trained Models"
(arXiv:1911.07198), classify with the average of M forward passes of a randomized network
(M = 512 for the teacher of Katz & Reches), each pass with fresh weight noise
(keras_takd.smoothed.noise_injection). Two aggregations of the M outputs z_1 .. z_M are used:

* prediction smoothing: the vote histogram, count_m[argmax z_m = c] / M;
* soft prediction smoothing: the mean of the M softmax vectors, mean_m softmax(z_m / T)
  (T = 1 in Nemcovsky et al.; a temperature T > 1 gives the soft targets of Hinton et al.
  2015, arXiv:1503.02531).

Katz & Reches ("Knowledge Distillation via Smoothed Models and Adversarial Robustness",
2022) distil a deterministic student from either aggregation with the Hinton-style loss
L = (1 - w) * CE(z_s, y) + w * T^2 * CE(p_t, softmax(z_s / T)), which is
`keras_takd.core.distillation.distillation_loss` with `scale_soft_loss=True`.

`SmoothedClassifier` draws the M samples in compiled chunks of `chunk_size` passes and keeps
only running sums, so memory is O(batch x classes) whatever M is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import keras
import numpy as np
import tensorflow as tf

from keras_takd.core.layers import check_temperature

PREDICTION = "prediction"
SOFT_PREDICTION = "soft_prediction"
AGGREGATIONS = (PREDICTION, SOFT_PREDICTION)


class SmoothedOutputs(NamedTuple):
    """Both aggregations of the same M forward passes, each [N, num_classes], rows sum to 1."""

    prediction: np.ndarray
    soft_prediction: np.ndarray


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _check_aggregation(aggregation: str) -> str:
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
    return aggregation


class SmoothedClassifier:
    """Averages M noisy forward passes of a logits model (Nemcovsky et al., arXiv:1911.07198).

    The model must draw fresh randomness at every call (e.g. a `cni_model`, whose noise is on
    regardless of `training`); it is run with `training=False`, so batch normalisation uses
    its moving statistics. A deterministic model gives M identical passes.

    Args:
        model: a Keras model or layer (called with `training=False`) or any callable mapping a
            float32 batch to logits [batch, num_classes].
        num_samples: M, the number of forward passes averaged (512 in the papers).
        chunk_size: forward passes per compiled call; memory does not depend on it or on M.
        batch_size: default number of inputs per forward pass.
        aggregation: default aggregation of `soft_targets` and `predict`: "prediction"
            (vote counts / M) or "soft_prediction" (mean softmax).

    Raises:
        ValueError: for non-positive num_samples, chunk_size or batch_size, or an unknown
            aggregation.
    """

    def __init__(
        self,
        model: Callable[..., Any],
        num_samples: int = 512,
        chunk_size: int = 32,
        batch_size: int = 256,
        aggregation: str = SOFT_PREDICTION,
    ):
        self.model = model
        self.num_samples = _positive_int(num_samples, "num_samples")
        self.chunk_size = _positive_int(chunk_size, "chunk_size")
        self.batch_size = _positive_int(batch_size, "batch_size")
        self.aggregation = _check_aggregation(aggregation)
        self._sums_fn = None

    def _logits(self, x: tf.Tensor) -> tf.Tensor:
        if isinstance(self.model, keras.layers.Layer):
            return tf.cast(self.model(x, training=False), tf.float32)
        return tf.cast(self.model(x), tf.float32)

    def _draw_sums(
        self, x: tf.Tensor, temperature: tf.Tensor, draws: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """Sums over `draws` >= 1 passes of the one-hot votes and of softmax(z / T)."""
        logits = self._logits(x)
        num_classes = tf.shape(logits)[-1]
        votes = tf.one_hot(tf.argmax(logits, axis=-1), num_classes, dtype=tf.float32)
        soft = tf.nn.softmax(logits / temperature, axis=-1)
        for _ in tf.range(draws - 1):
            logits = self._logits(x)
            votes += tf.one_hot(tf.argmax(logits, axis=-1), num_classes, dtype=tf.float32)
            soft += tf.nn.softmax(logits / temperature, axis=-1)
        return votes, soft

    def _compiled_sums(self, example_shape: tuple[int, ...]):
        if self._sums_fn is None or self._sums_fn[0] != example_shape:
            signature = [
                tf.TensorSpec((None, *example_shape), tf.float32),
                tf.TensorSpec((), tf.float32),
                tf.TensorSpec((), tf.int32),
            ]
            self._sums_fn = (example_shape, tf.function(self._draw_sums, input_signature=signature))
        return self._sums_fn[1]

    def aggregate(
        self, x: np.ndarray, temperature: float = 1.0, batch_size: int | None = None
    ) -> SmoothedOutputs:
        """Runs M noisy passes over `x` and returns both aggregations.

        Args:
            x: inputs [N, ...] (converted to float32).
            temperature: T > 0 of the soft aggregation, mean_m softmax(z_m / T). The votes do
                not depend on T.
            batch_size: inputs per forward pass; defaults to the constructor's.

        Returns:
            `SmoothedOutputs(prediction, soft_prediction)`, float32 arrays [N, num_classes].

        Raises:
            ValueError: for an empty `x`, a bad temperature or batch size.
        """
        temperature = check_temperature(temperature)
        batch_size = (
            self.batch_size if batch_size is None else _positive_int(batch_size, "batch_size")
        )
        x = np.asarray(x, dtype=np.float32)
        if x.ndim < 2 or len(x) == 0:
            raise ValueError(f"x must be a non-empty batch [N, ...], got shape {x.shape}")
        sums_fn = self._compiled_sums(tuple(x.shape[1:]))
        votes, soft = [], []
        for start in range(0, len(x), batch_size):
            batch = tf.constant(x[start : start + batch_size])
            batch_votes, batch_soft = 0.0, 0.0
            for first in range(0, self.num_samples, self.chunk_size):
                draws = min(self.chunk_size, self.num_samples - first)
                v, s = sums_fn(batch, tf.constant(temperature), tf.constant(draws))
                batch_votes += v.numpy().astype(np.float64)
                batch_soft += s.numpy().astype(np.float64)
            votes.append(batch_votes / self.num_samples)
            soft.append(batch_soft / self.num_samples)
        return SmoothedOutputs(
            np.concatenate(votes).astype(np.float32), np.concatenate(soft).astype(np.float32)
        )

    def soft_targets(
        self,
        x: np.ndarray,
        temperature: float = 1.0,
        batch_size: int | None = None,
        aggregation: str | None = None,
    ) -> np.ndarray:
        """The smoothed teacher's probabilities p_t, to cache as distillation soft targets.

        Args:
            x: inputs [N, ...].
            temperature: T of the soft aggregation (ignored by prediction smoothing).
            batch_size: inputs per forward pass; defaults to the constructor's.
            aggregation: "prediction" or "soft_prediction"; defaults to the constructor's.

        Returns:
            float32 probabilities [N, num_classes] whose rows sum to 1.
        """
        aggregation = _check_aggregation(aggregation or self.aggregation)
        outputs = self.aggregate(x, temperature=temperature, batch_size=batch_size)
        return outputs.prediction if aggregation == PREDICTION else outputs.soft_prediction

    def predict(
        self, x: np.ndarray, batch_size: int | None = None, aggregation: str | None = None
    ) -> np.ndarray:
        """Smoothed labels: argmax of the aggregated probabilities at T = 1 (ties: lowest).

        Returns:
            int64 labels [N].
        """
        probabilities = self.soft_targets(x, 1.0, batch_size=batch_size, aggregation=aggregation)
        return np.argmax(probabilities, axis=-1).astype(np.int64)

    def accuracy(
        self, x: np.ndarray, y: np.ndarray, batch_size: int | None = None
    ) -> dict[str, float]:
        """Accuracy of both aggregations, from the same M passes (ties: lowest class).

        Args:
            x: inputs [N, ...].
            y: integer labels [N].
            batch_size: inputs per forward pass; defaults to the constructor's.

        Returns:
            {"prediction": accuracy, "soft_prediction": accuracy}, fractions in [0, 1].

        Raises:
            ValueError: if `y` is not [N] for the N inputs of `x`.
        """
        y = np.asarray(y).reshape(-1)
        if len(y) != len(x):
            raise ValueError(f"y must hold one label per input: {len(y)} labels, {len(x)} inputs")
        outputs = self.aggregate(x, batch_size=batch_size)
        return {
            name: float(np.mean(np.argmax(getattr(outputs, name), axis=-1) == y))
            for name in AGGREGATIONS
        }

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        """Differentiable smoothed log-probabilities log(mean_m softmax(z_m)), usable as logits.

        Soft prediction smoothing over `num_samples` passes; gradients flow to `x` and to the
        model's variables, so attacks expecting a logits model (e.g. PGD) can target the
        smoothed classifier (keep M small there: under a gradient tape, memory grows with M).

        Args:
            x: a float32 batch [B, ...].

        Returns:
            A float32 tensor [B, num_classes]; its softmax is the mean softmax of the passes.
        """
        x = tf.convert_to_tensor(x, tf.float32)
        total = tf.nn.softmax(self._logits(x), axis=-1)
        for _ in tf.range(self.num_samples - 1):
            total += tf.nn.softmax(self._logits(x), axis=-1)
        return tf.math.log(total / float(self.num_samples))
