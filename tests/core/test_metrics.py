"""Tests of keras_takd.core.metrics against hand-computed values on tiny linear models."""

import types

import keras
import numpy as np
import pytest

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
