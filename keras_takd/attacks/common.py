"""Math and bookkeeping shared by every attack in `keras_takd.attacks`.

The pieces of Carlini & Wagner, "Towards Evaluating the Robustness of Neural Networks"
(arXiv:1608.04644) that all three of their attacks use: the tanh change of variables that keeps
an image inside the box, the margin loss on logits and the distortion metrics. Also the result
type, its verification (`finalize_result`) and the one batching rule of the attacks that run a
compiled function batch by batch (`batch_plan`). The checks every attack makes of its inputs
live in `preparation`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_takd.core.metrics import predict_logits

# A pixel counts as changed (for L0) when any of its channels moved by more than this.
L0_THRESHOLD = 1e-4
# The originals shrink the image by a factor just below 1 before arctanh, so that images on the
# box edge stay finite. l2_attack.py uses arctanh((x - boxplus) / boxmul * 0.999999);
# l0_attack.py and li_attack.py use arctanh(x * 1.999999) on the [-0.5, 0.5] box, whose
# half-range is 0.5, i.e. a factor of 0.9999995. Each attack passes its original's factor.
L2_TANH_SCALE = 0.999999
L0_LINF_TANH_SCALE = 0.9999995
DEFAULT_BATCH_SIZE = 128


@dataclasses.dataclass
class AttackResult:
    """The outcome of an attack on N images.

    Attributes:
        x_adv: float32 [N, H, W, C] adversarial images; the original image where the attack
            failed.
        success: bool [N], verified by classifying `x_adv` with the model: argmax equals the
            target for targeted attacks, differs from the true label for untargeted ones.
        l0: [N] number of pixels changed (any channel moved by more than 1e-4).
        l2: [N] Euclidean norm of `x_adv - x`.
        linf: [N] largest absolute change of any channel of any pixel.
        const: [N] float, the attack's trade-off constant c at the returned image (NaN when
            the attack has none).
        target: [N] int, the target label of a targeted attack, the true label otherwise.
        nonfinite: bool [N], the attack's image or the model's output at it held NaN or
            infinite values (e.g. after a non-finite gradient); such an example is a failure
            and keeps its original image. None when not recorded.
        found: bool [N], the attack's own search met its success test at some iterate (None
            when the attack does not record it). `found & ~success` is a silent success
            (`indicators.silent_success`): an adversarial point was seen but not returned.
        iterations: int [N], the optimiser steps the attack took on each example, over all its
            searches (None when not recorded).
        incomplete: bool [N], the attack's last solve stopped at its iteration limit while its
            loss was still falling by more than the abort-early tolerance: an indicator of
            incomplete optimisation (None when not recorded, e.g. without abort early).
    """

    x_adv: np.ndarray
    success: np.ndarray
    l0: np.ndarray
    l2: np.ndarray
    linf: np.ndarray
    const: np.ndarray
    target: np.ndarray
    nonfinite: np.ndarray | None = None
    found: np.ndarray | None = None
    iterations: np.ndarray | None = None
    incomplete: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.success.shape[0])

    @property
    def success_rate(self) -> float:
        """The fraction of examples attacked successfully (NaN for zero examples)."""
        return float(np.mean(self.success)) if len(self) else float("nan")


def call_model(model: Callable[..., Any], x: tf.Tensor) -> tf.Tensor:
    """Runs `model` on `x` in inference mode and returns float32 logits.

    Args:
        model: a Keras model or layer (called with `training=False`) or any callable mapping
            images to logits.
        x: float32 images [N, H, W, C].

    Returns:
        A float32 tensor [N, num_classes].
    """
    if isinstance(model, keras.layers.Layer):
        outputs = model(x, training=False)
    else:
        outputs = model(x)
    return tf.cast(outputs, tf.float32)


def to_tanh_space(x: tf.Tensor, clip_min: float, clip_max: float, scale: float) -> tf.Tensor:
    """Maps images in [clip_min, clip_max] to the unconstrained C&W variable w.

    x = tanh(w) * (clip_max - clip_min) / 2 + (clip_max + clip_min) / 2, solved for w after
    the centred, half-range-normalised image is multiplied by `scale` < 1, as the originals do
    so that arctanh stays finite at the box edges. The factor differs between the originals
    (`L2_TANH_SCALE`, `L0_LINF_TANH_SCALE`) and sets the tanh slope at edge pixels, so each
    attack passes its own.

    Args:
        x: images inside the box.
        clip_min: the lower edge of the box.
        clip_max: the upper edge of the box.
        scale: the factor in (0, 1) applied before arctanh.

    Returns:
        A float32 tensor of the same shape as `x`.
    """
    half_range = (clip_max - clip_min) / 2.0
    center = (clip_max + clip_min) / 2.0
    x = tf.convert_to_tensor(x, tf.float32)
    return tf.atanh((x - center) / half_range * scale)


def from_tanh_space(w: tf.Tensor, clip_min: float, clip_max: float) -> tf.Tensor:
    """Maps the unconstrained C&W variable w back to images inside [clip_min, clip_max].

    Args:
        w: float32 tensor of any shape.
        clip_min: the lower edge of the box.
        clip_max: the upper edge of the box.

    Returns:
        tanh(w) * (clip_max - clip_min) / 2 + (clip_max + clip_min) / 2, clipped to the box to
        remove float32 round-off.
    """
    half_range = (clip_max - clip_min) / 2.0
    center = (clip_max + clip_min) / 2.0
    # The clip only removes float32 round-off (an ulp) at the edges of boxes like [0.2, 0.7].
    return tf.clip_by_value(tf.tanh(w) * half_range + center, clip_min, clip_max)


def margin_loss(
    logits: tf.Tensor, labels_onehot: tf.Tensor, confidence: float, targeted: bool
) -> tf.Tensor:
    """Carlini & Wagner's objective f_6 on logits Z, per example.

    Targeted (label t): max(max_{i != t} Z_i - Z_t + kappa, 0).
    Untargeted (label y): max(Z_y - max_{i != y} Z_i + kappa, 0).

    Args:
        logits: float32 [N, K].
        labels_onehot: float32 [N, K], one-hot target (targeted) or true (untargeted) labels.
        confidence: the margin kappa >= 0.
        targeted: which of the two forms.

    Returns:
        float32 [N] losses; zero exactly when the margin is met.
    """
    labels_onehot = tf.cast(labels_onehot, logits.dtype)
    label_logit = tf.reduce_sum(labels_onehot * logits, axis=-1)
    # Like the original, push the label's own logit far down before taking the max of the rest.
    other_logit = tf.reduce_max((1.0 - labels_onehot) * logits - labels_onehot * 1e4, axis=-1)
    if targeted:
        return tf.maximum(other_logit - label_logit + confidence, 0.0)
    return tf.maximum(label_logit - other_logit + confidence, 0.0)


def logit_margin(logits: tf.Tensor, labels_onehot: tf.Tensor) -> tf.Tensor:
    """Z_label - max_{i != label} Z_i per example, unclamped (positive: the label wins).

    The difference of logits that the minimal-norm attacks (FMN) and the DLR loss (APGD) are
    built on. Unlike `margin_loss` it keeps its sign and its gradient once the label has lost.

    Args:
        logits: float32 [N, K].
        labels_onehot: [N, K], one-hot labels.

    Returns:
        float32 [N].
    """
    is_label = tf.cast(labels_onehot, tf.bool)
    label_logit = tf.reduce_sum(tf.where(is_label, logits, 0.0), axis=-1)
    other_logit = tf.reduce_max(tf.where(is_label, logits.dtype.min, logits), axis=-1)
    return label_logit - other_logit


def perturbation_norms(
    x_adv: np.ndarray, x: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The L0, L2 and L-infinity distortions of each example.

    Args:
        x_adv: images [N, H, W, C].
        x: the original images [N, H, W, C].

    Returns:
        `(l0, l2, linf)`, each [N]: the number of pixels with any channel changed by more than
        1e-4 (int64), the Euclidean norm and the largest absolute change (float64).
    """
    delta = np.asarray(x_adv, np.float64) - np.asarray(x, np.float64)
    flat = delta.reshape(delta.shape[0], -1)
    l0 = np.any(np.abs(delta) > L0_THRESHOLD, axis=-1).reshape(delta.shape[0], -1).sum(axis=1)
    l2 = np.sqrt(np.sum(flat**2, axis=1))
    linf = np.max(np.abs(flat), axis=1) if flat.shape[1] else np.zeros(len(flat))
    return l0.astype(np.int64), l2, linf


