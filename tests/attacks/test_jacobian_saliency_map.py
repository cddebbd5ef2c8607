"""Tests for keras_takd.attacks.jacobian_saliency_map (JSMA) on a small fixed network."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_takd.attacks import all_targets, jacobian_saliency_map

SHAPE = (8, 8, 1)
FEATURES = 64
NUM_CLASSES = 4


@pytest.fixture(scope="module")
def small_model() -> keras.Model:
    """A fixed random 64 -> 16 -> 4 ReLU network on 8 x 8 images (no training)."""
    rng = np.random.default_rng(7)
    inputs = keras.Input(shape=SHAPE)
    hidden = keras.layers.Dense(16, activation="relu")
    output = keras.layers.Dense(NUM_CLASSES)
    logits = output(hidden(keras.layers.Flatten()(inputs)))
    model = keras.Model(inputs, logits, name="jsma_test_net")
    hidden.set_weights([rng.normal(0, 0.5, (FEATURES, 16)), rng.normal(0, 0.1, 16)])
    output.set_weights([rng.normal(0, 0.5, (16, NUM_CLASSES)), np.zeros(NUM_CLASSES)])
    return model


@pytest.fixture(scope="module")
def images(small_model) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """8 images in [0, 0.6] with a few pixels at 0 and at 1, their labels and targets."""
    rng = np.random.default_rng(3)
    x = rng.uniform(0.0, 0.6, (8, *SHAPE)).astype(np.float32)
    x[:, 0, :3] = 1.0
    x[:, 1, :3] = 0.0
    y = np.argmax(small_model.predict(x, verbose=0), axis=1)
    return x, y, (y + 1 + np.arange(8) % (NUM_CLASSES - 1)) % NUM_CLASSES


def _steps_taken(x: np.ndarray, x_adv: np.ndarray, theta: float) -> np.ndarray:
    """How many changes of size theta each feature went through to move from x to x_adv."""
    moved = np.abs(x_adv.astype(np.float64) - x) / abs(theta)
    at_bound = (x_adv >= 1.0) if theta > 0 else (x_adv <= 0.0)
    return np.where(at_bound & (moved > 1e-6), np.ceil(moved - 1e-4), np.rint(moved))


def test_success_means_the_target_class(small_model, images):
    x, y, target = images
    result = jacobian_saliency_map(small_model, x, y, target=target)
    assert result.success.sum() >= 4
    predicted = np.argmax(small_model.predict(result.x_adv, verbose=0), axis=1)
    np.testing.assert_array_equal(predicted[result.success], target[result.success])
    np.testing.assert_array_equal(result.x_adv[~result.success], x[~result.success])
    np.testing.assert_array_equal(result.found, result.success)
    assert np.isnan(result.const).all()


def test_batched_equals_one_at_a_time(small_model, images):
    x, y, target = images
    batched = jacobian_saliency_map(small_model, x, y, target=target, batch_size=8)
    for i in range(len(x)):
        alone = jacobian_saliency_map(
            small_model, x[i : i + 1], y[i : i + 1], target=target[i : i + 1], batch_size=1
        )
        np.testing.assert_array_equal(alone.x_adv[0], batched.x_adv[i])
        assert alone.iterations[0] == batched.iterations[i]


@pytest.mark.parametrize("gradients", ["softmax", "logits"])
def test_eager_equals_compiled(small_model, images, gradients):
    x, y, target = images
    compiled = jacobian_saliency_map(small_model, x, y, target=target, gradients=gradients)
    tf.config.run_functions_eagerly(True)
    try:
        eager = jacobian_saliency_map(small_model, x, y, target=target, gradients=gradients)
    finally:
        tf.config.run_functions_eagerly(False)
    np.testing.assert_array_equal(eager.success, compiled.success)
    np.testing.assert_array_equal(eager.x_adv, compiled.x_adv)


@pytest.mark.parametrize("theta", [1.0, -1.0])
def test_theta_one_changes_two_new_features_per_pair(small_model, images, theta):
    x, y, target = images
    result = jacobian_saliency_map(small_model, x, y, target=target, theta=theta, gamma=1.0)
    changed = result.x_adv != x
    bound = 1.0 if theta > 0 else 0.0
    # A feature already at the bound is outside the search; every chosen feature lands on it.
    assert not changed[x == bound].any()
    np.testing.assert_array_equal(result.x_adv[changed], bound)
    ok = result.success
    np.testing.assert_array_equal(
        changed[ok].reshape(ok.sum(), -1).sum(axis=1), 2 * result.iterations[ok]
    )


def test_a_feature_at_its_bound_never_changes_again(small_model, images):
    x, y, target = images
    theta = 0.25
    result = jacobian_saliency_map(small_model, x, y, target=target, theta=theta, gamma=1.0)
    ok = result.success
    assert (result.x_adv[ok] >= x[ok]).all()
    # Each pair is two changes; a pair that picked a feature already at 1 would be uncounted.
    steps = _steps_taken(x[ok], result.x_adv[ok], theta).reshape(ok.sum(), -1).sum(axis=1)
    np.testing.assert_array_equal(steps, 2 * result.iterations[ok])
    assert (result.x_adv[ok] == 1.0).any(), "no feature reached its bound: the test is idle"


@pytest.mark.parametrize("gamma", [0.05, 0.1, 0.3])
def test_distortion_never_exceeds_gamma(small_model, images, gamma):
    x, y, target = images
    result = jacobian_saliency_map(small_model, x, y, target=target, gamma=gamma)
    limit = math.floor(gamma * FEATURES)
    assert (result.l0 <= limit).all()
    assert (2 * result.iterations <= limit).all()


def test_all_targets_attacks_every_other_class(small_model, images):
    x, y, _ = images
    result = all_targets(jacobian_saliency_map, small_model, x[:3], y[:3], gradients="logits")
    assert result.result.target.reshape(3, NUM_CLASSES - 1).tolist() == [
        [c for c in range(NUM_CLASSES) if c != label] for label in y[:3]
    ]
    assert result.summary("l0")["success_rate"].between(0, 1).all()


@pytest.mark.parametrize(
    "options, message",
    [
        ({"targeted": False}, "targeted"),
        ({"theta": 0.0}, "theta"),
        ({"theta": float("nan")}, "theta"),
        ({"gamma": 0.0}, "gamma"),
        ({"gamma": 1.5}, "gamma"),
        ({"gradients": "probabilities"}, "gradients"),
        ({"target": None}, "target"),
    ],
)
def test_bad_arguments_are_one_line_value_errors(small_model, images, options, message):
    x, y, target = images
    arguments = {"target": target, **options}
    with pytest.raises(ValueError, match=message) as error:
        jacobian_saliency_map(small_model, x, y, **arguments)
    assert "\n" not in str(error.value)


def test_a_theta_lost_to_rounding_stops(small_model, images):
    x, y, target = images
    result = jacobian_saliency_map(small_model, x, y, target=target, theta=1e-12)
    assert not result.success.any()
    np.testing.assert_array_equal(result.iterations, 0)
