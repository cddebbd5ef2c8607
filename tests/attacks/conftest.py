"""Fixtures shared by every attack test: a small trained MNIST CNN and a linear toy model."""

from collections.abc import Callable

import keras
import numpy as np
import pytest

NUM_ATTACK_IMAGES = 50


@pytest.fixture(scope="session")
def mnist_attack_model(mnist_small) -> keras.Model:
    """A small CNN returning logits, trained 2 epochs on 2,000 MNIST images (a few CPU seconds).

    Smaller than the paper's network so that attack tests stay fast; about 90% test accuracy.
    """
    x_train, y_train, _, _ = mnist_small
    keras.utils.set_random_seed(1234)
    inputs = keras.Input(shape=(28, 28, 1))
    h = keras.layers.Conv2D(16, 3, activation="relu")(inputs)
    h = keras.layers.MaxPooling2D(2)(h)
    h = keras.layers.Conv2D(32, 3, activation="relu")(h)
    h = keras.layers.MaxPooling2D(2)(h)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dense(64, activation="relu")(h)
    logits = keras.layers.Dense(10)(h)
    model = keras.Model(inputs, logits, name="mnist_attack_cnn")
    model.compile(
        optimizer=keras.optimizers.Adam(2e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(x_train, y_train, batch_size=32, epochs=2, verbose=0, shuffle=True)
    return model


@pytest.fixture(scope="session")
def mnist_attack_batch(mnist_attack_model, mnist_small) -> tuple[np.ndarray, np.ndarray]:
    """The first 50 MNIST test images the model classifies correctly, and their labels."""
    _, _, x_test, y_test = mnist_small
    predicted = np.argmax(mnist_attack_model.predict(x_test, verbose=0), axis=-1)
    correct = np.flatnonzero(predicted == y_test)
    if len(correct) < NUM_ATTACK_IMAGES:
        pytest.fail(f"the attack model classifies only {len(correct)} test images correctly")
    chosen = correct[:NUM_ATTACK_IMAGES]
    return x_test[chosen], y_test[chosen]


def _linear_two_class(w: np.ndarray, b: float) -> keras.Model:
    w = np.asarray(w, np.float32)
    kernel = np.stack([np.zeros(w.size, np.float32), w.reshape(-1)], axis=1)
    inputs = keras.Input(shape=w.shape)
    flat = keras.layers.Flatten()(inputs)
    dense = keras.layers.Dense(2)
    logits = dense(flat)
    dense.set_weights([kernel, np.array([0.0, b], np.float32)])
    return keras.Model(inputs, logits, name="linear_two_class")


@pytest.fixture
def linear_two_class_model() -> Callable[[np.ndarray, float], keras.Model]:
    """A factory: `linear_two_class_model(w, b)` -> model with logits [0, w . x + b].

    `w` has the image shape [H, W, C]. Class 1 wins where w . x + b > 0; the smallest L2 change
    that flips the class is |w . x + b| / ||w||_2, the smallest L-inf one |w . x + b| / ||w||_1
    (for points far enough inside the box).
    """
    return _linear_two_class


@pytest.fixture
def l2_linear_problem(linear_two_class_model):
    """A factory: `l2_linear_problem(n=10, shape=(8, 8, 1), seed=0)` -> `(model, x, y, optimum)`.

    `n` images well inside the box with margins |w.x + b| in [2, 4] on both sides of a random
    linear model; `optimum` is the smallest L2 change that flips each, |w.x + b| / ||w||_2.
    """

    def make(n: int = 10, shape: tuple[int, ...] = (8, 8, 1), seed: int = 0):
        rng = np.random.default_rng(seed)
        w = rng.normal(size=shape)
        b = -0.5 * w.sum()
        model = linear_two_class_model(w, b)
        x = 0.5 + rng.uniform(-0.1, 0.1, size=(n, *shape))
        margin = (x * w).reshape(n, -1).sum(axis=1) + b
        wanted = rng.choice([-1.0, 1.0], size=n) * rng.uniform(2.0, 4.0, size=n)
        x += ((wanted - margin) / np.sum(w**2))[:, None, None, None] * w
        y = (wanted > 0).astype(np.int64)
        optimum = np.abs(wanted) / np.sqrt(np.sum(w**2))
        return model, x.astype(np.float32), y, optimum

    return make


@pytest.fixture
def linf_linear_problem(linear_two_class_model):
    """Six 8x8 images of class 1 under a random linear model, margins >= 3.

    Returns `(model, x, y, optimum)`, `optimum` the smallest L-inf change that flips each image,
    |w . x + b| / ||w||_1, below 0.3 so that no pixel of the optimum leaves the box.
    """
    rng = np.random.default_rng(0)
    w = rng.normal(size=(8, 8, 1)).astype(np.float32)
    x = rng.uniform(0.35, 0.65, size=(6, 8, 8, 1)).astype(np.float32)
    scores = x.reshape(len(x), -1) @ w.ravel()
    b = float(3.0 - scores.min())
    optimum = (scores + b) / np.abs(w).sum()
    return linear_two_class_model(w, b), x, np.ones(len(x), np.int64), optimum
