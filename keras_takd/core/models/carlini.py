"""The classifiers of defensive distillation, as Keras functional models that return logits.

The MNIST and CIFAR-10 networks are those of Papernot et al. 2016 (arXiv:1511.04508) and of
Carlini & Wagner 2017 (arXiv:1608.04644, `train_models.py`), which Mandal & Guo reuse:
3x3 valid convolutions, conv-conv-maxpool twice, then two ReLU dense layers with dropout 0.5
between them, and a 10-way dense layer. Every model here outputs LOGITS; training and
evaluation put a `TemperatureSoftmax` on top when probabilities are wanted.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from keras_takd.core.data import INPUT_SHAPES, NUM_CLASSES
from keras_takd.core.layers import TemperatureSoftmax

# Filters of the four convolutions and widths of the two hidden dense layers.
MNIST_PARAMS = (32, 32, 64, 64, 200, 200)
CIFAR10_PARAMS = (64, 64, 128, 128, 256, 256)


def carlini_cnn(
    input_shape: Sequence[int],
    params: Sequence[int],
    num_classes: int = NUM_CLASSES,
    dropout: float = 0.5,
    name: str = "carlini_cnn",
) -> keras.Model:
    """Builds the 9-layer Papernot/Carlini network.

    Args:
        input_shape: (height, width, channels) of the images.
        params: six integers: the filters of the four convolutions, then the widths of the two
            hidden dense layers.
        num_classes: number of output logits.
        dropout: dropout rate between the two hidden dense layers (0.5 in the papers).
        name: the model's name.

    Returns:
        A functional `keras.Model` mapping float32 images in [0, 1] to logits.

    Raises:
        ValueError: if `params` does not hold six positive integers.
    """
    params = tuple(int(p) for p in params)
    if len(params) != 6 or min(params) <= 0:
        raise ValueError(f"params must be six positive integers, got {params!r}")
    inputs = keras.Input(shape=tuple(input_shape), name="images")
    x = inputs
    for block, (first, second) in enumerate((params[0:2], params[2:4]), start=1):
        x = keras.layers.Conv2D(first, 3, activation="relu", name=f"conv{block}a")(x)
        x = keras.layers.Conv2D(second, 3, activation="relu", name=f"conv{block}b")(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool{block}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(params[4], activation="relu", name="dense1")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    x = keras.layers.Dense(params[5], activation="relu", name="dense2")(x)
    logits = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, logits, name=name)


def build_model(dataset: str, name: str | None = None) -> keras.Model:
    """Builds the paper's network for `dataset` ("mnist" or "cifar10"), returning logits.

    Raises:
        ValueError: for an unknown dataset.
    """
    if dataset == "mnist":
        return carlini_cnn(INPUT_SHAPES["mnist"], MNIST_PARAMS, name=name or "mnist_cnn")
    if dataset == "cifar10":
        return carlini_cnn(INPUT_SHAPES["cifar10"], CIFAR10_PARAMS, name=name or "cifar10_cnn")
    raise ValueError(f"unknown dataset {dataset!r}: expected one of {sorted(INPUT_SHAPES)}")


def with_temperature(logits_model: keras.Model, temperature: float) -> keras.Model:
    """Wraps a logits model as a probability model softmax(logits / T), sharing its weights.

    Args:
        logits_model: a model whose output is logits.
        temperature: the softmax temperature T > 0.

    Returns:
        A functional model with the same input and the tempered probabilities as output.
    """
    inputs = keras.Input(shape=logits_model.input_shape[1:], name="images")
    probabilities = TemperatureSoftmax(temperature, name="temperature_softmax")(
        logits_model(inputs)
    )
    return keras.Model(inputs, probabilities, name=f"{logits_model.name}_T{temperature:g}")
