"""Tests of the Fast Minimum-Norm attack (keras_takd.attacks.fast_minimum_norm)."""

import numpy as np
import pytest
import tensorflow as tf

from keras_takd.attacks import fast_minimum_norm
from keras_takd.attacks.optimizers import _COMPILED_CACHE


def test_l2_closed_form_optimum(l2_linear_problem):
    model, x, y, optimum = l2_linear_problem()
    result = fast_minimum_norm(model, x, y, norm="l2", steps=1000)
    assert result.success.all()
    gap = result.l2 / optimum - 1
    assert gap.min() > -1e-3  # nothing beats the optimum
    assert gap.max() < 0.02


def test_linf_closed_form_optimum(linf_linear_problem):
    model, x, y, optimum = linf_linear_problem
    assert optimum.max() < 0.3  # the optimum never needs a pixel to leave [0, 1]
    result = fast_minimum_norm(model, x, y, norm="linf", steps=1000)
    assert result.success.all()
    gap = result.linf / optimum - 1
    assert gap.min() > -1e-3
    assert gap.max() < 0.02


@pytest.mark.parametrize("norm", ["l0", "l1"])
def test_sparse_norms_flip_the_linear_model_with_few_pixels(l2_linear_problem, norm):
    model, x, y, _ = l2_linear_problem()
    result = fast_minimum_norm(model, x, y, norm=norm, steps=300)
    assert result.success.all()
    # The L2 optimum moves all 64 pixels; the sparse attacks need a handful.
    assert result.l0.max() <= 8


def test_untargeted_mnist_verified_and_in_box(mnist_attack_model, mnist_attack_batch):
    x, y = mnist_attack_batch[0][:20], mnist_attack_batch[1][:20]
    result = fast_minimum_norm(mnist_attack_model, x, y, norm="l2", steps=300)
    predicted = mnist_attack_model.predict(result.x_adv, verbose=0).argmax(axis=1)
    np.testing.assert_array_equal(result.success, predicted != y)
    assert result.success.mean() >= 0.9
    assert result.x_adv.min() >= 0.0 and result.x_adv.max() <= 1.0
    assert np.isnan(result.const).all()


def test_targeted_mnist(mnist_attack_model, mnist_attack_batch):
    x, y = mnist_attack_batch[0][:20], mnist_attack_batch[1][:20]
    target = (y + 1) % 10
    result = fast_minimum_norm(
        mnist_attack_model, x, y, norm="linf", steps=300, targeted=True, target=target
    )
    predicted = mnist_attack_model.predict(result.x_adv, verbose=0).argmax(axis=1)
    np.testing.assert_array_equal(result.success, predicted == target)
    assert result.success.mean() >= 0.9
    np.testing.assert_array_equal(result.target, target)


def test_batched_equals_one_at_a_time(l2_linear_problem):
    model, x, y, _ = l2_linear_problem(n=4)
    together = fast_minimum_norm(model, x, y, norm="l2", steps=200, batch_size=4)
    alone = [
        fast_minimum_norm(model, x[i : i + 1], y[i : i + 1], norm="l2", steps=200)
        for i in range(len(x))
    ]
    np.testing.assert_array_equal(together.success, [r.success[0] for r in alone])
    np.testing.assert_allclose(together.x_adv, np.concatenate([r.x_adv for r in alone]), atol=1e-5)


def test_eager_and_compiled_agree(l2_linear_problem):
    model, x, y, _ = l2_linear_problem(n=3)
    compiled = fast_minimum_norm(model, x, y, norm="linf", steps=30)
    tf.config.run_functions_eagerly(True)
    try:
        eager = fast_minimum_norm(model, x, y, norm="linf", steps=30)
    finally:
        tf.config.run_functions_eagerly(False)
    np.testing.assert_array_equal(compiled.success, eager.success)
    np.testing.assert_allclose(compiled.x_adv, eager.x_adv, atol=1e-5)


def test_no_retracing_across_batches_and_step_counts(l2_linear_problem):
    model, x, y, _ = l2_linear_problem(n=7)
    fast_minimum_norm(model, x, y, steps=5, batch_size=3)  # the last batch is padded
    fast_minimum_norm(model, x[:5], y[:5], steps=9, batch_size=3, targeted=True, target=1 - y[:5])
    compiled = list(_COMPILED_CACHE[model].values())
    assert len(compiled) == 1
    assert compiled[0].experimental_get_tracing_count() == 1


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(norm="l3"), "norm must be one of"),
        (dict(steps=0), "steps must be an integer >= 1"),
        (dict(alpha_init=0.0), "alpha_init must be > 0"),
        (dict(alpha_init=1.0, alpha_final=2.0), "alpha_final must be in"),
        (dict(gamma_init=1.0), "gamma_init must be in"),
        (dict(gamma_final=0.1), "gamma_final must be in"),
        (dict(targeted=True), "needs target labels"),
        (dict(clip_min=0.6), "inside \\[clip_min, clip_max\\]"),
    ],
)
def test_bad_arguments_raise(l2_linear_problem, options, message):
    model, x, y, _ = l2_linear_problem(n=2)
    with pytest.raises(ValueError, match=message):
        fast_minimum_norm(model, x, y, **options)


def test_box_aware_gradient_reaches_images_the_plain_update_stalls_on(
    mnist_attack_model, mnist_attack_batch
):
    # The paper's project-then-clip update stalls short of the boundary on some MNIST images
    # (most of a step points out of the box at background pixels); the box-aware rule does not,
    # and neither does the overshoot before the first success, each on its own.
    x, y = mnist_attack_batch
    paper = dict(box_aware=False, boundary_overshoot=False)
    aware = fast_minimum_norm(
        mnist_attack_model, x, y, norm="l2", steps=100, **paper | {"box_aware": True}
    )
    overshoot = fast_minimum_norm(
        mnist_attack_model, x, y, norm="l2", steps=100, **paper | {"boundary_overshoot": True}
    )
    plain = fast_minimum_norm(mnist_attack_model, x, y, norm="l2", steps=100, **paper)
    assert aware.success.all()
    assert overshoot.success.all()
    assert plain.success.mean() < 1.0
    for ours in (aware, overshoot):
        both = ours.success & plain.success
        assert ours.l2[both].mean() <= plain.l2[both].mean() * 1.01


@pytest.mark.parametrize("overshoot", [False, True])
def test_epsilon_rule_overshoots_the_first_order_boundary_only_before_the_first_success(
    overshoot,
):
    from keras_takd.attacks.fast_minimum_norm import _State, _update_eps

    gamma = tf.constant(0.04)
    eps = tf.constant([2.0, 2.0, 2.0])
    state = _State(0, tf.zeros([3, 1]), eps, eps, tf.zeros([3, 1]), tf.zeros([3], tf.bool))
    # Rows: not adversarial and nothing found yet; not adversarial after a success; adversarial.
    is_adv = tf.constant([False, False, True])
    found = tf.constant([False, True, True])
    best_norm = tf.constant([np.inf, 1.9, 1.5], tf.float32)
    delta_norm, distance = tf.constant([0.5, 0.5, 0.5]), tf.constant([0.25, 0.25, 0.25])
    new = _update_eps("l2", state, is_adv, found, best_norm, delta_norm, distance, gamma, overshoot)
    first_order = 0.75 * 1.04 if overshoot else 0.75  # the paper: ||delta|| + |loss| / ||grad||
    np.testing.assert_allclose(new.numpy(), [first_order, 2.0 * 1.04, 1.5], rtol=1e-6)
