"""Metrics of defensive distillation: accuracy, sensitivity, confidence and robustness.

Implements the evaluation of Mandal & Guo, "Improving Defensive Distillation using Teacher
Assistant" (sections III-B, III-C and V: Figs. 3-8), plus the two checks a reader needs to judge
that robustness: Papernot et al.'s adversarial success rate at a fixed budget
(arXiv:1511.04508) and the gradient-masking comparison of Carlini & Wagner (arXiv:1608.04644),
who showed that distillation's apparent robustness vanishes when the attack uses the logits.

Every model here maps float32 images in [0, 1] to LOGITS; the metrics evaluate it at T = 1.
Attack results are duck-typed: any object with numpy fields `success`, `l0`, `l2` and `linf`
(the `AttackResult` of `keras_takd.attacks`) will do.

TensorFlow is imported inside the functions that need it, so that the plotting code and the
plot CLI can read the column contract without loading TensorFlow.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

# The norms an attack result carries, in changed pixels (L0), Euclidean and max distance.
NORMS: tuple[str, ...] = ("l0", "l2", "linf")
NEAR_ZERO_GRADIENT = 1e-10
# How `model_metrics` computes the sensitivities. The evaluation records it with each cached
# metrics unit, so values computed by an earlier rule (float32) are recomputed, not reused.
SENSITIVITY_SETTINGS = {"precision": "float64", "zero_threshold": NEAR_ZERO_GRADIENT}


def _tf():
    """Imports TensorFlow on first use (see the module docstring)."""
    import tensorflow as tf

    return tf


def _labels(y: np.ndarray) -> np.ndarray:
    y = np.asarray(y)
    return y.argmax(axis=-1) if y.ndim == 2 else y.astype(np.int64)


def _check_data(x: np.ndarray, y: np.ndarray | None, batch_size: int) -> None:
    if np.ndim(x) < 2 or len(x) == 0:
        raise ValueError(f"x must be a non-empty batch of images [N, ...], got shape {np.shape(x)}")
    if y is not None and len(y) != len(x):
        raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")


def predict_logits(model, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Runs `model` over `x` in batches: the one batched forward pass of metrics and attacks.

    Args:
        model: a Keras model or layer (called with training=False), or any callable mapping
            float32 images to logits (called as it is).
        x: images [N, H, W, C].
        batch_size: images per forward pass.

    Returns:
        The logits as a float32 array [N, num_classes].

    Raises:
        ValueError: if `x` holds no images or `batch_size` < 1.
    """
    _check_data(x, None, batch_size)
    import keras

    tf = _tf()
    outputs = []
    for start in range(0, len(x), batch_size):
        batch = tf.constant(np.asarray(x[start : start + batch_size], np.float32))
        if isinstance(model, keras.layers.Layer):
            out = model(batch, training=False)
        else:
            out = model(batch)
        outputs.append(np.asarray(tf.cast(out, tf.float32)))
    return np.concatenate(outputs, axis=0)


