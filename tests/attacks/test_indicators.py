"""Tests of the indicators of attack failure (keras_takd.attacks.indicators)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_takd.attacks import (
    AttackResult,
    carlini_wagner_l0,
    indicators,
    projected_gradient_descent,
)

SCALE = 100.0  # logits scaled like a network distilled at T = 100 and deployed at T = 1


@pytest.fixture(scope="module")
def saturated_problem():
    """A linear 10-class model on 4x4 images with logits scaled by 100, and images it
    classifies with an unscaled margin of at least 1 (so its softmax is saturated: the other
    classes' probabilities, about exp(-100), underflow in float32)."""
    rng = np.random.default_rng(0)
    w = rng.normal(size=(16, 10)).astype(np.float32)
    b = -0.5 * w.sum(axis=0)  # every class wins somewhere in the box
    x = rng.uniform(0.0, 1.0, size=(2000, 4, 4, 1)).astype(np.float32)
    scores = np.sort(x.reshape(len(x), -1) @ w + b, axis=1)
    x = x[scores[:, -1] - scores[:, -2] >= 1.0][:12]
    inputs = keras.Input((4, 4, 1))
    dense = keras.layers.Dense(10)
    logits = keras.layers.Rescaling(SCALE)(dense(keras.layers.Flatten()(inputs)))
    dense.set_weights([w, b])
    logit_model = keras.Model(inputs, logits)
    probability_model = keras.Model(inputs, keras.layers.Softmax()(logits))  # softmax(z / T)
    y = np.argmax(logit_model.predict(x, verbose=0), axis=1)
    return logit_model, probability_model, x, y


@pytest.fixture(scope="module")
def unscaled_model(saturated_problem):
    """The same linear model without the factor 100."""
    logit_model = saturated_problem[0]
    return keras.Model(logit_model.inputs, logit_model.layers[-2].output)


def test_softmax_at_scale_100_trips_vanishing_gradients_and_logits_do_not(saturated_problem):
    logit_model, probability_model, x, y = saturated_problem
    assert len(x) == 12
    # C&W's margin loss, on softmax(z / T) and on the logits z, with float64 gradients: the
    # same flags on every CPU (in float32 a saturated softmax gives 0 with oneDNN and rounding
    # noise of about 1e-4 without it).
    assert indicators.vanishing_gradients(probability_model, x, y).all()
    assert not indicators.vanishing_gradients(logit_model, x, y).any()
    saturated = np.abs(indicators.attack_loss_gradients(probability_model, x, y)).sum((1, 2, 3))
    norms = np.abs(indicators.attack_loss_gradients(logit_model, x, y)).sum(axis=(1, 2, 3))
    # exp(-100 * margin), margin >= 1: far below the line; the logits far above it.
    assert saturated.max() < 1e-20 * indicators.VANISHING_GRADIENT_THRESHOLD
    assert norms.min() > 1e6 * indicators.VANISHING_GRADIENT_THRESHOLD


def test_gradients_are_float64_and_a_float32_callable_is_refused(saturated_problem):
    logit_model, _, x, y = saturated_problem
    grads = indicators.attack_loss_gradients(logit_model, x, y)
    assert grads.dtype == np.float64 and grads.shape == x.shape
    w = logit_model.layers[2].get_weights()[0]  # Input, Flatten, Dense, Rescaling

    def float32_only(images):
        return tf.cast(tf.reshape(images, (-1, 16)), tf.float32) @ w

    with pytest.raises(ValueError, match="returned float32 outputs for float64 images"):
        indicators.vanishing_gradients(float32_only, x, y)


def test_cross_entropy_vanishes_on_saturated_outputs_but_not_unscaled_logits(
    saturated_problem, unscaled_model
):
    logit_model, probability_model, x, y = saturated_problem
    flags = {
        name: indicators.vanishing_gradients(model, x, y, loss="cross_entropy")
        for name, model in [
            ("softmax", probability_model),
            ("logits x 100", logit_model),  # cross-entropy saturates there too
            ("logits", unscaled_model),
        ]
    }
    assert flags["softmax"].all() and flags["logits x 100"].all()
    assert not flags["logits"].any()


def test_unconstrained_pgd_fails_where_the_gradient_is_zero_only(saturated_problem, unscaled_model):
    logit_model, probability_model, x, y = saturated_problem
    assert not indicators.unconstrained_attack_failure(unscaled_model, x, y, steps=20).any()
    # PGD runs in float32, where the saturated softmax's gradient is 0 with oneDNN and rounding
    # noise without it (whose sign PGD follows, and can win by): on every CPU, the images with
    # an exactly zero gradient stall, and so does every image of a model without a gradient.
    stalled = indicators.unconstrained_attack_failure(
        probability_model, x, y, steps=20, allow_probabilities=True
    )
    assert stalled[_float32_gradient_is_zero(probability_model, x, y)].all()
    zero_gradient = keras.layers.Lambda(lambda p: keras.ops.stop_gradient(p) + 0.0 * p)
    no_gradient = keras.Model(logit_model.inputs, zero_gradient(probability_model.outputs[0]))
    stalled = indicators.unconstrained_attack_failure(
        no_gradient, x, y, steps=20, allow_probabilities=True
    )
    assert stalled.all()


def _float32_gradient_is_zero(model, x, y) -> np.ndarray:
    """Images where the float32 input gradient of the cross-entropy of `y` is exactly zero."""
    images = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(images)
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=model(images))
    return ~np.any(tape.gradient(ce, images).numpy().reshape(len(x), -1), axis=1)


