"""The Papernot/Carlini networks: shapes, logits outputs, architecture, temperature wrapper."""

import keras
import numpy as np
import pytest

from keras_takd.core.models import build_model, carlini_cnn, with_temperature


@pytest.mark.parametrize(
    "dataset, shape, params",
    # Parameter counts of the published architectures (3x3 valid convs, 2 maxpools).
    [("mnist", (28, 28, 1), 312_202), ("cifar10", (32, 32, 3), 1_147_978)],
)
def test_paper_architectures(dataset, shape, params):
    model = build_model(dataset)
    assert model.input_shape == (None, *shape)
    assert model.output_shape == (None, 10)
    assert model.count_params() == params
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.kernel_size for c in convs] == [(3, 3)] * 4
    assert all(c.padding == "valid" for c in convs)
    assert model.layers[-1].activation is keras.activations.linear  # logits


def test_unknown_dataset_and_bad_params():
    with pytest.raises(ValueError, match="unknown dataset 'svhn'"):
        build_model("svhn")
    with pytest.raises(ValueError, match="six positive integers"):
        carlini_cnn((28, 28, 1), (32, 32, 64))


def test_with_temperature_shares_weights_and_softens():
    model = build_model("mnist")
    x = np.random.default_rng(0).uniform(size=(3, 28, 28, 1)).astype("float32")
    logits = model.predict(x, verbose=0)
    probabilities = with_temperature(model, 10.0).predict(x, verbose=0)
    expected = keras.ops.convert_to_numpy(keras.ops.softmax(logits / 10.0))
    np.testing.assert_allclose(probabilities, expected, rtol=1e-5, atol=1e-7)