def correctly_classified(model, x: np.ndarray, y: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Returns the boolean mask [N] of images the model classifies correctly at T = 1.

    Args:
        model: a Keras logits model.
        x: images [N, H, W, C] in [0, 1].
        y: labels [N] (or one-hot [N, num_classes]).
        batch_size: images per forward pass.
    """
    _check_data(x, y, batch_size)
    return predict_logits(model, x, batch_size).argmax(axis=-1) == _labels(y)


def accuracy(model, x: np.ndarray, y: np.ndarray, batch_size: int = 256) -> float:
    """Test accuracy at T = 1 (paper V-A, Fig. 3): the fraction of `x` classified as `y`.

    The temperature never changes the argmax, so this is the accuracy of the logits.
    """
    return float(np.mean(correctly_classified(model, x, y, batch_size)))


def confidence(model, x: np.ndarray, y: np.ndarray, batch_size: int = 256) -> float:
    """Confidence of paper eq. 14 (V-D, Fig. 6), as in Papernot et al. 2016.

    C(X) = max_i F_i(X) when argmax_i F_i(X) = t(X), else 0, with F the T = 1 softmax; the
    result is its mean over `x`. (Eq. 14 as printed reads arg max in the second case; the
    probability max_i F_i(X) is what Papernot et al. define and what lies in [0, 1].)

    Args:
        model: a Keras logits model.
        x: images [N, H, W, C] in [0, 1].
        y: labels [N] (or one-hot).
        batch_size: images per forward pass.

    Returns:
        The mean confidence, in [0, 1].
    """
    _check_data(x, y, batch_size)
    logits = predict_logits(model, x, batch_size).astype(np.float64)
    logits -= logits.max(axis=-1, keepdims=True)
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
    correct = probabilities.argmax(axis=-1) == _labels(y)
    return float(np.mean(np.where(correct, probabilities.max(axis=-1), 0.0)))


def _sum_of_logits(logits):
    return _tf().reduce_sum(logits, axis=-1)


def _predicted_probability(logits):
    """F_c = 1 / (1 + s), s = sum_{j != c} exp(z_j - z_c), c = argmax_j z_j (held fixed).

    The same value as the softmax's, but its gradient comes through the exp(z_j - z_c) terms
    alone: a saturated softmax rounds F_c to 1 (and the softmax's own gradient then loses the
    1 - F_c part), while s keeps each of those terms down to float64's 1e-308.
    """
    tf = _tf()
    predicted = tf.stop_gradient(tf.argmax(logits, axis=-1))
    top = tf.gather(logits, predicted, axis=1, batch_dims=1)
    others = tf.one_hot(predicted, tf.shape(logits)[-1], on_value=False, off_value=True)
    terms = tf.where(others, tf.exp(logits - top[:, None]), tf.zeros_like(logits))
    return 1.0 / (1.0 + tf.reduce_sum(terms, axis=-1))


_SCALARS = {"logits": _sum_of_logits, "softmax": _predicted_probability}


def _gradient_fn(model64, ofs: tuple[str, ...], batch_shape: tuple[int, ...]):
    """A compiled function: float64 images -> {of: per-image mean |d scalar / d image|}.

    One forward pass of the float64 model serves every scalar in `ofs`.
    """
    from keras_takd.core.precision import call_in_float64

    tf = _tf()
    input_axes = list(range(1, len(batch_shape)))

    @tf.function(input_signature=[tf.TensorSpec(batch_shape, tf.float64)], autograph=False)
    def mean_abs_gradients(images):
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(images)
            logits = call_in_float64(model64, images)
            # Images are independent in inference mode, so the gradient of the batch sum
            # holds each image's own gradient.
            totals = {of: tf.reduce_sum(_SCALARS[of](logits)) for of in ofs}
        return {
            of: tf.reduce_mean(tf.abs(tape.gradient(total, images)), axis=input_axes)
            for of, total in totals.items()
        }

    return mean_abs_gradients


def _mean_abs_gradients(
    model, x: np.ndarray, batch_size: int, ofs: tuple[str, ...]
) -> dict[str, np.ndarray]:
    """{of: float64 [N] sensitivities} of `model` on `x`, computed in float64 (`sensitivity`)."""
    unknown = [of for of in ofs if of not in _SCALARS]
    if unknown:
        raise ValueError(f"of must be 'logits' or 'softmax', got {unknown[0]!r}")
    _check_data(x, None, batch_size)
    from keras_takd.core.precision import float64_copy

    batch_size = min(int(batch_size), len(x))
    gradient_fn = _gradient_fn(float64_copy(model), ofs, (batch_size, *np.shape(x)[1:]))
    values = {of: [] for of in ofs}
    for start in range(0, len(x), batch_size):
        batch = np.asarray(x[start : start + batch_size], np.float64)
        count = len(batch)
        if count < batch_size:  # pad to the compiled shape instead of retracing
            batch = np.concatenate([batch, np.zeros((batch_size - count, *batch.shape[1:]))])
        for of, value in gradient_fn(batch).items():
            values[of].append(value.numpy()[:count])
    return {of: np.concatenate(parts) for of, parts in values.items()}


def _sensitivity_summary(values: np.ndarray, zero_threshold: float) -> dict[str, float]:
    return {
        "mean": float(values.mean()),
        "zero_fraction": float(np.mean(values < zero_threshold)),
    }


def sensitivity(
    model,
    x: np.ndarray,
    batch_size: int = 256,
    of: str = "logits",
    zero_threshold: float = NEAR_ZERO_GRADIENT,
) -> tuple[np.ndarray, dict[str, float]]:
    """Per-image sensitivity: the mean absolute input gradient (paper III-B, V-B, Fig. 4).

    For each image X the gradient dS(X)/dX of a scalar S is taken and |.| is averaged over all
    input dimensions (pixels x channels):
      - of="logits": S = sum_i z_i(X), the sum of the logits (what the authors' code did);
      - of="softmax": S = F_c(X), the T = 1 softmax probability of the predicted class
        c = argmax_i z_i(X) (held fixed while differentiating): Papernot et al.'s adversarial
        gradient of the output the attacker must lower. The softmax probabilities sum to 1, so
        their sum has no gradient.

    Precision: both are computed in float64, by the model's float64 copy
    (`keras_takd.core.precision.float64_copy`) on the images cast to float64, with F_c written
    as 1 / (1 + sum_{j != c} exp(z_j - z_c)). This departs on purpose from evaluating the
    float32 model: a saturated softmax's gradient is about exp(-margin), and in float32 it
    comes out as exactly 0 on one CPU and as rounding noise (about 1e-7) on another (oneDNN on
    AVX-512 CPUs, Eigen elsewhere), so the share of near-zero gradients would depend on the
    machine. In float64 it is its true size (down to 1e-308) on every CPU, and a value below
    `zero_threshold` means the gradient is that small, not that float32 lost it. The logits'
    sensitivity differs from float32's by rounding only.

    Args:
        model: a Keras logits model (float32 images in [0, 1] -> logits), or a callable that
            computes in the precision of its input.
        x: images [N, H, W, C].
        batch_size: images per gradient computation (the last batch is padded).
        of: "logits" or "softmax", the scalar differentiated (see above).
        zero_threshold: images whose value is below it count as near-zero (paper: 1e-10).

    Returns:
        (values, summary): values is a float64 array [N] of per-image sensitivities; summary is
        {"mean": mean of values, "zero_fraction": fraction of values < zero_threshold}.

    Raises:
        ValueError: for an unknown `of`, a bad `batch_size`, an empty `x`, or a callable that
            does not return float64 outputs for float64 images.
    """
    values = _mean_abs_gradients(model, x, batch_size, (of,))[of]
    return values, _sensitivity_summary(values, zero_threshold)


def _norm_of(prefix: str, norm: str | None) -> str:
    norm = norm or prefix.split("_")[0]
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r} (from prefix {prefix!r}): expected one of {NORMS}")
    return norm


def _attacked_mask(result: Any, correct: np.ndarray | None) -> tuple[np.ndarray, int]:
    """Which entries of `result` count as attacked, and how many images were excluded."""
    success = np.asarray(result.success, bool)
    if correct is None:
        return np.ones(len(success), bool), 0
    correct = np.asarray(correct, bool)
    excluded = int(np.sum(~correct))
    if len(correct) == len(success):  # the result covers every evaluated image
        return correct, excluded
    if int(correct.sum()) == len(success):  # the result covers only the correct ones
        return np.ones(len(success), bool), excluded
    raise ValueError(
        f"correct has {len(correct)} entries ({int(correct.sum())} True) but the attack result "
        f"has {len(success)}: expected a result over all images or over the correct ones"
    )


def robustness_summary(
    result: Any,
    prefix: str,
    correct: np.ndarray | None = None,
    norm: str | None = None,
) -> dict[str, float]:
    """Robustness of paper III-C / Fig. 5 from one attack's result.

    Args:
        result: an attack result with numpy fields `success` [n] (bool) and `l0`, `l2`, `linf`
            [n] (the perturbation of each image; L0 in changed pixels).
        prefix: the column prefix, e.g. "l0", "l2", "linf" or "l2_softmax_T".
        correct: the mask from `correctly_classified` over the evaluated images. The result may
            cover all of them (misclassified ones are then ignored) or only the correct ones, in
            order. None means every image in `result` was correctly classified.
        norm: which field is the perturbation ("l0", "l2" or "linf"); by default the first word
            of `prefix`.

    Returns:
        {prefix_mean, prefix_max} of the perturbation over successfully attacked images (NaN if
        none succeeded), prefix_success_rate = successes / attacked images (NaN if none were
        attacked), and the counts prefix_attacked and prefix_excluded.

    Raises:
        ValueError: for an unknown norm, or a `correct` mask that does not fit `result`.
    """
    norm = _norm_of(prefix, norm)
    attacked, excluded = _attacked_mask(result, correct)
    success = np.asarray(result.success, bool) & attacked
    distances = np.asarray(getattr(result, norm), np.float64)[success]
    num_attacked = int(attacked.sum())
    return {
        f"{prefix}_mean": float(distances.mean()) if distances.size else float("nan"),
        f"{prefix}_max": float(distances.max()) if distances.size else float("nan"),
        f"{prefix}_success_rate": float(success.sum() / num_attacked)
        if num_attacked
        else float("nan"),
        f"{prefix}_attacked": num_attacked,
        f"{prefix}_excluded": excluded,
    }


def success_at_budget(
    result: Any, norm: str, budget: float, correct: np.ndarray | None = None
) -> float:
    """Adversarial success rate at a fixed budget, Papernot et al.'s headline measure.

    The fraction of attacked (correctly classified) images for which the attack succeeded with
    a perturbation of at most `budget` in `norm` (e.g. L2 <= 1.0, L-inf <= 0.1 on MNIST). As the
    C&W attacks look for the minimal perturbation, this is the success rate of an attacker
    limited to that budget.

    Args:
        result: an attack result (see `robustness_summary`).
        norm: "l0", "l2" or "linf".
        budget: the largest perturbation allowed, >= 0.
        correct: as in `robustness_summary`.

    Returns:
        The success rate in [0, 1] (NaN if no image was attacked).

    Raises:
        ValueError: for an unknown norm or a negative budget.
    """
    norm = _norm_of(norm, norm)
    if not budget >= 0:
        raise ValueError(f"budget must be a number >= 0, got {budget!r}")
    attacked, _ = _attacked_mask(result, correct)
    within = np.asarray(result.success, bool) & (np.asarray(getattr(result, norm)) <= budget)
    return float(np.sum(within & attacked) / attacked.sum()) if attacked.any() else float("nan")


def budget_summary(
    result: Any, norm: str, budget: float, correct: np.ndarray | None = None
) -> dict[str, float]:
    """The columns {norm}_budget and {norm}_budget_success_rate (see `success_at_budget`)."""
    rate = success_at_budget(result, norm, budget, correct)
    return {f"{norm}_budget": float(budget), f"{norm}_budget_success_rate": rate}


def model_metrics(
    model, x: np.ndarray, y: np.ndarray, batch_size: int = 256
) -> Mapping[str, float]:
    """The attack-free metric columns of one model: accuracy, both sensitivities, confidence.

    Both sensitivities come from one float64 pass (see `sensitivity`, `SENSITIVITY_SETTINGS`).

    Returns:
        A dict with the columns test_accuracy, sensitivity_{logits,softmax}_{mean,zero_fraction}
        and confidence (see `keras_takd.takd.schema.METRIC_COLUMNS`).
    """
    row = {"test_accuracy": accuracy(model, x, y, batch_size)}
    for of, values in _mean_abs_gradients(model, x, batch_size, ("logits", "softmax")).items():
        summary = _sensitivity_summary(values, NEAR_ZERO_GRADIENT)
        row[f"sensitivity_{of}_mean"] = summary["mean"]
        row[f"sensitivity_{of}_zero_fraction"] = summary["zero_fraction"]
    row["confidence"] = confidence(model, x, y, batch_size)
    return row