def is_successful(
    logits: np.ndarray, labels: np.ndarray, targeted: bool, confidence: float = 0.0
) -> np.ndarray:
    """Whether each prediction counts as a successful attack (Carlini's `compare`).

    With `confidence` kappa > 0 the label's logit is first moved by kappa against the attacker
    (down for a targeted label, up for the true label), as the original does.

    Args:
        logits: [N, K] model outputs.
        labels: [N] target labels (targeted) or true labels (untargeted).
        targeted: which success rule.
        confidence: the margin kappa.

    Returns:
        bool [N].
    """
    logits = np.array(logits, dtype=np.float64, copy=True)
    rows = np.arange(len(labels))
    logits[rows, labels] += -confidence if targeted else confidence
    predicted = np.argmax(logits, axis=-1)
    return predicted == labels if targeted else predicted != labels


def finalize_result(
    model: Callable[..., Any],
    x: np.ndarray,
    x_adv: np.ndarray,
    y: np.ndarray,
    *,
    targeted: bool,
    target: np.ndarray | None,
    const: np.ndarray | float,
    batch_size: int = DEFAULT_BATCH_SIZE,
    restore_failed: bool = True,
    found: np.ndarray | None = None,
) -> AttackResult:
    """Verifies candidate adversarial images with the model and packs an `AttackResult`.

    Success is always decided here, by classifying `x_adv`: argmax == target when targeted,
    argmax != y otherwise. Failed examples get their original image back. An example whose
    `x_adv` or whose logits at `x_adv` are NaN or infinite is never a success: it is counted in
    `nonfinite` and gets its original image back even with `restore_failed=False`.

    Args:
        model: a Keras model or callable mapping float32 images to logits.
        x: the original images [N, H, W, C].
        x_adv: candidate adversarial images [N, H, W, C].
        y: true labels [N].
        targeted: whether the attack was targeted.
        target: target labels [N] (targeted) or None.
        const: the attack's constant per example ([N] or a scalar).
        batch_size: images per forward pass.
        restore_failed: give failed examples their original image back (the rule for every
            attack here; PGD may keep its perturbed images, e.g. for adversarial training).
        found: bool [N], whether the attack's search met its own success test at some
            iterate (kept in the result for `indicators.silent_success`), or None.

    Returns:
        The `AttackResult`.

    Raises:
        ValueError: if the shapes of `x` and `x_adv` differ or a targeted attack has no target.
    """
    x = np.asarray(x, np.float32)
    x_adv = np.asarray(x_adv, np.float32)
    if x.shape != x_adv.shape:
        raise ValueError(f"x_adv has shape {x_adv.shape}, expected x's shape {x.shape}")
    if targeted and target is None:
        raise ValueError("a targeted result needs target labels")
    labels = np.asarray(target if targeted else y, np.int64)
    nonfinite = ~np.isfinite(x_adv.reshape(len(x_adv), -1)).all(axis=1)
    x_adv = np.where(nonfinite[:, None, None, None], x, x_adv).astype(np.float32)
    logits = predict_logits(model, x_adv, batch_size)
    nonfinite |= ~np.isfinite(logits).all(axis=1)
    success = is_successful(logits, labels, targeted) & ~nonfinite
    keep = success if restore_failed else ~nonfinite
    x_adv = np.where(keep[:, None, None, None], x_adv, x).astype(np.float32)
    l0, l2, linf = perturbation_norms(x_adv, x)
    const = np.broadcast_to(np.asarray(const, np.float64), success.shape).copy()
    return AttackResult(
        x_adv=x_adv,
        success=success,
        l0=l0,
        l2=l2,
        linf=linf,
        const=const,
        target=labels,
        nonfinite=nonfinite,
        found=None if found is None else np.asarray(found, bool).copy(),
    )


