"""Tests of the batched Carlini & Wagner L-infinity attack (arXiv:1608.04644)."""

import numpy as np
import pytest
import tensorflow as tf

from keras_takd.attacks import carlini_wagner_linf
from keras_takd.attacks.optimizers import _COMPILED_CACHE
from tests.attacks import _reference

# Fewer Adam steps per c than the original's 1,000, and c starting at 1e-3 instead of 1e-5,
# keep the MNIST tests within seconds (the last, failing solve alone runs every c up to 20).
FAST = {"max_iterations": 50, "initial_const": 1e-3}


@pytest.fixture
def linear_problem(linear_two_class_model):
    """Six 8x8 images well inside the box, all of class 1 under a random linear model."""
    rng = np.random.default_rng(0)
    w = rng.normal(size=(8, 8, 1)).astype(np.float32)
    x = rng.uniform(0.35, 0.65, size=(6, 8, 8, 1)).astype(np.float32)
    scores = x.reshape(len(x), -1) @ w.ravel()
    b = float(3.0 - scores.min())
    margins = scores + b
    return linear_two_class_model(w, b), x, np.ones(len(x), np.int64), margins, w


def test_linear_model_closed_form_optimum(linear_problem):
    model, x, y, margins, w = linear_problem
    optimum = margins / np.abs(w).sum()
    # Far enough inside the box: the optimum never needs a pixel to leave [0, 1].
    assert optimum.max() < 0.3

    faithful = carlini_wagner_linf(model, x, y, max_iterations=200)
    refined = carlini_wagner_linf(model, x, y, max_iterations=200, refine=True)

    assert faithful.success.all() and refined.success.all()
    assert np.all(faithful.linf >= optimum * 0.999)
    assert np.all(faithful.linf <= 1.25 * optimum), faithful.linf / optimum
    assert np.all(refined.linf >= optimum * 0.999)
    assert np.all(refined.linf <= 1.02 * optimum), refined.linf / optimum


def test_higher_confidence_gives_larger_margin(linear_problem):
    model, x, y, _, _ = linear_problem
    margins = {}
    for confidence in (0.0, 2.0):
        result = carlini_wagner_linf(model, x, y, confidence=confidence, max_iterations=100)
        assert result.success.all()
        logits = model.predict(result.x_adv, verbose=0)
        margins[confidence] = logits[:, 0] - logits[:, 1]
    assert np.all(margins[2.0] >= 2.0 - 1e-3)
    assert np.all(margins[2.0] > margins[0.0] + 1.0)


@pytest.mark.parametrize("targeted", [False, True])
def test_mnist_success_and_box(mnist_attack_model, mnist_attack_batch, targeted):
    x, y = mnist_attack_batch
    target = (y + 1) % 10 if targeted else None
    result = carlini_wagner_linf(
        mnist_attack_model, x, y, targeted=targeted, target=target, batch_size=64, **FAST
    )
    assert result.success.mean() >= 0.99
    assert result.x_adv.min() >= 0.0 and result.x_adv.max() <= 1.0
    predicted = np.argmax(mnist_attack_model.predict(result.x_adv, verbose=0), axis=-1)
    if targeted:
        np.testing.assert_array_equal(result.success, predicted == target)
        np.testing.assert_array_equal(result.target, target)
    else:
        np.testing.assert_array_equal(result.success, predicted != y)
    # Returned distortions describe the returned images.
    np.testing.assert_allclose(result.linf, np.abs(result.x_adv - x).max(axis=(1, 2, 3)))
    assert np.all(result.linf[result.success] < 1.0)


def test_batch_invariance(mnist_attack_model, mnist_attack_batch):
    x, y = mnist_attack_batch[0][:3], mnist_attack_batch[1][:3]
    options = {"max_iterations": 20, "initial_const": 1e-2, "largest_const": 2.0}
    # A fixed batch shape: each example's arithmetic is independent of its batch mates.
    together = carlini_wagner_linf(mnist_attack_model, x, y, batch_size=3, compact=False, **options)
    alone = [
        carlini_wagner_linf(
            mnist_attack_model, x[i : i + 1], y[i : i + 1], batch_size=3, compact=False, **options
        )
        for i in range(len(x))
    ]
    np.testing.assert_array_equal(together.success, [r.success[0] for r in alone])
    np.testing.assert_array_equal(together.const, [r.const[0] for r in alone])
    np.testing.assert_allclose(
        together.x_adv, np.concatenate([r.x_adv for r in alone]), rtol=0, atol=1e-6
    )
    # Shrinking the batch as examples finish changes only float round-off.
    compacted = carlini_wagner_linf(mnist_attack_model, x, y, batch_size=3, **options)
    np.testing.assert_array_equal(compacted.success, together.success)
    np.testing.assert_allclose(compacted.linf.mean(), together.linf.mean(), rtol=0.05)


