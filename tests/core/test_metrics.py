"""Tests of keras_takd.core.metrics against hand-computed values on tiny linear models.

The sensitivities are float64 by design, so what they assert holds on every CPU: run this file
with TF_ENABLE_ONEDNN_OPTS=0 and =1 (float32 would give 0 with oneDNN and rounding noise of
about 1e-7 without it for a saturated softmax).
"""

import types

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_takd.core import metrics
from keras_takd.takd import schema


def _linear_model(kernel: np.ndarray, bias: np.ndarray, image_shape) -> keras.Model:
    """images -> flatten -> kernel . x + bias (logits)."""
    inputs = keras.Input(shape=image_shape)
    dense = keras.layers.Dense(kernel.shape[1])
    logits = dense(keras.layers.Flatten()(inputs))
    dense.set_weights([kernel.astype("float32"), bias.astype("float32")])
    return keras.Model(inputs, logits)


@pytest.fixture(scope="module")
def linear():
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(12, 3))
    bias = np.array([0.1, -0.2, 0.05])
    x = rng.uniform(size=(5, 2, 2, 3)).astype("float32")
    return _linear_model(kernel, bias, (2, 2, 3)), kernel, bias, x


@pytest.fixture(scope="module")
def confidence_case():
    """Logits equal to x times diag(ln 8, ln 2, ln 8): probabilities 0.8 or 0.5 at the top."""
    kernel = np.diag([np.log(8.0), np.log(2.0), np.log(8.0)])
    model = _linear_model(kernel, np.zeros(3), (1, 1, 3))
    x = np.eye(3, dtype="float32")[[0, 1, 2, 2]].reshape(4, 1, 1, 3)
    y = np.array([0, 1, 0, 2])  # the third image is misclassified (predicted 2)
    return model, x, y


@pytest.mark.parametrize("batch_size", [2, 5, 64])
def test_logits_sensitivity_of_linear_model_is_mean_abs_weight_sum(linear, batch_size):
    model, kernel, _, x = linear
    values, summary = metrics.sensitivity(model, x, batch_size=batch_size, of="logits")
    expected = np.mean(np.abs(kernel.sum(axis=1)))  # d sum_i z_i / dx_j = sum_i W_ji
    np.testing.assert_allclose(values, np.full(len(x), expected), rtol=1e-5)
    assert summary["mean"] == pytest.approx(expected, rel=1e-5)
    assert summary["zero_fraction"] == 0.0


def test_single_logit_sensitivity_is_mean_abs_weight():
    kernel = np.array([[0.5], [-2.0], [1.5], [0.0]])
    model = _linear_model(kernel, np.zeros(1), (2, 2, 1))
    values, _ = metrics.sensitivity(model, np.zeros((3, 2, 2, 1), "float32"), batch_size=2)
    np.testing.assert_allclose(values, 1.0, rtol=1e-6)  # (0.5 + 2 + 1.5 + 0) / 4


def test_softmax_sensitivity_matches_hand_computed_jacobian(linear):
    model, kernel, bias, x = linear
    values, _ = metrics.sensitivity(model, x, batch_size=3, of="softmax")
    logits = x.reshape(len(x), -1) @ kernel + bias
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    c = logits.argmax(axis=1)
    # d p_c / dx = p_c (W[:, c] - sum_l p_l W[:, l])
    grads = p[np.arange(len(x)), c, None] * (kernel[:, c].T - p @ kernel.T)
    np.testing.assert_allclose(values, np.abs(grads).mean(axis=1), rtol=1e-4)


def test_saturated_softmax_has_zero_gradients_but_logits_do_not(linear):
    _, kernel, bias, x = linear
    model = _linear_model(kernel * 1e4, bias, (2, 2, 3))
    _, softmax = metrics.sensitivity(model, x, of="softmax")
    _, logits = metrics.sensitivity(model, x, of="logits")
    assert softmax["zero_fraction"] == 1.0
    assert logits["zero_fraction"] == 0.0


SCALE = 40.0  # logits scaled like a network distilled at T = 40 and deployed at T = 1


@pytest.fixture(scope="module")
def distilled():
    """A linear 3-class model on 2x2x3 images with logits scaled by 40, 300 random images,
    and its exact float64 softmax sensitivities (1e-3 down to 1e-60 and less)."""
    rng = np.random.default_rng(1)
    kernel = rng.normal(size=(12, 3))
    model = _linear_model(SCALE * kernel, SCALE * (-0.5 * kernel.sum(axis=0)), (2, 2, 3))
    x = rng.uniform(size=(300, 2, 2, 3)).astype("float32")
    return model, x, _exact_softmax_sensitivity(model, x)