def test_silent_success_is_found_but_not_returned():
    result = AttackResult(
        x_adv=np.zeros((4, 1, 1, 1), np.float32),
        success=np.array([True, False, False, True]),
        l0=np.zeros(4),
        l2=np.zeros(4),
        linf=np.zeros(4),
        const=np.zeros(4),
        target=np.zeros(4, np.int64),
        found=np.array([True, True, False, False]),
    )
    np.testing.assert_array_equal(indicators.silent_success(result), [False, True, False, False])
    with pytest.raises(ValueError, match="result.found is None"):
        indicators.silent_success(AttackResult(**{**result.__dict__, "found": None}))


def test_pgd_records_found_so_silent_success_can_be_checked(saturated_problem):
    logit_model, _, x, y = saturated_problem
    result = projected_gradient_descent(logit_model, x, y, eps=1.0, step_size=0.1, steps=10)
    assert result.found is not None and result.found.shape == (len(x),)
    assert not indicators.silent_success(result).any()


def test_l0_returns_what_its_search_found(
    saturated_problem, mnist_attack_model, mnist_attack_batch
):
    """Issue 27 item 5 saw silent success on every L0 image with success 0: on a trained CNN
    and on logits scaled by 100 (a high-T model), every image L0's search finds is returned
    adversarial, so the indicator stays quiet where the attack works."""
    logit_model, _, x, y = saturated_problem
    scaled = carlini_wagner_l0(logit_model, x[:6], y[:6], max_iterations=200)
    x, y = mnist_attack_batch
    cnn = carlini_wagner_l0(mnist_attack_model, x[:4], y[:4], max_iterations=100)
    for result in (scaled, cnn):
        assert result.found.any()
        np.testing.assert_array_equal(result.found, result.success)
        assert not indicators.silent_success(result).any()


def test_incomplete_optimization_flags_losses_still_falling():
    steps = np.arange(50.0)
    trace = np.stack([np.exp(-steps / 5), 1.0 - 0.01 * steps, np.full(50, 2.0)])
    np.testing.assert_array_equal(indicators.incomplete_optimization(trace), [False, True, False])
    with pytest.raises(ValueError, match="T > window=10"):
        indicators.incomplete_optimization(trace[:, :5])


def test_pgd_loss_trace_of_too_few_steps_is_incomplete(saturated_problem, unscaled_model):
    _, _, x, y = saturated_problem
    short = indicators.pgd_loss_trace(unscaled_model, x, y, eps=0.3, step_size=0.001, steps=12)
    assert short.shape == (len(x), 13)
    assert indicators.incomplete_optimization(short).all()


def test_check_attack_reports_every_indicator(saturated_problem):
    logit_model, probability_model, x, y = saturated_problem
    result = projected_gradient_descent(
        probability_model, x, y, eps=0.3, step_size=0.05, steps=10, allow_probabilities=True
    )
    report = indicators.check_attack(
        probability_model,
        x,
        y,
        result,
        loss="cross_entropy",
        unconstrained_steps=10,
        allow_probabilities=True,
    )
    assert set(report.flags) == {
        "silent_success",
        "vanishing_gradients",
        "unconstrained_attack_failure",
    }
    assert report.counts()["vanishing_gradients"] == {
        "images": len(x),
        "flagged": len(x),
        "fraction": 1.0,
    }
    assert "vanishing_gradients" in report.tripped()