def pad_to_batch(array: np.ndarray, batch_size: int) -> tuple[np.ndarray, int]:
    """Pads `array` along axis 0 to exactly `batch_size` rows by repeating its last row.

    Repeating a real row keeps padded images inside the box and padded labels valid, so a
    compiled step with a fixed `input_signature` can run on the last, short batch.

    Args:
        array: [n, ...] with 1 <= n <= batch_size.
        batch_size: the fixed batch size.

    Returns:
        `(padded, n)`: the [batch_size, ...] array and the number of real rows.

    Raises:
        ValueError: if `array` is empty or longer than `batch_size`.
    """
    array = np.asarray(array)
    n_real = array.shape[0]
    if n_real == 0 or n_real > batch_size:
        raise ValueError(f"cannot pad {n_real} rows to a batch of {batch_size}")
    if n_real == batch_size:
        return array, n_real
    padding = np.repeat(array[-1:], batch_size - n_real, axis=0)
    return np.concatenate([array, padding], axis=0), n_real


def batch_slices(n: int, batch_size: int) -> list[slice]:
    """The slices that split `n` examples into consecutive batches of at most `batch_size`.

    Args:
        n: the number of examples.
        batch_size: the largest batch, >= 1.

    Returns:
        A list of `slice` objects covering range(n) in order.
    """
    return [slice(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]


@dataclasses.dataclass(frozen=True)
class BatchPlan:
    """How an attack feeds its images to a compiled function with a fixed batch axis.

    Consecutive batches of `size` images; the last, short one is padded to `size` rows by
    repeating its last row (`pad`), so one trace serves every batch. Build it with
    `batch_plan`.

    Attributes:
        size: the rows of every compiled call.
    """

    size: int

    def slices(self, n: int) -> list[slice]:
        """The consecutive batches of `n` images (`batch_slices`)."""
        return batch_slices(n, self.size)

    def each(self, n: int, verbose: bool = False) -> Iterator[slice]:
        """Yields `slices(n)`, with a `keras.utils.Progbar` over batches when `verbose`."""
        slices = self.slices(n)
        progbar = keras.utils.Progbar(len(slices), unit_name="batch") if verbose else None
        for done, part in enumerate(slices, start=1):
            yield part
            if progbar is not None:
                progbar.update(done)

    def pad(self, *arrays: np.ndarray) -> list[np.ndarray]:
        """Each array of one batch padded to `size` rows (`pad_to_batch`)."""
        return [pad_to_batch(array, self.size)[0] for array in arrays]

    @staticmethod
    def trim(part: slice, *outputs: tf.Tensor) -> list[np.ndarray]:
        """The real rows of a padded batch's outputs, as numpy arrays."""
        return [np.asarray(output)[: part.stop - part.start] for output in outputs]


def batch_plan(n: int, batch_size: int, *, fill_evenly: bool = False) -> BatchPlan:
    """The batching rule of every attack that runs a compiled function batch by batch.

    The images go in the fewest batches of at most `batch_size`, each compiled call at one
    fixed size, never larger than `n` (no padding beyond the data). By default that size is
    `min(batch_size, n)` and only the last batch is padded: the rule of C&W L2, FMN and PGD.
    `fill_evenly` shrinks the size to `ceil(n / batches)`, so that the batches are filled
    evenly and padding the last one wastes less than a batch's worth of rows: APGD's rule,
    because `autoattack_lite` runs it on ever fewer survivors (130 images at batch_size 128:
    130 rows instead of 256). The two cannot merge without changing results: CPU kernels
    round differently for different batch sizes, and the size is part of each compiled
    signature. C&W L0 and L-inf do not batch this way at all: their images enter and leave a
    pool of slots one by one (`carlini_wagner.search.run_slot_pool`).

    Args:
        n: the number of images, >= 1.
        batch_size: the largest batch, >= 1.
        fill_evenly: APGD's even filling.

    Returns:
        The `BatchPlan`.
    """
    size = min(batch_size, n)
    if fill_evenly:
        size = -(-n // -(-n // batch_size))
    return BatchPlan(size=int(size))
