"""Tests of the fast gradient sign method (keras_takd.attacks.fast_gradient_sign)."""

import numpy as np
import pytest
import tensorflow as tf

from keras_takd.attacks import fast_gradient_sign


def _gradient_sign(model, x, labels):
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(
            tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=model(x))
        )
    return np.sign(tape.gradient(loss, x).numpy())


def test_matches_the_formula(mnist_attack_model, mnist_attack_batch):
    x, y = mnist_attack_batch[0][:10], mnist_attack_batch[1][:10]
    eps = 0.1
    result = fast_gradient_sign(mnist_attack_model, x, y, eps, keep_failed=True)
    expected = np.clip(x + eps * _gradient_sign(mnist_attack_model, x, y), 0.0, 1.0)
    np.testing.assert_allclose(result.x_adv, expected, atol=1e-6)


def test_stays_in_ball_and_box_and_lowers_accuracy(mnist_attack_model, mnist_attack_batch):
    x, y = mnist_attack_batch
    eps = 0.2
    result = fast_gradient_sign(mnist_attack_model, x, y, eps)
    assert np.all(result.linf <= eps + 1e-6)
    assert result.x_adv.min() >= 0.0 and result.x_adv.max() <= 1.0
    predicted = mnist_attack_model.predict(result.x_adv, verbose=0).argmax(axis=1)
    np.testing.assert_array_equal(result.success, predicted != y)
    assert np.mean(predicted == y) <= 0.7  # from 100% on these images


def test_targeted_step_lowers_target_loss(mnist_attack_model, mnist_attack_batch):
    x, y = mnist_attack_batch[0][:20], mnist_attack_batch[1][:20]
    target = (y + 1) % 10
    result = fast_gradient_sign(
        mnist_attack_model, x, y, 0.05, targeted=True, target=target, keep_failed=True
    )

    def target_loss(images):
        logits = mnist_attack_model.predict(images, verbose=0)
        return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=target, logits=logits)

    assert np.mean(target_loss(result.x_adv) < target_loss(x)) >= 0.9


def test_bad_eps_raises(linear_two_class_model):
    model = linear_two_class_model(np.ones((4, 4, 1)), -8.0)
    x = np.full((2, 4, 4, 1), 0.4, np.float32)
    with pytest.raises(ValueError, match="eps must be > 0"):
        fast_gradient_sign(model, x, np.zeros(2, np.int64), eps=-0.1)