def _exact_softmax_sensitivity(model, x):
    """mean |d F_c / dx| of a linear logits model, in float64, without cancellation.

    d F_c / dx = F_c^2 sum_{j != c} exp(z_j - z_c) (W_c - W_j), F_c = 1 / (1 + sum_j exp(...)).
    """
    w, b = (v.astype(np.float64) for v in model.get_weights())
    z = x.reshape(len(x), -1).astype(np.float64) @ w + b
    c = z.argmax(axis=1)
    e = np.exp(z - z[np.arange(len(z)), c, None])
    e[np.arange(len(z)), c] = 0.0
    f_c = 1.0 / (1.0 + e.sum(axis=1))
    grads = f_c[:, None] ** 2 * (e.sum(axis=1)[:, None] * w[:, c].T - e @ w.T)
    return np.abs(grads).mean(axis=1)


def test_softmax_sensitivity_of_a_saturated_model_is_its_true_size(distilled):
    model, x, exact = distilled
    assert exact.max() > 1e-4 and exact.min() < 1e-30  # from unsaturated to deeply saturated
    values, summary = metrics.sensitivity(model, x, batch_size=64, of="softmax")
    np.testing.assert_allclose(values, exact, rtol=1e-6)
    assert values.min() > 0.0  # float32 would give exact zeros on oneDNN CPUs
    # Rounding noise cannot carry an image across the threshold: the count is the true one.
    far = np.abs(np.log10(exact / metrics.NEAR_ZERO_GRADIENT)) > 1
    assert summary["zero_fraction"] == pytest.approx(np.mean(exact < metrics.NEAR_ZERO_GRADIENT))
    assert np.array_equal((values < metrics.NEAR_ZERO_GRADIENT)[far], (exact < 1e-10)[far])
    assert 0.3 < summary["zero_fraction"] < 1.0


def test_a_saturated_softmax_is_near_zero_and_the_logits_are_not(distilled):
    model, x, exact = distilled
    saturated = x[exact < 1e-3 * metrics.NEAR_ZERO_GRADIENT]
    assert len(saturated) > 50
    _, softmax = metrics.sensitivity(model, saturated, of="softmax")
    _, logits = metrics.sensitivity(model, saturated, of="logits")
    assert softmax["zero_fraction"] == 1.0
    assert logits["zero_fraction"] == 0.0


def test_model_metrics_takes_the_same_sensitivities_as_sensitivity(distilled):
    model, x, _ = distilled
    y = np.zeros(len(x), np.int64)
    row = metrics.model_metrics(model, x, y, batch_size=128)
    for of in ("logits", "softmax"):
        _, summary = metrics.sensitivity(model, x, batch_size=128, of=of)
        assert row[f"sensitivity_{of}_mean"] == pytest.approx(summary["mean"], rel=1e-12)
        assert row[f"sensitivity_{of}_zero_fraction"] == summary["zero_fraction"]


def test_sensitivity_takes_a_callable_in_its_input_precision_and_refuses_float32(linear):
    _, kernel, _, x = linear

    def float64_logits(images):
        return tf.reshape(images, (-1, 12)) @ tf.constant(kernel, tf.float64)

    def float32_logits(images):
        return tf.cast(tf.reshape(images, (-1, 12)), tf.float32) @ kernel.astype("float32")

    values, _ = metrics.sensitivity(float64_logits, x, of="logits")
    np.testing.assert_allclose(values, np.mean(np.abs(kernel.sum(axis=1))), rtol=1e-12)
    with pytest.raises(ValueError, match="returned float32 outputs for float64 images"):
        metrics.sensitivity(float32_logits, x)


def test_sensitivity_rejects_unknown_target(linear):
    model, _, _, x = linear
    with pytest.raises(ValueError, match="'probabilities'"):
        metrics.sensitivity(model, x, of="probabilities")


@pytest.mark.parametrize("function", [metrics.accuracy, metrics.confidence])
def test_metrics_reject_empty_or_mismatched_data(confidence_case, function):
    model, x, y = confidence_case
    with pytest.raises(ValueError, match="non-empty"):
        function(model, x[:0], y[:0])
    with pytest.raises(ValueError, match="same length"):
        function(model, x, y[:2])


