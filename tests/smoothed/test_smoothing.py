"""keras_takd.smoothed.smoothing: the smoothed inference of arXiv:1911.07198."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_takd.smoothed import noise_injection as ni
from keras_takd.smoothed.smoothing import (
    PREDICTION,
    SOFT_PREDICTION,
    SmoothedClassifier,
)


def _softmax(z, axis=-1):
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


class _ScriptedModel:
    """A fake randomized model: pass m returns table[m % M] for the examples it is given.

    Example i is identified by its first feature (x[i, 0] == i), so any split into batches
    sees the same per-example outputs, and `calls` counts the forward passes.
    """

    def __init__(self, table: np.ndarray):
        self.table = tf.constant(table, tf.float32)  # [M, N, C]
        self.calls = tf.Variable(0, dtype=tf.int32, trainable=False)

    def __call__(self, x):
        rows = tf.cast(tf.round(x[:, 0]), tf.int32)
        out = tf.gather(self.table[self.calls % self.table.shape[0]], rows)
        self.calls.assign_add(1)
        return out


@pytest.fixture(scope="module")
def scripted_table():
    rng = np.random.default_rng(0)
    return rng.normal(0.0, 2.0, size=(5, 3, 4)).astype("float32")  # M=5, N=3, C=4


@pytest.mark.parametrize("chunk_size, batch_size", [(1, 3), (2, 2), (5, 1), (7, 3)])
def test_both_aggregations_equal_hand_computation(scripted_table, chunk_size, batch_size):
    draws, n, classes = scripted_table.shape
    model = _ScriptedModel(scripted_table)
    smoothed = SmoothedClassifier(model, num_samples=draws, chunk_size=chunk_size)
    x = np.arange(n, dtype="float32")[:, None]
    out = smoothed.aggregate(x, temperature=2.0, batch_size=batch_size)

    votes = np.zeros((n, classes))
    for m in range(draws):
        votes[np.arange(n), scripted_table[m].argmax(-1)] += 1
    np.testing.assert_allclose(out.prediction, votes / draws, rtol=0, atol=1e-7)
    expected_soft = _softmax(scripted_table / 2.0).mean(axis=0)
    np.testing.assert_allclose(out.soft_prediction, expected_soft, rtol=1e-5, atol=1e-6)
    # Exactly M passes per batch: no extra draws from chunking.
    assert int(model.calls.numpy()) == draws * int(np.ceil(n / batch_size))

    soft_t1 = smoothed.soft_targets(x, temperature=1.0, aggregation=SOFT_PREDICTION)
    np.testing.assert_allclose(soft_t1, _softmax(scripted_table).mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(smoothed.soft_targets(x, aggregation=PREDICTION), votes / draws)
    np.testing.assert_array_equal(
        smoothed.predict(x, aggregation=PREDICTION), (votes / draws).argmax(-1)
    )


def test_accuracy_of_both_aggregations(scripted_table):
    draws, n, _ = scripted_table.shape
    smoothed = SmoothedClassifier(_ScriptedModel(scripted_table), num_samples=draws)
    x = np.arange(n, dtype="float32")[:, None]
    votes = np.zeros((n, scripted_table.shape[-1]))
    for m in range(draws):
        votes[np.arange(n), scripted_table[m].argmax(-1)] += 1
    by_votes = votes.argmax(-1)
    by_soft = _softmax(scripted_table).mean(0).argmax(-1)
    labels = by_votes.copy()
    labels[0] = (labels[0] + 1) % 4  # one vote-smoothing error
    accuracy = smoothed.accuracy(x, labels)
    assert accuracy == {
        "prediction": pytest.approx((n - 1) / n),
        "soft_prediction": pytest.approx(np.mean(by_soft == labels)),
    }
    with pytest.raises(ValueError, match="one label per input"):
        smoothed.accuracy(x, labels[:2])


def test_deterministic_model_smooths_to_its_own_outputs():
    keras.utils.set_random_seed(1)
    inputs = keras.Input((6,))
    model = keras.Model(inputs, keras.layers.Dense(4)(inputs))
    x = np.random.default_rng(1).normal(size=(9, 6)).astype("float32")
    logits = np.asarray(model(x))
    out = SmoothedClassifier(model, num_samples=3, chunk_size=2).aggregate(x, temperature=3.0)
    np.testing.assert_array_equal(out.prediction, np.eye(4)[logits.argmax(-1)])
    np.testing.assert_allclose(out.soft_prediction, _softmax(logits / 3.0), rtol=1e-5)


@pytest.fixture(scope="module")
def noisy_mlp():
    keras.utils.set_random_seed(2)
    inputs = keras.Input((8,))
    hidden = keras.layers.Dense(16, activation="relu")(inputs)
    plain = keras.Model(inputs, keras.layers.Dense(5)(hidden))
    return ni.add_weight_noise(plain, noise="colored", initial_scale=1.0, seed=3)


def test_smoothed_outputs_converge_as_m_grows(noisy_mlp):
    x = np.random.default_rng(3).normal(size=(16, 8)).astype("float32")
    repeats = 8
    spread = {}
    for m in (4, 64):
        smoothed = SmoothedClassifier(noisy_mlp, num_samples=m, chunk_size=16)
        runs = [smoothed.aggregate(x) for _ in range(repeats)]
        for name in ("prediction", "soft_prediction"):
            stacked = np.stack([getattr(run, name) for run in runs])  # [repeats, N, C]
            np.testing.assert_allclose(stacked.sum(-1), 1.0, rtol=1e-5)
            spread[name, m] = stacked.var(axis=0, ddof=1).mean()
    for name in ("prediction", "soft_prediction"):
        # Monte-Carlo variance falls as 1 / M: 16x fewer samples expected, demand 4x.
        assert spread[name, 4] > 0
        assert spread[name, 64] < spread[name, 4] / 4, spread


def test_smoothing_draws_fresh_noise_and_call_is_differentiable(noisy_mlp):
    x = tf.constant(np.random.default_rng(4).normal(size=(4, 8)).astype("float32"))
    smoothed = SmoothedClassifier(noisy_mlp, num_samples=3, chunk_size=2)
    first, second = smoothed.aggregate(np.asarray(x)), smoothed.aggregate(np.asarray(x))
    assert np.abs(first.soft_prediction - second.soft_prediction).max() > 1e-4
    with tf.GradientTape() as tape:
        tape.watch(x)
        log_probs = smoothed(x)
        loss = tf.reduce_sum(log_probs[:, 0])
    np.testing.assert_allclose(tf.reduce_sum(tf.exp(log_probs), -1), 1.0, rtol=1e-5)
    assert np.abs(tape.gradient(loss, x)).max() > 0
    with ni.deterministic_mode(noisy_mlp):
        plain = _softmax(np.asarray(noisy_mlp(x)))
        np.testing.assert_allclose(np.exp(smoothed(x)), plain, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_samples": 0}, "num_samples"),
        ({"chunk_size": -1}, "chunk_size"),
        ({"batch_size": 2.5}, "batch_size"),
        ({"aggregation": "mean"}, "aggregation"),
    ],
)
def test_bad_smoothing_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SmoothedClassifier(lambda x: x, **kwargs)


def test_bad_call_arguments_raise(scripted_table):
    smoothed = SmoothedClassifier(_ScriptedModel(scripted_table), num_samples=2)
    x = np.arange(3, dtype="float32")[:, None]
    with pytest.raises(ValueError, match="temperature"):
        smoothed.soft_targets(x, temperature=0.0)
    with pytest.raises(ValueError, match="aggregation"):
        smoothed.soft_targets(x, aggregation="votes")
    with pytest.raises(ValueError, match="non-empty"):
        smoothed.aggregate(np.zeros((0, 1), "float32"))
