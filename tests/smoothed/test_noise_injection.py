"""keras_takd.smoothed.noise_injection: PNI / CNI of arXiv:1911.07198 and arXiv:2003.02188."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_takd.core.models import carlini_cnn
from keras_takd.smoothed import noise_injection as ni

NOISE_VARIANTS = [("white", "layer"), ("colored", "layer"), ("colored", "filter")]
TINY_PARAMS = (4, 4, 8, 8, 16, 16)


@pytest.fixture(scope="module")
def plain_cnn():
    keras.utils.set_random_seed(0)
    return carlini_cnn((16, 16, 1), TINY_PARAMS, name="tiny_cnn")


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).random((4, 16, 16, 1)).astype("float32")


@pytest.mark.parametrize("noise, correlation", NOISE_VARIANTS)
def test_noise_varies_outputs_and_deterministic_mode_removes_it(
    plain_cnn, images, noise, correlation
):
    model = ni.add_weight_noise(plain_cnn, noise=noise, correlation=correlation, seed=1)
    assert len(ni.noisy_layers(model)) == 7  # four convolutions, three dense layers
    first, second = np.asarray(model(images)), np.asarray(model(images))
    assert np.abs(first - second).max() > 1e-3
    with ni.deterministic_mode(model):
        # Noise off: exactly the source network, whose weights were copied.
        np.testing.assert_array_equal(np.asarray(model(images)), np.asarray(plain_cnn(images)))
    assert not any(layer.deterministic for layer in ni.noisy_layers(model))


def test_deterministic_switch_reaches_compiled_predict(plain_cnn, images):
    model = ni.add_weight_noise(plain_cnn, noise="white", seed=1)
    compiled_a = model.predict(images, verbose=0)
    compiled_b = model.predict(images, verbose=0)
    assert np.abs(compiled_a - compiled_b).max() > 1e-3  # fresh noise at every call
    expected = np.asarray(plain_cnn(images))
    assert ni.set_deterministic(model) == 7
    np.testing.assert_array_equal(model.predict(images, verbose=0), expected)
    np.testing.assert_array_equal(model.predict(images, verbose=0), expected)
    ni.set_deterministic(model, False)
    assert np.abs(model.predict(images, verbose=0) - expected).max() > 1e-3


def test_same_seed_same_noise_stream(plain_cnn, images):
    a = ni.add_weight_noise(plain_cnn, noise="colored", seed=5)
    b = ni.add_weight_noise(plain_cnn, noise="colored", seed=5)
    first_a, first_b = np.asarray(a(images)), np.asarray(b(images))
    np.testing.assert_allclose(first_a, first_b, rtol=1e-6, atol=1e-6)
    assert np.abs(np.asarray(a(images)) - first_a).max() > 1e-3


@pytest.mark.parametrize("noise, correlation", NOISE_VARIANTS)
def test_gradients_reach_noise_parameters_and_inputs(plain_cnn, images, noise, correlation):
    model = ni.add_weight_noise(plain_cnn, noise=noise, correlation=correlation, seed=2)
    labels = tf.constant([0, 1, 2, 3])
    x = tf.constant(images)
    noise_vars = [
        v for layer in ni.noisy_layers(model) for v in layer.trainable_weights if "noise" in v.path
    ]
    assert len(noise_vars) == 7 * (1 if noise == "white" else 2)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_mean(
            keras.losses.sparse_categorical_crossentropy(labels, model(x), from_logits=True)
        )
    grads = tape.gradient(loss, [x, *noise_vars])
    for grad in grads:
        assert grad is not None
        assert np.all(np.isfinite(grad)) and np.abs(grad).max() > 0
    # With the noise off, the noise parameters get no gradient at all.
    ni.set_deterministic(model)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(
            keras.losses.sparse_categorical_crossentropy(labels, model(x), from_logits=True)
        )
    for grad in tape.gradient(loss, noise_vars):
        assert grad is None or np.abs(grad).max() == 0


def _sample_many(layer, draws: int) -> np.ndarray:
    """Draws `draws` kernel-noise samples inside one compiled while loop."""

    @tf.function
    def sample(n):
        samples = tf.TensorArray(tf.float32, size=n)
        for i in tf.range(n):
            samples = samples.write(i, layer.sample_kernel_noise())
        return samples.stack()

    return np.asarray(sample(tf.constant(draws)))


def _pgd(model, x, y, eps=0.1, step=0.05, steps=3):
    """A few L-inf PGD steps with a fresh noise draw per step (test helper only)."""
    x_adv = x
    for _ in range(steps):
        with tf.GradientTape() as tape:
            tape.watch(x_adv)
            logits = model(x_adv)
            loss = tf.reduce_sum(
                keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
            )
        grad = tape.gradient(loss, x_adv)
        x_adv = tf.clip_by_value(x_adv + step * tf.sign(grad), x - eps, x + eps)
        x_adv = tf.clip_by_value(x_adv, 0.0, 1.0)
    return x_adv


def test_pgd_adversarial_training_updates_weights_and_noise(plain_cnn, images):
    model = ni.cni_model(
        "carlini_cnn", noise="colored", seed=3, input_shape=(16, 16, 1), params=TINY_PARAMS
    )
    model.compile(
        optimizer=keras.optimizers.SGD(0.1),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    layer = ni.noisy_layers(model)[0]
    before = [np.array(v) for v in (layer.kernel, layer.noise_scale, layer.noise_factor)]
    x, y = tf.constant(images), tf.constant([0, 1, 2, 3])
    x_adv = _pgd(model, x, y)
    assert 0 < float(tf.reduce_max(tf.abs(x_adv - x))) <= 0.1 + 1e-6
    loss = model.train_on_batch(tf.concat([x, x_adv], 0), tf.concat([y, y], 0))
    assert np.isfinite(loss)
    after = [np.array(v) for v in (layer.kernel, layer.noise_scale, layer.noise_factor)]
    for old, new in zip(before, after, strict=True):
        assert np.abs(new - old).max() > 0


@pytest.mark.parametrize("correlation", ["layer", "filter"])
def test_colored_noise_has_the_learned_covariance(correlation):
    rng = np.random.default_rng(0)
    layer = ni.NoisyDense(3, noise="colored", rank=2, correlation=correlation, seed=11)
    layer.build((None, 4))
    layer.noise_scale.assign(rng.uniform(0.2, 0.6, (4, 3)).astype("float32"))
    layer.noise_factor.assign(rng.normal(0, 0.5, layer.noise_factor.shape).astype("float32"))
    draws = 4000
    spread = float(np.std(np.asarray(layer.kernel)))
    samples = _sample_many(layer, draws) / spread  # [draws, 4, 3]
    d2 = np.asarray(layer.noise_scale).ravel() ** 2
    factor = np.asarray(layer.noise_factor)
    if correlation == "layer":
        expected = np.diag(d2) + factor @ factor.T  # over the 12 row-major kernel entries
    else:
        # Each output column j: diag(d_j^2) + F F^T; different columns are independent.
        expected = np.diag(d2)
        for j in range(3):
            idx = np.arange(4) * 3 + j
            expected[np.ix_(idx, idx)] += factor @ factor.T
    empirical = np.cov(samples.reshape(draws, 12), rowvar=False)
    np.testing.assert_allclose(empirical, expected, atol=0.12)
    assert np.abs(samples.mean(0)).max() < 0.1


def test_white_noise_is_independent_per_weight():
    layer = ni.NoisyDense(2, noise="white", seed=4)
    layer.build((None, 3))
    spread = float(np.std(np.asarray(layer.kernel)))
    samples = _sample_many(layer, 3000).reshape(3000, 6) / spread
    np.testing.assert_allclose(np.cov(samples, rowvar=False), 0.25**2 * np.eye(6), atol=0.01)


@pytest.mark.parametrize("noise, correlation", NOISE_VARIANTS)
def test_save_load_round_trip(tmp_path, plain_cnn, images, noise, correlation):
    model = ni.add_weight_noise(plain_cnn, noise=noise, correlation=correlation, seed=7)
    layer = ni.noisy_layers(model)[2]
    layer.noise_scale.assign(np.full(layer.noise_scale.shape, 0.4, "float32"))
    layer.deterministic = True
    path = tmp_path / "cni.keras"
    model.save(path)
    loaded = keras.models.load_model(path)

    for old, new in zip(ni.noisy_layers(model), ni.noisy_layers(loaded), strict=True):
        assert type(new) is type(old)
        assert new.get_config() == old.get_config()
        assert [v.path for v in new.weights] == [v.path for v in old.weights]
        for a, b in zip(old.weights, new.weights, strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert ni.noisy_layers(loaded)[2].deterministic
    assert not ni.noisy_layers(loaded)[0].deterministic
    ni.set_deterministic(model)
    ni.set_deterministic(loaded)
    np.testing.assert_array_equal(np.asarray(loaded(images)), np.asarray(model(images)))
    ni.set_deterministic(loaded, False)
    assert np.abs(np.asarray(loaded(images)) - np.asarray(loaded(images))).max() > 1e-3


def test_layer_config_keeps_every_argument():
    layer = ni.NoisyConv2D(
        5,
        (3, 2),
        strides=2,
        padding="same",
        activation="relu",
        use_bias=False,
        noise="colored",
        rank=3,
        correlation="filter",
        initial_scale=0.1,
        initial_factor=0.02,
        deterministic=True,
        seed=9,
        name="c",
    )
    clone = ni.NoisyConv2D.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    out = clone(np.zeros((1, 6, 6, 2), "float32"))
    assert tuple(out.shape) == (1, 3, 3, 5)
    assert clone.deterministic
    assert tuple(clone.noise_factor.shape) == (3 * 2 * 2, 3)


def test_cni_wide_resnet_makes_every_conv_and_dense_noisy():
    model = ni.cni_model(
        "wide_resnet", noise="colored", correlation="filter", depth=10, widen_factor=1, seed=0
    )
    kinds = {type(layer).__name__ for layer in model.layers}
    assert "Conv2D" not in kinds and "Dense" not in kinds
    # Stem, 3 blocks x 2 convs, 2 shortcuts (16 -> 16 has none), logits.
    assert len(ni.noisy_layers(model)) == 1 + 6 + 2 + 1
    x = np.random.default_rng(1).random((2, 32, 32, 3)).astype("float32")
    assert np.abs(np.asarray(model(x)) - np.asarray(model(x))).max() > 1e-4


def test_dense_noise_can_differ_from_conv_noise(plain_cnn):
    model = ni.add_weight_noise(plain_cnn, noise="colored", dense_noise="white", seed=0)
    kinds = {(type(layer).__name__, layer.noise) for layer in ni.noisy_layers(model)}
    assert kinds == {("NoisyConv2D", "colored"), ("NoisyDense", "white")}
    same = ni.add_weight_noise(plain_cnn, noise="colored", seed=0)
    assert {layer.noise for layer in ni.noisy_layers(same)} == {"colored"}
    with pytest.raises(ValueError, match="noise"):
        ni.add_weight_noise(plain_cnn, dense_noise="pink")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"noise": "pink"}, "noise"),
        ({"rank": 0}, "rank"),
        ({"correlation": "channel"}, "correlation"),
        ({"initial_scale": -0.1}, "initial_scale"),
        ({"initial_factor": float("nan")}, "initial_factor"),
    ],
)
def test_bad_noise_arguments_raise(plain_cnn, kwargs, match):
    with pytest.raises(ValueError, match=match):
        ni.NoisyDense(3, **kwargs)
    with pytest.raises(ValueError, match=match):
        ni.add_weight_noise(plain_cnn, **kwargs)


def test_bad_models_raise():
    inputs = keras.Input((4,))
    no_weights = keras.Model(inputs, keras.layers.ReLU()(inputs))
    with pytest.raises(ValueError, match="no Conv2D or Dense"):
        ni.add_weight_noise(no_weights)
    regularized = keras.Model(inputs, keras.layers.Dense(2, kernel_regularizer="l2")(inputs))
    with pytest.raises(ValueError, match="kernel_regularizer"):
        ni.add_weight_noise(regularized)
    with pytest.raises(ValueError, match="base"):
        ni.cni_model("resnet50")