@pytest.mark.parametrize(
    "options",
    [
        # Success checks that fail mid-solve (the step is kept) ...
        {"learning_rate": 0.05, "max_iterations": 50, "abort_early": True},
        # ... and at the last step of a c (c must rise before the next step).
        {"learning_rate": 0.2, "max_iterations": 20, "abort_early": False},
    ],
    ids=["failed_checks_mid_solve", "failed_checks_at_last_step"],
)
def test_matches_the_original_control_flow(linear_problem, options):
    model, x, y, _, w = linear_problem
    options = options | {"initial_const": 1e-3, "largest_const": 1.0}
    x, y = x[:4], y[:4]
    batched = carlini_wagner_linf(model, x, y, batch_size=4, compact=False, **options)
    linear = _reference.LinearModel(w, model.layers[-1].get_weights()[1][1])
    failed_checks = 0
    for i in range(len(x)):
        image, const, failed, closest = _reference.linf_attack(
            linear,
            x[i : i + 1].astype(np.float64),
            np.ones(1, np.int64),
            lr=options["learning_rate"],
            iters=options["max_iterations"],
            initial_const=options["initial_const"],
            largest_const=options["largest_const"],
            abort_early=options["abort_early"],
        )
        assert closest > 1e-3  # no success test near its threshold: float32 cannot flip one
        failed_checks += failed
        assert batched.success[i] == (image is not None)
        np.testing.assert_allclose(batched.x_adv[i], image[0], rtol=0, atol=1e-4)
        assert batched.const[i] == pytest.approx(const, rel=1e-6)
    # The settings make the original's success check fail at times, so the test covers the
    # batched attack's handling of it.
    assert failed_checks > 0


def test_eager_and_compiled_agree(linear_problem):
    model, x, y, _, _ = linear_problem
    options = {"max_iterations": 15, "initial_const": 0.1, "largest_const": 1.0}
    compiled = carlini_wagner_linf(model, x[:2], y[:2], **options)
    tf.config.run_functions_eagerly(True)
    try:
        eager = carlini_wagner_linf(model, x[:2], y[:2], **options)
    finally:
        tf.config.run_functions_eagerly(False)
    assert compiled.success.all()
    np.testing.assert_array_equal(eager.success, compiled.success)
    np.testing.assert_allclose(eager.x_adv, compiled.x_adv, rtol=0, atol=1e-5)
    np.testing.assert_allclose(eager.const, compiled.const)


def test_one_trace_serves_every_batch_and_call(linear_problem):
    model, x, y, _, _ = linear_problem
    # Batches of 4 and 2 leave 1, 2 or 4 examples running between chunks: all one trace.
    for batch_size in (4, 2):
        carlini_wagner_linf(model, x, y, batch_size=batch_size, max_iterations=20, verbose=True)
    chunks = [f for key, f in _COMPILED_CACHE[model].items() if key[-1].max_iterations == 20]
    assert len(chunks) == 1
    assert chunks[0].experimental_get_tracing_count() == 1


def test_first_solve_failure_returns_original(linear_problem):
    model, x, y, _, _ = linear_problem
    result = carlini_wagner_linf(
        model, x, y, max_iterations=2, initial_const=1e-5, largest_const=2e-5
    )
    assert not result.success.any()
    np.testing.assert_array_equal(result.x_adv, x)
    assert np.all(result.linf == 0)


BAD_ARGUMENTS = {
    "negative max_iterations": (lambda a: a.update(max_iterations=-1), "max_iterations"),
    "zero learning_rate": (lambda a: a.update(learning_rate=0.0), "learning_rate"),
    "largest below initial const": (lambda a: a.update(largest_const=1e-6), "largest_const"),
    "decrease_factor of 1": (lambda a: a.update(decrease_factor=1.0), "decrease_factor"),
    "empty box": (lambda a: a.update(clip_min=1.0, clip_max=0.0), "clip_min"),
    "x outside the box": (lambda a: a.update(x=a["x"] + 1.0), "inside"),
    "flat x": (lambda a: a.update(x=a["x"].reshape(len(a["x"]), -1)), "shape"),
    "short y": (lambda a: a.update(y=a["y"][:-1]), "shape"),
    "targeted without target": (lambda a: a.update(targeted=True), "target"),
    "probabilities model": (
        lambda a: a.update(model=lambda images, m=a["model"]: tf.nn.softmax(m(images))),
        "probabilities",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_ARGUMENTS))
def test_bad_arguments_raise(linear_problem, name):
    model, x, y, _, _ = linear_problem
    arguments = {"model": model, "x": x, "y": y, "max_iterations": 5}
    change, message = BAD_ARGUMENTS[name]
    change(arguments)
    with pytest.raises(ValueError, match=message):
        carlini_wagner_linf(**arguments)
