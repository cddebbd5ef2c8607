"""DistillerModel: frozen teacher, moving student, the loss by hand, config round trip."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_takd.distillation import (
    DistillerModel,
    TrainConfig,
    distil,
    make_optimizer,
    soft_labels,
    train_on_labels,
)


def _dense(seed, name):
    """A small logits model without dropout, so a training step is deterministic."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(8, activation="tanh")(inputs)
    return keras.Model(inputs, keras.layers.Dense(4)(hidden), name=name)


@pytest.fixture
def batch():
    rng = np.random.default_rng(1)
    return rng.normal(size=(16, 6)).astype("float32"), rng.integers(0, 4, 16)


def _log_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def _one_step(distiller, data):
    history = distiller.fit(tf.data.Dataset.from_tensors(data), epochs=1, verbose=0, shuffle=False)
    return {k: v[0] for k, v in history.history.items()}


def test_step_freezes_teacher_and_moves_student(batch):
    x, y = batch
    teacher, student = _dense(0, "teacher"), _dense(1, "student")
    teacher_before = [w.copy() for w in teacher.get_weights()]
    student_before = [w.copy() for w in student.get_weights()]
    distiller = DistillerModel(student, teacher, temperature=5.0)
    distiller.compile(optimizer=keras.optimizers.SGD(0.5))
    _one_step(distiller, (x, y))
    for before, after in zip(teacher_before, teacher.get_weights(), strict=True):
        np.testing.assert_array_equal(before, after)
    moved = [
        not np.allclose(b, a) for b, a in zip(student_before, student.get_weights(), strict=True)
    ]
    assert all(moved)
    assert not teacher.trainable
    assert len(distiller.trainable_variables) == len(student.trainable_variables)


@pytest.mark.parametrize("weight, scale", [(1.0, False), (0.3, True), (0.0, False)])
def test_loss_equals_hand_computation(batch, weight, scale):
    x, y = batch
    temperature = 4.0
    teacher, student = _dense(0, "teacher"), _dense(1, "student")
    z_s = student.predict(x, verbose=0).astype("float64")
    p_t = soft_labels(teacher, x, temperature).astype("float64")
    soft = -np.mean(np.sum(p_t * _log_softmax(z_s / temperature), axis=1))
    hard = -np.mean(_log_softmax(z_s)[np.arange(len(y)), y])
    expected = (1 - weight) * hard + weight * (temperature**2 if scale else 1.0) * soft

    distiller = DistillerModel(student, teacher, temperature, weight, scale)
    distiller.compile(optimizer=keras.optimizers.SGD(0.1))
    metrics = _one_step(distiller, (x, y, p_t.astype("float32")))
    assert metrics["loss"] == pytest.approx(expected, rel=1e-5)
    assert metrics["soft_loss"] == pytest.approx(soft, rel=1e-5)
    assert metrics["hard_loss"] == pytest.approx(hard, rel=1e-5)


def test_live_teacher_equals_cached_soft_labels(batch):
    x, y = batch
    results = []
    for cached in (True, False):
        teacher, student = _dense(0, "teacher"), _dense(1, "student")
        distiller = DistillerModel(student, teacher, temperature=3.0)
        distiller.compile(optimizer=keras.optimizers.SGD(0.1))
        data = (x, y, soft_labels(teacher, x, 3.0)) if cached else (x, y)
        results.append(_one_step(distiller, data)["loss"])
    assert results[0] == pytest.approx(results[1], rel=1e-5)


def test_live_soft_targets_need_a_teacher(batch):
    distiller = DistillerModel(_dense(1, "student"), None, temperature=3.0)
    distiller.compile(optimizer=keras.optimizers.SGD(0.1))
    with pytest.raises(ValueError, match="need a teacher"):
        _one_step(distiller, batch)


def test_config_round_trip_keeps_settings_and_predictions(batch, tmp_path):
    x, _ = batch
    distiller = DistillerModel(_dense(1, "student"), _dense(0, "teacher"), 7.0, 0.25, True)
    distiller(x[:1])
    distiller.save(tmp_path / "d.keras")
    loaded = keras.saving.load_model(tmp_path / "d.keras")
    assert isinstance(loaded, DistillerModel)
    assert (loaded.temperature, loaded.distil_weight, loaded.scale_soft_loss) == (7.0, 0.25, True)
    np.testing.assert_allclose(
        loaded.predict(x, verbose=0), distiller.predict(x, verbose=0), rtol=1e-6
    )
    assert [m.name for m in loaded.metrics] == ["loss", "soft_loss", "hard_loss", "accuracy"]


@pytest.mark.parametrize(
    "kwargs, message",
    [({"temperature": 0.0}, "temperature"), ({"distil_weight": 1.5}, "distil_weight")],
)
def test_bad_constructor_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DistillerModel(_dense(1, "student"), **kwargs)


@pytest.mark.parametrize(
    "field, value",
    [
        ("epochs", 0),
        ("learning_rate", 0.0),
        ("soft_targets", "lazy"),
        ("distil_weight", -0.1),
        ("momentum", 1.0),
    ],
)
def test_train_config_validation(field, value):
    with pytest.raises(ValueError, match=field):
        TrainConfig(**{field: value})


def test_optimizer_is_nesterov_sgd_with_inverse_time_decay():
    optimizer = make_optimizer(TrainConfig(learning_rate=0.01, lr_decay=1e-2))
    assert optimizer.nesterov and optimizer.momentum == pytest.approx(0.9)
    assert float(optimizer.learning_rate) == pytest.approx(0.01)
    schedule = optimizer._learning_rate
    assert float(schedule(100)) == pytest.approx(0.01 / (1 + 1e-2 * 100))


def test_teacher_then_student_learn_on_mnist(mnist_small):
    """Two epochs each on 2,000 images: the teacher learns at T, the student learns from it."""
    x, y, x_test, y_test = mnist_small
    from keras_takd.models import build_model

    config = TrainConfig(epochs=2, batch_size=64, learning_rate=0.05, seed=0)
    keras.utils.set_random_seed(0)
    teacher = build_model("mnist")
    train_on_labels(teacher, x, y, 2.0, config, verbose=0)
    teacher_accuracy = np.mean(teacher.predict(x_test, verbose=0).argmax(1) == y_test)
    student = build_model("mnist")
    history = distil(student, teacher, x, y, 2.0, config, verbose=0)
    student_accuracy = np.mean(student.predict(x_test, verbose=0).argmax(1) == y_test)
    assert teacher_accuracy > 0.7, teacher_accuracy  # chance is 0.1
    assert student_accuracy > 0.7, student_accuracy
    assert set(history.history) == {"loss", "soft_loss", "hard_loss", "accuracy"}
