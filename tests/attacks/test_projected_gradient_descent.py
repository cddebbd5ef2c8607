"""Tests of projected gradient descent (keras_takd.attacks.projected_gradient_descent)."""

import numpy as np
import pytest
import tensorflow as tf

from keras_takd.attacks import pgd_perturb, projected_gradient_descent


def _accuracy(model, x, y):
    return float(np.mean(model.predict(x, verbose=0).argmax(axis=1) == y))


def test_linf_stays_in_ball_and_box_and_lowers_accuracy(mnist_attack_model, mnist_attack_batch):
    x, y = mnist_attack_batch
    eps = 0.2
    result = projected_gradient_descent(
        mnist_attack_model, x, y, eps=eps, step_size=0.05, steps=10, keep_failed=True
    )
    assert np.all(result.linf <= eps + 1e-6)
    assert result.x_adv.min() >= 0.0 and result.x_adv.max() <= 1.0
    accuracy = _accuracy(mnist_attack_model, result.x_adv, y)
    assert accuracy == pytest.approx(1.0 - result.success.mean())
    assert accuracy <= 0.3  # from 100% on these images
    assert np.isnan(result.const).all()


def test_l2_stays_in_ball_and_box_and_lowers_accuracy(mnist_attack_model, mnist_attack_batch):
    x, y = mnist_attack_batch
    eps = 2.5
    result = projected_gradient_descent(
        mnist_attack_model, x, y, eps=eps, step_size=0.5, steps=10, norm="l2", keep_failed=True
    )
    assert np.all(result.l2 <= eps + 1e-4)
    assert result.x_adv.min() >= 0.0 and result.x_adv.max() <= 1.0
    assert _accuracy(mnist_attack_model, result.x_adv, y) <= 0.5


def test_targeted_reaches_targets(mnist_attack_model, mnist_attack_batch):
    x, y = mnist_attack_batch
    target = (y + 1) % 10
    result = projected_gradient_descent(
        mnist_attack_model, x, y, 0.3, 0.03, 20, targeted=True, target=target
    )
    predicted = mnist_attack_model.predict(result.x_adv, verbose=0).argmax(axis=1)
    np.testing.assert_array_equal(result.success, predicted == target)
    assert result.success.mean() >= 0.7  # about 0.85 at eps = 0.3 on the test CNN
    # Failed examples get their original image back by default.
    np.testing.assert_array_equal(result.x_adv[~result.success], x[~result.success])


def test_random_start_is_seeded(mnist_attack_model, mnist_attack_batch):
    x, y = mnist_attack_batch[0][:8], mnist_attack_batch[1][:8]
    options = dict(eps=0.1, step_size=0.01, steps=2, keep_failed=True)
    first = projected_gradient_descent(mnist_attack_model, x, y, seed=3, **options)
    again = projected_gradient_descent(mnist_attack_model, x, y, seed=3, **options)
    other = projected_gradient_descent(mnist_attack_model, x, y, seed=4, **options)
    np.testing.assert_array_equal(first.x_adv, again.x_adv)
    assert np.abs(first.x_adv - other.x_adv).max() > 1e-3


def test_pgd_perturb_runs_inside_tf_function(mnist_attack_model, mnist_attack_batch):
    x, y = mnist_attack_batch[0][:8], mnist_attack_batch[1][:8]

    @tf.function
    def perturb(images, labels):
        return pgd_perturb(mnist_attack_model, images, labels, images, 0.1, 0.02, 5)

    x_adv = perturb(tf.constant(x), tf.constant(y)).numpy()
    reference = projected_gradient_descent(
        mnist_attack_model, x, y, 0.1, 0.02, 5, random_start=False, keep_failed=True
    )
    np.testing.assert_allclose(x_adv, reference.x_adv, atol=1e-5)


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(eps=0.0), "eps must be > 0"),
        (dict(step_size=-0.1), "step_size must be > 0"),
        (dict(steps=0), "steps must be an integer >= 1"),
        (dict(norm="l1"), "norm must be one of"),
        (dict(clip_min=0.5, clip_max=0.5), "clip_min must be < clip_max"),
    ],
)
def test_bad_arguments_raise(linear_two_class_model, options, message):
    model = linear_two_class_model(np.ones((4, 4, 1)), -8.0)
    x = np.full((2, 4, 4, 1), 0.4, np.float32)
    kwargs = dict(eps=0.1, step_size=0.01, steps=3) | options
    with pytest.raises(ValueError, match=message):
        projected_gradient_descent(model, x, np.zeros(2, np.int64), **kwargs)


def test_pgd_perturb_rejects_unknown_norm(linear_two_class_model):
    model = linear_two_class_model(np.ones((4, 4, 1)), -8.0)
    x = tf.fill([2, 4, 4, 1], 0.4)
    with pytest.raises(ValueError, match="norm must be one of"):
        pgd_perturb(model, x, tf.zeros([2], tf.int64), x, 0.1, 0.01, 2, norm="l1")
