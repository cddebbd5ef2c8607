"""Tests of keras_takd.core.precision: a model's float64 copy and the float64 call."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_takd.core import precision
from keras_takd.core.models import carlini_cnn, with_temperature


@pytest.fixture(scope="module")
def nested_model():
    """A small Papernot/Carlini CNN inside softmax(logits / T): a model nested in a model."""
    keras.utils.set_random_seed(0)
    logits = carlini_cnn((16, 16, 1), (2, 2, 2, 2, 8, 8))
    return with_temperature(logits, 10.0)


def test_the_float64_copy_computes_the_same_outputs_in_float64(nested_model):
    x = np.random.default_rng(0).uniform(size=(4, 16, 16, 1))
    copy = precision.float64_copy(nested_model)
    outputs = precision.call_in_float64(copy, tf.constant(x, tf.float64))
    assert outputs.dtype == tf.float64
    expected = nested_model(x.astype("float32"), training=False)
    np.testing.assert_allclose(outputs.numpy(), expected.numpy(), rtol=1e-5, atol=1e-7)
    assert all(w.dtype == "float64" for w in copy.weights)
    assert all(w.dtype == "float32" for w in nested_model.weights)  # the original untouched


def test_a_callable_is_kept_and_refused_unless_it_computes_in_float64():
    def float32_only(images):
        return tf.cast(images, tf.float32)

    assert precision.float64_copy(float32_only) is float32_only
    images = tf.zeros((2, 3), tf.float64)
    assert precision.call_in_float64(tf.identity, images).dtype == tf.float64
    with pytest.raises(ValueError, match="returned float32 outputs for float64 images"):
        precision.call_in_float64(float32_only, images)
