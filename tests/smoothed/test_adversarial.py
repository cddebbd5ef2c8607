"""PGD adversarial training and adversarial distillation (keras_takd.smoothed.adversarial)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_takd.core.distillation import DistillerModel
from keras_takd.smoothed import adversarial
from keras_takd.smoothed.adversarial import (
    AdversarialConfig,
    AdversarialDistillerModel,
    PGDTrainingModel,
    linf_pgd,
    make_adam_optimizer,
)
from keras_takd.smoothed.noise_injection import cni_model, noisy_layers

SHAPE = (6, 6, 3)
_NOISY_WEIGHTS = ("kernel", "noise_scale", "noise_factor")


def _linear_student(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(SHAPE)
    logits = keras.layers.Dense(4)(keras.layers.Flatten()(inputs))
    return keras.Model(inputs, logits)


def _batch(n=8, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(n, *SHAPE)).astype("float32")
    y = rng.integers(0, 4, n).astype("int64")
    soft = rng.dirichlet(np.ones(4), n).astype("float32")
    return x, y, soft


def _loss_and_grads(distiller, x, y, soft, x_adv):
    with tf.GradientTape() as tape:
        loss = distiller.combined_loss(x, y, soft, x_adv)[0]
    grads = tape.gradient(loss, distiller.student.trainable_variables)
    return float(loss), [g.numpy() for g in grads]


def _hinton(logits, y, soft, temperature, w):
    """(1 - w) CE(y, softmax(z)) + w T^2 CE(p_t, softmax(z / T)), batch mean, in NumPy."""

    def log_softmax(z):
        z = z - z.max(axis=-1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))

    hard = -log_softmax(logits)[np.arange(len(y)), y].mean()
    soft_term = -(soft * log_softmax(logits / temperature)).sum(axis=-1).mean()
    return (1 - w) * hard + w * temperature**2 * soft_term


def test_zero_perturb_weight_ignores_perturbed_images_and_equals_distiller_model():
    x, y, soft = _batch()
    student = _linear_student()
    distiller = AdversarialDistillerModel(
        student, temperature=2.0, distil_weight=0.75, perturb_distil_weight=0.0
    )
    loss_a, grads_a = _loss_and_grads(distiller, x, y, soft, x)
    loss_b, grads_b = _loss_and_grads(distiller, x, y, soft, np.clip(x + 0.3, 0, 1))
    assert loss_a == pytest.approx(loss_b)
    for a, b in zip(grads_a, grads_b, strict=True):
        np.testing.assert_allclose(a, b)
    parent = DistillerModel(student, temperature=2.0, distil_weight=0.75, scale_soft_loss=True)
    expected = parent._distillation_losses(y, soft, student(x, training=True))[0]
    assert loss_a == pytest.approx(float(expected), rel=1e-6)


def test_both_terms_enter_the_loss_as_the_hand_combination():
    x, y, soft = _batch()
    x_adv = np.clip(x + np.sign(np.random.default_rng(1).normal(size=x.shape)) * 0.1, 0, 1)
    student = _linear_student()
    distiller = AdversarialDistillerModel(
        student, temperature=3.0, distil_weight=0.75, perturb_distil_weight=0.25
    )
    loss, grads = _loss_and_grads(distiller, x, y, soft, x_adv.astype("float32"))
    clean = _hinton(student(x).numpy(), y, soft, 3.0, 0.75)
    perturbed = _hinton(student(x_adv.astype("float32")).numpy(), y, soft, 3.0, 0.75)
    assert loss == pytest.approx(0.75 * clean + 0.25 * perturbed, rel=1e-5)
    # The perturbed images move the gradient once their term has weight.
    _, grads_clean_copy = _loss_and_grads(distiller, x, y, soft, x)
    assert not np.allclose(grads[0], grads_clean_copy[0])


def test_linf_pgd_stays_in_ball_and_box_and_raises_the_loss():
    x, y, _ = _batch(16)
    student = _linear_student()
    eps = 8 / 255
    x_adv = linf_pgd(student, x, y, eps, 2 / 255, 10, keras.random.SeedGenerator(0)).numpy()
    assert np.abs(x_adv - x).max() <= eps + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    ce = keras.losses.sparse_categorical_crossentropy
    before = float(np.mean(ce(y, student(x), from_logits=True)))
    after = float(np.mean(ce(y, student(x_adv), from_logits=True)))
    assert after > before


def test_adversarial_distillation_step_moves_student_and_tracks_both_terms():
    x, y, soft = _batch(16)
    student = _linear_student()
    before = [w.copy() for w in student.get_weights()]
    config = AdversarialConfig(epochs=1, batch_size=8, steps=3, lr_milestones=())
    history = adversarial.adversarial_distil(student, x, y, soft, config, verbose=0)
    assert {"loss", "perturbed_loss", "adv_accuracy", "soft_loss", "hard_loss"} <= set(
        history.history
    )
    assert history.history["perturbed_loss"][0] > 0
    assert any(not np.allclose(a, b) for a, b in zip(before, student.get_weights(), strict=True))


@pytest.mark.slow  # trains
def test_pgd_training_moves_weights_and_noise_parameters():
    keras.utils.set_random_seed(0)
    model = cni_model(
        base="carlini_cnn", input_shape=(16, 16, 3), params=(4, 4, 4, 4, 8, 8), seed=0
    )
    first = noisy_layers(model)[0]  # a colored-noise convolution
    before = {name: getattr(first, name).numpy().copy() for name in _NOISY_WEIGHTS}
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(16, 16, 16, 3)).astype("float32")
    y = rng.integers(0, 10, 16)
    config = AdversarialConfig(epochs=1, batch_size=8, steps=2, learning_rate=1e-2)
    history = adversarial.adversarial_train(model, x, y, config, verbose=0)
    assert {"loss", "accuracy", "adv_accuracy"} <= set(history.history)
    for name in _NOISY_WEIGHTS:
        assert not np.allclose(before[name], getattr(first, name).numpy()), name


def test_adversarial_distiller_survives_save_and_load(tmp_path):
    x, _, _ = _batch(4)
    distiller = AdversarialDistillerModel(
        _linear_student(), temperature=4.0, perturb_distil_weight=0.4, eps=0.05, steps=3
    )
    distiller(x)
    distiller.save(tmp_path / "d.keras")
    loaded = keras.saving.load_model(tmp_path / "d.keras")
    assert isinstance(loaded, AdversarialDistillerModel)
    assert (loaded.perturb_distil_weight, loaded.eps, loaded.steps) == (0.4, 0.05, 3)
    assert loaded.temperature == 4.0
    np.testing.assert_allclose(loaded(x), distiller(x), rtol=1e-5, atol=1e-6)


def test_pgd_training_model_config_round_trip():
    trainer = PGDTrainingModel(_linear_student(), eps=0.1, steps=4, adversarial_weight=1.0)
    config = trainer.get_config()
    assert (config["eps"], config["steps"], config["adversarial_weight"]) == (0.1, 4, 1.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"perturb_distil_weight": 1.5},
        {"perturb_distil_weight": -0.1},
        {"distil_weight": 2.0},
        {"eps": 0.0},
        {"steps": 0},
    ],
)
def test_bad_distiller_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        AdversarialDistillerModel(_linear_student(), **kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [{"lr_milestones": (5, 3)}, {"lr_gamma": 0.0}, {"weight_decay": -1.0}, {"epochs": 0}],
)
def test_bad_config_raises(kwargs):
    with pytest.raises(ValueError):
        AdversarialConfig(**kwargs)


@pytest.mark.parametrize("value", [float("inf"), float("nan")])
@pytest.mark.parametrize("name", ["eps", "step_size"])
def test_a_non_finite_training_radius_or_step_is_refused(name, value):
    with pytest.raises(ValueError, match=f"^{name} must be > 0 and finite, got {value}$"):
        AdversarialConfig(**{name: value})
    with pytest.raises(ValueError, match=f"^{name} must be > 0 and finite, got {value}$"):
        AdversarialDistillerModel(_linear_student(), **{name: value})


def test_multistep_schedule_and_weight_decay():
    config = AdversarialConfig(learning_rate=1e-3, lr_milestones=(2, 4), lr_gamma=0.5)
    optimizer = make_adam_optimizer(config, steps_per_epoch=10)
    schedule = optimizer._learning_rate
    rates = [float(schedule(step)) for step in (0, 19, 21, 39, 41)]
    np.testing.assert_allclose(rates, [1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4], rtol=1e-6)
    assert optimizer.weight_decay == pytest.approx(1e-4)


@pytest.mark.slow  # trains
def test_epoch_curves_log_hand_computed_accuracies_and_survive_a_resume(tmp_path):
    from keras_takd.attacks import projected_gradient_descent

    x, y, soft = _batch(n=24, seed=3)
    student = _linear_student()
    sets = {"train": (x[:12], y[:12]), "test": (x[12:], y[12:])}
    path = tmp_path / "curves.json"
    curves = adversarial.EpochAccuracyCurves(
        student, sets, eps=0.05, step_size=0.02, steps=3, seed=7, path=path
    )
    config = AdversarialConfig(epochs=2, batch_size=8, steps=1, lr_milestones=())
    history = adversarial.adversarial_distil(
        student, x, y, soft, config, callbacks=[curves], verbose=0
    )

    # The last epoch's numbers are the accuracies of the trained student, by hand.
    records = curves.records()
    assert [r["epoch"] for r in records] == [1, 2]
    for name, (images, labels) in sets.items():
        clean = np.argmax(student.predict(images, verbose=0), -1)
        x_adv = projected_gradient_descent(
            student, images, labels, 0.05, 0.02, 3, seed=7, keep_failed=True
        ).x_adv
        adv = np.argmax(student.predict(x_adv, verbose=0), -1)
        assert records[-1][f"{name}_clean_accuracy"] == pytest.approx(np.mean(clean == labels))
        assert records[-1][f"{name}_pgd_accuracy"] == pytest.approx(np.mean(adv == labels))
        assert history.history[f"{name}_pgd_accuracy"] == [
            r[f"{name}_pgd_accuracy"] for r in records
        ]

    # A run resumed at epoch 2 replaces that epoch's record and keeps epoch 1's.
    first = records[0]
    curves.on_epoch_end(1, logs={})
    assert [r["epoch"] for r in curves.records()] == [1, 2]
    assert curves.records()[0] == first


def test_epoch_curves_reject_bad_sets():
    x, y, _ = _batch()
    with pytest.raises(ValueError, match="at least one"):
        adversarial.EpochAccuracyCurves(_linear_student(), {})
    with pytest.raises(ValueError, match="'train'"):
        adversarial.EpochAccuracyCurves(_linear_student(), {"train": (x, y[:3])})


@pytest.mark.parametrize("p, perturbed_keys", [(0.0, False), (0.25, True)])
def test_perturbed_metrics_are_reported_only_when_perturbed_images_are_made(p, perturbed_keys):
    x, y, soft = _batch(n=16)
    config = AdversarialConfig(epochs=1, batch_size=8, steps=1, lr_milestones=())
    history = adversarial.adversarial_distil(
        _linear_student(), x, y, soft, config, perturb_distil_weight=p, verbose=0
    )
    assert {"loss", "soft_loss", "hard_loss", "accuracy"} <= set(history.history)
    assert ("adv_accuracy" in history.history) == perturbed_keys
    assert ("perturbed_loss" in history.history) == perturbed_keys
