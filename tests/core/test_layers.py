"""TemperatureSoftmax: the math, the validation, and a save -> load round trip."""

import keras
import numpy as np
import pytest

from keras_takd.core.layers import TemperatureSoftmax


@pytest.mark.parametrize("temperature", [1.0, 2.5, 40.0])
def test_softmax_of_logits_over_temperature(temperature):
    logits = np.array([[1.0, 2.0, 3.0], [-5.0, 0.0, 5.0]], dtype="float32")
    scaled = logits / temperature
    expected = np.exp(scaled) / np.exp(scaled).sum(axis=1, keepdims=True)
    got = keras.ops.convert_to_numpy(TemperatureSoftmax(temperature)(logits))
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_higher_temperature_gives_softer_probabilities():
    logits = np.array([[0.0, 1.0, 4.0]], dtype="float32")
    cold = keras.ops.convert_to_numpy(TemperatureSoftmax(1.0)(logits))
    hot = keras.ops.convert_to_numpy(TemperatureSoftmax(20.0)(logits))
    assert hot.max() < cold.max()
    assert hot.argmax() == cold.argmax()


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), "warm"])
def test_rejects_bad_temperature(bad):
    with pytest.raises(ValueError, match="temperature"):
        TemperatureSoftmax(bad)


def test_save_load_keeps_temperature_and_outputs(tmp_path):
    inputs = keras.Input((4,))
    outputs = TemperatureSoftmax(7.5, name="tsm")(keras.layers.Dense(3)(inputs))
    model = keras.Model(inputs, outputs)
    x = np.random.default_rng(0).normal(size=(5, 4)).astype("float32")
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert loaded.get_layer("tsm").temperature == 7.5
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)
