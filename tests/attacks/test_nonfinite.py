"""Every attack refuses non-finite images and models, and never reports NaN as a success."""

import functools

import numpy as np
import pytest
import tensorflow as tf

from keras_takd.attacks import (
    apgd,
    carlini_wagner_l0,
    carlini_wagner_l2,
    carlini_wagner_linf,
    fast_gradient_sign,
    fast_minimum_norm,
    jacobian_saliency_map,
    projected_gradient_descent,
)

ATTACKS = {
    "l2": functools.partial(carlini_wagner_l2, max_iterations=20, binary_search_steps=2),
    "l0": functools.partial(carlini_wagner_l0, max_iterations=20, largest_const=1.0),
    "linf": functools.partial(carlini_wagner_linf, max_iterations=20),
    "pgd": functools.partial(projected_gradient_descent, eps=0.3, step_size=0.1, steps=5),
    "fgsm": functools.partial(fast_gradient_sign, eps=0.3),
    "fmn_l2": functools.partial(fast_minimum_norm, norm="l2", steps=20),
    "fmn_l0": functools.partial(fast_minimum_norm, norm="l0", steps=20),
    "apgd": functools.partial(apgd, eps=0.3, steps=5),
    "jsma": functools.partial(jacobian_saliency_map, target=np.ones(3, np.int64)),
}


def _images(n=3):
    return np.full((n, 2, 2, 1), 0.5, np.float32), np.zeros(n, np.int64)


def _nan_model(x):
    """Logits NaN everywhere (and so is their gradient)."""
    nan = np.float32(np.nan) * tf.reduce_sum(tf.reshape(x, [tf.shape(x)[0], -1]), axis=1)
    return tf.stack([nan, nan], axis=1)


def _nan_beyond(x):
    """Logits [0, 20 * (mean(x) - 0.65)], NaN wherever a pixel exceeds 0.6.

    Finite with a finite gradient at the clean images (0.5); class 1 wins only where the
    logits are already NaN, so no attack can succeed.
    """
    flat = tf.reshape(x, [tf.shape(x)[0], -1])
    poison = 0.0 * tf.reduce_sum(tf.math.log(0.6 - flat), axis=1)
    score = 20.0 * (tf.reduce_mean(flat, axis=1) - 0.65) + poison
    return tf.stack([tf.zeros_like(score), score], axis=1)


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_non_finite_x_is_refused(name, linear_two_class_model):
    model = linear_two_class_model(np.ones((2, 2, 1)), -3.0)
    x, y = _images()
    x[1, 0, 1, 0] = np.nan
    with pytest.raises(ValueError, match=r"x holds 1 NaN or infinite values \(first in image 1\)"):
        ATTACKS[name](model, x, y)


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_model_with_nan_logits_is_refused(name):
    x, y = _images()
    with pytest.raises(ValueError, match="the model's output holds NaN or infinite values"):
        ATTACKS[name](_nan_model, x, y)


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_nan_beyond_the_clean_images_is_never_a_success(name):
    x, y = _images()
    result = ATTACKS[name](_nan_beyond, x, y)
    assert not result.success.any()
    assert np.all(np.isfinite(result.x_adv))
    np.testing.assert_array_equal(result.l2, 0.0)  # failures keep their original image


def test_pgd_counts_the_examples_it_drove_into_nan():
    x, y = _images()
    result = projected_gradient_descent(_nan_beyond, x, y, eps=0.3, step_size=0.1, steps=5)
    np.testing.assert_array_equal(result.nonfinite, [True, True, True])
    kept = projected_gradient_descent(
        _nan_beyond, x, y, eps=0.3, step_size=0.1, steps=5, keep_failed=True
    )
    assert kept.nonfinite.all() and np.array_equal(kept.x_adv, x)  # never a NaN-land image