def test_confidence_accuracy_and_mask_on_fixed_batch(confidence_case):
    model, x, y = confidence_case
    assert metrics.confidence(model, x, y, batch_size=3) == pytest.approx((0.8 + 0.5 + 0.8) / 4)
    assert metrics.accuracy(model, x, y, batch_size=3) == pytest.approx(0.75)
    np.testing.assert_array_equal(metrics.correctly_classified(model, x, y), [1, 1, 0, 1])
    one_hot = np.eye(3)[y]
    assert metrics.confidence(model, x, one_hot) == pytest.approx(0.525)


def test_model_metrics_returns_the_attack_free_columns(confidence_case):
    model, x, y = confidence_case
    row = metrics.model_metrics(model, x, y, batch_size=4)
    assert set(row) == {
        "test_accuracy",
        "sensitivity_logits_mean",
        "sensitivity_logits_zero_fraction",
        "sensitivity_softmax_mean",
        "sensitivity_softmax_zero_fraction",
        "confidence",
    }
    assert set(row) <= set(schema.METRIC_COLUMNS)


def _result(**fields):
    return types.SimpleNamespace(**{k: np.asarray(v) for k, v in fields.items()})


@pytest.fixture
def attack_result():
    # Image 4 is misclassified before the attack: "success" with zero perturbation.
    result = _result(
        success=[True, True, False, True, True],
        l0=[3, 10, 0, 7, 0],
        l2=[0.5, 1.5, 0.0, 2.0, 0.0],
        linf=[0.05, 0.2, 0.0, 0.1, 0.0],
    )
    return result, np.array([True, True, True, True, False])


def test_robustness_summary_excludes_misclassified_images(attack_result):
    result, correct = attack_result
    summary = metrics.robustness_summary(result, "l2", correct=correct)
    assert summary == pytest.approx(
        {
            "l2_mean": 4.0 / 3.0,
            "l2_max": 2.0,
            "l2_success_rate": 0.75,
            "l2_attacked": 4,
            "l2_excluded": 1,
        }
    )
    l0 = metrics.robustness_summary(result, "l0", correct=correct)
    assert (l0["l0_mean"], l0["l0_max"]) == pytest.approx((20.0 / 3.0, 10.0))


def test_robustness_summary_of_a_result_over_correct_images_only(attack_result):
    result, correct = attack_result
    subset = _result(**{k: getattr(result, k)[correct] for k in ("success", "l0", "l2", "linf")})
    full = metrics.robustness_summary(result, "linf", correct=correct)
    assert metrics.robustness_summary(subset, "linf", correct=correct) == pytest.approx(full)
    masked = metrics.robustness_summary(subset, "l2_softmax_T", correct=correct)
    assert masked["l2_softmax_T_mean"] == pytest.approx(4.0 / 3.0)
    assert set(full) | set(masked) <= set(schema.METRIC_COLUMNS)


def test_robustness_summary_without_success_and_bad_inputs(attack_result):
    result, correct = attack_result
    failed = _result(success=[False] * 3, l0=[0] * 3, l2=[0.0] * 3, linf=[0.0] * 3)
    summary = metrics.robustness_summary(failed, "l2")
    assert np.isnan(summary["l2_mean"]) and np.isnan(summary["l2_max"])
    assert summary["l2_success_rate"] == 0.0 and summary["l2_attacked"] == 3
    with pytest.raises(ValueError, match="correct has 2 entries"):
        metrics.robustness_summary(result, "l2", correct=np.array([True, False]))
    with pytest.raises(ValueError, match="unknown norm"):
        metrics.robustness_summary(result, "fgsm")


@pytest.mark.parametrize(
    "norm, budget, expected",
    [("l2", 1.0, 0.25), ("l2", 2.0, 0.75), ("linf", 0.1, 0.5), ("l2", 0.0, 0.0)],
)
def test_success_at_budget(attack_result, norm, budget, expected):
    result, correct = attack_result
    assert metrics.success_at_budget(result, norm, budget, correct=correct) == expected


def test_budget_summary_names_its_columns(attack_result):
    result, correct = attack_result
    summary = metrics.budget_summary(result, "linf", 0.1, correct=correct)
    assert summary == {"linf_budget": 0.1, "linf_budget_success_rate": 0.5}
    assert set(summary) <= set(schema.METRIC_COLUMNS)


def test_success_at_budget_rejects_negative_budget(attack_result):
    with pytest.raises(ValueError, match="budget"):
        metrics.success_at_budget(attack_result[0], "l2", -1.0)
