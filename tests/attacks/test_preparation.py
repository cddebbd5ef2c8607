"""Tests of the one input preparation of every attack (keras_takd.attacks.preparation)."""

import keras
import numpy as np
import pytest

from keras_takd.attacks.preparation import prepare_inputs


@pytest.fixture
def toy(linear_two_class_model):
    rng = np.random.default_rng(0)
    model = linear_two_class_model(rng.normal(size=(4, 4, 1)), 0.0)
    x = rng.uniform(0.2, 0.8, size=(6, 4, 4, 1)).astype(np.float32)
    y = np.argmax(model(x).numpy(), axis=1)
    return model, x, y


def test_prepare_accepts_good_inputs(toy):
    model, x, y = toy
    inputs = prepare_inputs(model, x.astype(np.float64), list(y))
    assert inputs.x.dtype == np.float32 and inputs.y.dtype == np.int64
    assert inputs.target is None and not inputs.targeted
    np.testing.assert_array_equal(inputs.labels, y)
    targeted = prepare_inputs(model, x, y, targeted=True, target=1 - y)
    np.testing.assert_array_equal(targeted.target, 1 - y)
    np.testing.assert_array_equal(targeted.labels, 1 - y)


def test_prepare_keeps_the_clean_logits_and_one_hot_labels(toy):
    model, x, y = toy
    inputs = prepare_inputs(model, x, y, targeted=True, target=1 - y, batch_size=4)
    np.testing.assert_array_equal(inputs.logits, model(x).numpy())
    assert inputs.num_classes == 2
    np.testing.assert_array_equal(inputs.onehot, np.eye(2, dtype=np.float32)[1 - y])
    assert inputs.onehot.dtype == np.float32
    assert inputs.batches().size == 4


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(x=np.zeros((4, 4, 1), np.float32)), "shape \\[N, H, W, C\\]"),
        (dict(y=np.zeros((6, 2))), "y must be integer labels of shape \\[6\\]"),
        (dict(y=np.zeros(5)), "shape \\[6\\]"),
        (dict(clip_min=1.0, clip_max=0.0), "clip_min must be < clip_max"),
        (dict(x_scale=2.0), "inside \\[clip_min, clip_max\\]"),
        (dict(x_nan=True), "NaN or infinite"),
        (dict(targeted=True), "needs target labels"),
        (dict(targeted=True, target="same"), "target equals the true label"),
        (dict(target="other"), "targeted=False"),
        (dict(y=np.full(6, 7)), "y must be in \\[0, 1\\]"),
        (dict(batch_size=0), "batch_size must be an integer >= 1"),
    ],
)
def test_prepare_rejects_bad_inputs(toy, change, message):
    model, x, y = toy
    kwargs = dict(x=x, y=y)
    if change.pop("x_scale", None):
        kwargs["x"] = x * 2.0
    if change.pop("x_nan", None):
        kwargs["x"] = np.where(x > 0.5, np.nan, x).astype(np.float32)
    if change.get("target") == "same":
        change["target"] = y
    elif change.get("target") == "other":
        change["target"] = 1 - y
    kwargs.update(change)
    with pytest.raises(ValueError, match=message):
        prepare_inputs(model, kwargs.pop("x"), kwargs.pop("y"), **kwargs)


def test_prepare_refuses_probability_outputs_unless_allowed(toy):
    model, x, y = toy
    probabilities = keras.Sequential([model, keras.layers.Softmax()])
    with pytest.raises(ValueError, match="look like probabilities"):
        prepare_inputs(probabilities, x, y)
    prepare_inputs(probabilities, x, y, allow_probabilities=True)


@pytest.mark.parametrize("radius", [float("inf"), float("-inf"), float("nan"), -0.1])
@pytest.mark.parametrize(
    "attack, options",
    [
        ("projected_gradient_descent", dict(step_size=0.01, steps=2)),
        ("apgd", dict(steps=2)),
        ("fast_gradient_sign", {}),
        ("autoattack_lite", dict(steps=2)),
    ],
)
def test_a_radius_that_is_not_a_finite_positive_number_is_refused(toy, attack, options, radius):
    import keras_takd.attacks

    model, x, y = toy
    with pytest.raises(ValueError, match=r"^eps must be > 0 and finite, got (-?inf|nan|-0\.1)$"):
        getattr(keras_takd.attacks, attack)(model, x, y, eps=radius, **options)


@pytest.mark.parametrize("step_size", [float("inf"), float("nan")])
def test_a_non_finite_step_size_is_refused(toy, step_size):
    from keras_takd.attacks import projected_gradient_descent

    model, x, y = toy
    with pytest.raises(ValueError, match="^step_size must be > 0 and finite, got"):
        projected_gradient_descent(model, x, y, eps=0.1, step_size=step_size, steps=2)
