"""Tests of the transfer-attack matrix (keras_takd.smoothed.transfer) and its figures."""

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_takd.attacks import pgd_perturb
from keras_takd.attacks.projected_gradient_descent import random_start_points
from keras_takd.smoothed import figures as plotting_transfer
from keras_takd.smoothed import transfer
from keras_takd.smoothed.smoothing import SmoothedClassifier

SHAPE = (4, 4, 1)


def _separable_data(n=64, seed=0):
    """Two classes told apart by the mean brightness: 0.3 versus 0.7."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = np.clip(0.3 + 0.4 * y[:, None, None, None] + rng.normal(0, 0.02, (n, *SHAPE)), 0, 1)
    return x.astype("float32"), y.astype("int64")


def _mean_brightness_model(scale):
    """A fixed linear classifier: logit_1 - logit_0 = scale * (sum(x) - 0.5 * size)."""
    inputs = keras.Input(SHAPE)
    flat = keras.layers.Flatten()(inputs)
    layer = keras.layers.Dense(2)
    logits = layer(flat)
    size = int(np.prod(SHAPE))
    kernel = np.zeros((size, 2), "float32")
    kernel[:, 1] = scale
    layer.set_weights([kernel, np.array([0.0, -0.5 * size * scale], "float32")])
    return keras.Model(inputs, logits)


def _models():
    return [
        transfer.keras_transfer_model("a", _mean_brightness_model(1.0)),
        transfer.keras_transfer_model("b", _mean_brightness_model(3.0)),
        transfer.smoothed_transfer_model(
            "c", SmoothedClassifier(_mean_brightness_model(2.0), num_samples=3), attack_samples=2
        ),
    ]


def test_matrix_has_exactly_one_row_per_source_target_eps_and_step():
    x, y = _separable_data(20)
    models = _models()
    eps_values = [2 / 255, 8 / 255, 30 / 255]
    frame = transfer.transfer_matrix(models, x, y, eps_values, steps=3, batch_size=8)
    assert tuple(frame.columns) == transfer.COLUMNS
    expected = set(itertools.product("abc", "abc", (2.0, 8.0, 30.0), (1, 2, 3)))
    got = set(zip(frame.source, frame.target, frame.eps_255, frame.k, strict=True))
    assert got == expected and len(frame) == len(expected)
    assert (frame["num_images"] == 20).all()
    assert frame["adversarial_accuracy"].between(0, 1).all()


def test_large_eps_white_box_attack_defeats_the_source_and_transfers():
    x, y = _separable_data(40)
    models = _models()[:2]
    frame = transfer.transfer_matrix(models, x, y, [2 / 255, 60 / 255], steps=5, batch_size=16)
    clean = frame.groupby("target")["clean_accuracy"].first()
    assert (clean == 1.0).all()
    strong = frame[(frame.eps_255 == 60) & (frame.k == 5)]
    assert (strong["adversarial_accuracy"] < 0.2).all()  # the same direction fools both
    weak = frame[(frame.eps_255 == 2) & (frame.k == 5)]
    assert (weak["adversarial_accuracy"] > 0.9).all()
    by_k = frame[(frame.source == "a") & (frame.target == "a") & (frame.eps_255 == 60)]
    assert np.all(np.diff(by_k.sort_values("k")["adversarial_accuracy"]) <= 1e-9)


def test_iterates_are_the_steps_of_one_pgd_run():
    x, y = _separable_data(8)
    model = _mean_brightness_model(1.0)
    eps = 8 / 255
    iterates = transfer.pgd_iterates(model, x, y, eps, steps=4, batch_size=8, seed=3)
    assert iterates.shape == (4, *x.shape)
    assert np.abs(iterates - x).max() <= eps + 1e-6
    assert iterates.min() >= 0 and iterates.max() <= 1
    start = random_start_points(x, eps, "linf", 0.0, 1.0, 3)
    one_run = pgd_perturb(
        model, tf.constant(x), tf.constant(y), tf.constant(start), eps, 2.5 * eps / 4, 4
    )
    np.testing.assert_allclose(iterates[-1], one_run.numpy(), atol=1e-6)


def test_table3_view():
    x, y = _separable_data(10)
    frame = transfer.transfer_matrix(_models()[:2], x, y, [8 / 255], steps=2, batch_size=8)
    table = transfer.transfer_table(frame, eps_255=8)
    assert len(table) == 4 and list(table.columns) == [
        "source",
        "target",
        "clean_accuracy",
        "adversarial_accuracy",
    ]
    with pytest.raises(ValueError, match="no transfer rows"):
        transfer.transfer_table(frame, eps_255=30)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"eps_values": [0.0]}, "eps_values"),
        ({"steps": 0}, "steps"),
        ({"y": np.zeros(3, "int64")}, "one label per image"),
        ({"x": np.full((10, *SHAPE), 2.0, "float32")}, r"\[0, 1\]"),
    ],
)
def test_bad_inputs_raise(change, message):
    x, y = _separable_data(10)
    kwargs = {"x": x, "y": y, "eps_values": [8 / 255], "steps": 2, **change}
    with pytest.raises(ValueError, match=message):
        transfer.transfer_matrix(_models()[:2], **kwargs)


def test_duplicate_names_raise():
    x, y = _separable_data(4)
    model = transfer.keras_transfer_model("same", _mean_brightness_model(1.0))
    with pytest.raises(ValueError, match="distinct names"):
        transfer.transfer_matrix([model, model], x, y)


def test_figures_one_png_per_source(tmp_path):
    x, y = _separable_data(10)
    frame = transfer.transfer_matrix(_models()[:2], x, y, [2 / 255, 8 / 255], steps=2)
    paths = plotting_transfer.write_transfer_figures(frame, tmp_path)
    assert sorted(p.name for p in paths) == ["transfer_a.png", "transfer_b.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["transfer_a.png", "transfer_b.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in paths)
