"""Tests of Auto-PGD (keras_takd.attacks.apgd)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_takd.attacks import apgd
from keras_takd.attacks.apgd import checkpoints, dlr_loss, dlr_targeted_loss


@pytest.mark.parametrize("factor, fooled", [(1.01, True), (0.99, False)])
def test_reaches_the_closed_form_linf_boundary(linf_linear_problem, factor, fooled):
    model, x, y, optimum = linf_linear_problem
    for i in range(len(x)):
        eps = float(optimum[i] * factor)
        result = apgd(model, x[i : i + 1], y[i : i + 1], eps, steps=50)
        assert result.success[0] == fooled
        if fooled:  # at the vertex of the cube: the boundary needs all of eps
            assert result.linf[0] == pytest.approx(eps, rel=1e-5)


@pytest.mark.parametrize("norm, eps", [("linf", 0.1), ("l2", 1.0)])
@pytest.mark.parametrize("loss", ["ce", "dlr"])
def test_never_leaves_the_ball_or_the_box(mnist_attack_model, mnist_attack_batch, norm, eps, loss):
    x, y = mnist_attack_batch[0][:20], mnist_attack_batch[1][:20]
    result = apgd(mnist_attack_model, x, y, eps, norm=norm, loss=loss, steps=20)
    distance = result.linf if norm == "linf" else result.l2
    assert np.all(distance <= eps * (1 + 1e-5))
    assert result.x_adv.min() >= 0.0 and result.x_adv.max() <= 1.0
    predicted = mnist_attack_model.predict(result.x_adv, verbose=0).argmax(axis=1)
    np.testing.assert_array_equal(result.success, predicted != y)
    assert 0 < result.success.mean() < 1  # eps chosen to fool some images, not all


def test_dlr_is_invariant_to_the_logit_scale_and_ce_is_not(mnist_attack_model, mnist_attack_batch):
    x, y = mnist_attack_batch[0][:30], mnist_attack_batch[1][:30]
    scaled = keras.Sequential([mnist_attack_model, keras.layers.Rescaling(100.0)])
    options = dict(eps=0.15, steps=20)
    dlr = apgd(mnist_attack_model, x, y, loss="dlr", **options)
    dlr_scaled = apgd(scaled, x, y, loss="dlr", **options)
    ce = apgd(mnist_attack_model, x, y, loss="ce", **options)
    ce_scaled = apgd(scaled, x, y, loss="ce", **options)
    assert dlr.success.mean() >= 0.3
    np.testing.assert_array_equal(dlr.success, dlr_scaled.success)
    # The cross-entropy of logits x 100 saturates: its input gradient is exactly zero.
    images = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(images)
        ce_value = tf.nn.sparse_softmax_cross_entropy_with_logits(y, scaled(images))
    grad = tape.gradient(ce_value, images).numpy().reshape(len(x), -1)
    assert np.mean(np.all(grad == 0, axis=1)) >= 0.9
    assert ce_scaled.success.mean() <= 0.1 < ce.success.mean()


def test_without_a_random_start_every_seed_runs_the_same_attack_from_the_image(
    mnist_attack_model, mnist_attack_batch
):
    x, y = mnist_attack_batch[0][:10], mnist_attack_batch[1][:10]
    options = dict(eps=0.1, steps=5)
    fixed = [apgd(mnist_attack_model, x, y, seed=s, random_start=False, **options) for s in (0, 1)]
    np.testing.assert_array_equal(fixed[0].x_adv, fixed[1].x_adv)
    drawn = [apgd(mnist_attack_model, x, y, seed=s, **options) for s in (0, 1)]
    assert np.abs(drawn[0].x_adv - drawn[1].x_adv).max() > 0.01


def test_unbounded_apgd_dlr_wins_where_an_unbounded_ce_pgd_stalls(
    mnist_attack_model, mnist_attack_batch
):
    """Why the evaluation's unconstrained-failure indicator reruns APGD with its own loss: on
    logits x 100 (a model trained at high T) cross-entropy PGD over the whole box stalls, which
    would flag images that APGD-DLR fools."""
    from keras_takd.attacks import indicators

    x, y = mnist_attack_batch[0][:20], mnist_attack_batch[1][:20]
    scaled = keras.Sequential([mnist_attack_model, keras.layers.Rescaling(100.0)])
    assert indicators.unconstrained_attack_failure(scaled, x, y, steps=20).mean() >= 0.5
    unbounded = apgd(scaled, x, y, 1.0, loss="dlr", steps=20, random_start=False)
    assert unbounded.success.all()


def test_dlr_losses_are_scale_invariant():
    logits = tf.constant([[3.0, 1.0, -2.0, 0.5], [0.1, 0.4, 0.2, -1.0]])
    true, goal = tf.one_hot([0, 1], 4), tf.one_hot([2, 3], 4)
    np.testing.assert_allclose(dlr_loss(logits, true), dlr_loss(50 * logits, true), rtol=1e-5)
    np.testing.assert_allclose(
        dlr_targeted_loss(logits, true, goal), dlr_targeted_loss(50 * logits, true, goal), rtol=1e-5
    )
    # -(z_y - max other) / (z_pi1 - z_pi3): row 0: -(3 - 1) / (3 - 0.5).
    assert float(dlr_loss(logits, true)[0]) == pytest.approx(-2.0 / 2.5)


def test_targeted_reaches_targets(mnist_attack_model, mnist_attack_batch):
    x, y = mnist_attack_batch[0][:20], mnist_attack_batch[1][:20]
    target = (y + 1) % 10
    result = apgd(mnist_attack_model, x, y, 0.3, loss="dlr", steps=30, targeted=True, target=target)
    predicted = mnist_attack_model.predict(result.x_adv, verbose=0).argmax(axis=1)
    np.testing.assert_array_equal(result.success, predicted == target)
    assert result.success.mean() >= 0.7


def test_checkpoints_follow_the_paper():
    # p = 0, 0.22, 0.41, 0.57, 0.70, 0.80, 0.87, 0.93, 0.99 (steps of max(d - 0.03, 0.06)).
    np.testing.assert_array_equal(
        np.flatnonzero(checkpoints(100)), [22, 41, 57, 70, 80, 87, 93, 99]
    )
    assert checkpoints(1).shape == (2,)


def test_batched_equals_one_at_a_time(mnist_attack_model, mnist_attack_batch):
    x, y = mnist_attack_batch[0][:4], mnist_attack_batch[1][:4]
    together = apgd(mnist_attack_model, x, y, 0.15, loss="dlr", steps=10, batch_size=4)
    alone = [
        apgd(mnist_attack_model, x[i : i + 1], y[i : i + 1], 0.15, loss="dlr", steps=10)
        for i in range(len(x))
    ]
    np.testing.assert_array_equal(together.success, [r.success[0] for r in alone])
    # Each image gets the same random start either way (seeded per call, drawn per image).
    np.testing.assert_allclose(together.x_adv, np.concatenate([r.x_adv for r in alone]), atol=1e-4)


def test_eager_and_compiled_agree(linf_linear_problem):
    model, x, y, optimum = linf_linear_problem
    eps = float(optimum.mean())
    compiled = apgd(model, x, y, eps, steps=10)
    tf.config.run_functions_eagerly(True)
    try:
        eager = apgd(model, x, y, eps, steps=10)
    finally:
        tf.config.run_functions_eagerly(False)
    np.testing.assert_array_equal(compiled.success, eager.success)
    np.testing.assert_allclose(compiled.x_adv, eager.x_adv, atol=1e-6)


def test_restarts_only_add_successes(mnist_attack_model, mnist_attack_batch):
    x, y = mnist_attack_batch[0][:20], mnist_attack_batch[1][:20]
    one = apgd(mnist_attack_model, x, y, 0.1, steps=10, restarts=1)
    three = apgd(mnist_attack_model, x, y, 0.1, steps=10, restarts=3)
    assert np.all(three.success >= one.success)


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(eps=0.0), "eps must be > 0"),
        (dict(norm="l1"), "norm must be one of"),
        (dict(loss="hinge"), "loss must be one of"),
        (dict(steps=0), "steps must be an integer >= 1"),
        (dict(restarts=0), "restarts must be an integer >= 1"),
        (dict(rho=1.0), "rho must be in"),
        (dict(loss="dlr"), "DLR loss needs >= 3 classes"),
        (dict(targeted=True), "needs target labels"),
    ],
)
def test_bad_arguments_raise(linf_linear_problem, options, message):
    model, x, y, _ = linf_linear_problem
    kwargs = dict(eps=0.1) | options
    with pytest.raises(ValueError, match=message):
        apgd(model, x, y, **kwargs)
