"""Tests of the Carlini-Wagner L2 attack (keras_takd.attacks.carlini_wagner.l2)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_takd.attacks import carlini_wagner_l2
from tests.attacks import _reference

# Settings that reach >= 99% success on the small test CNN in a few seconds: fewer iterations
# and binary-search steps than the defaults, hence a larger learning rate and first constant.
FAST = dict(max_iterations=100, binary_search_steps=5, initial_const=1.0, learning_rate=0.1)


def _logit_margin(model, x_adv, labels):
    """max_{i != label} Z_i - Z_label: positive when the label lost."""
    logits = model.predict(x_adv, verbose=0)
    rows = np.arange(len(labels))
    own = logits[rows, labels]
    logits[rows, labels] = -np.inf
    return logits.max(axis=1) - own


@pytest.mark.parametrize("abort_rule", ["per_example", "batch"])
def test_linear_model_closed_form_optimum(l2_linear_problem, abort_rule):
    model, x, y, optimum = l2_linear_problem()
    assert 0.1 < x.min() and x.max() < 0.9  # the optimum stays inside the box
    result = carlini_wagner_l2(model, x, y, max_iterations=1000, abort_rule=abort_rule)
    assert result.success.all()
    gap = result.l2 / optimum - 1
    print(f"{abort_rule}: L2 gap to the optimum: max {gap.max():.3%}, mean {gap.mean():.3%}")
    assert gap.min() > -1e-3  # nothing beats the optimum
    assert gap.max() < 0.02


def test_untargeted_mnist(mnist_attack_model, mnist_attack_batch):
    x, y = mnist_attack_batch
    result = carlini_wagner_l2(mnist_attack_model, x, y, **FAST)
    predicted = mnist_attack_model.predict(result.x_adv, verbose=0).argmax(axis=1)
    np.testing.assert_array_equal(result.success, predicted != y)
    assert result.success.mean() >= 0.99
    assert result.x_adv.min() >= 0.0 and result.x_adv.max() <= 1.0
    assert np.all(result.l2[result.success] > 0)
    np.testing.assert_array_equal(result.target, y)


def test_targeted_mnist(mnist_attack_model, mnist_attack_batch):
    x, y = mnist_attack_batch
    target = (y + 1) % 10
    result = carlini_wagner_l2(mnist_attack_model, x, y, targeted=True, target=target, **FAST)
    predicted = mnist_attack_model.predict(result.x_adv, verbose=0).argmax(axis=1)
    np.testing.assert_array_equal(result.success, predicted == target)
    assert result.success.mean() >= 0.99
    assert result.x_adv.min() >= 0.0 and result.x_adv.max() <= 1.0
    np.testing.assert_array_equal(result.target, target)


def test_higher_confidence_gives_larger_margin(mnist_attack_model, mnist_attack_batch):
    x, y = mnist_attack_batch[0][:10], mnist_attack_batch[1][:10]
    plain = carlini_wagner_l2(mnist_attack_model, x, y, **FAST)
    strong = carlini_wagner_l2(mnist_attack_model, x, y, confidence=3.0, **FAST)
    assert plain.success.all() and strong.success.all()
    plain_margin = _logit_margin(mnist_attack_model, plain.x_adv, y)
    strong_margin = _logit_margin(mnist_attack_model, strong.x_adv, y)
    assert strong_margin.min() >= 3.0 - 1e-3
    assert strong_margin.mean() > plain_margin.mean() + 2.0
    assert strong.l2.mean() > plain.l2.mean()


def _one_at_a_time(model, x, y, **options):
    alone = [carlini_wagner_l2(model, x[i : i + 1], y[i : i + 1], **options) for i in range(len(x))]
    return {
        name: np.concatenate([getattr(r, name) for r in alone])
        for name in ("x_adv", "success", "l2", "const")
    }


def test_batch_invariance_linear(l2_linear_problem):
    model, x, y, _ = l2_linear_problem(n=4)
    options = dict(max_iterations=200, binary_search_steps=4)
    together = carlini_wagner_l2(model, x, y, batch_size=4, **options)
    alone = _one_at_a_time(model, x, y, batch_size=1, **options)
    np.testing.assert_array_equal(together.success, alone["success"])
    np.testing.assert_allclose(together.const, alone["const"])
    np.testing.assert_allclose(together.x_adv, alone["x_adv"], atol=1e-5)


def test_batch_invariance_mnist(mnist_attack_model, mnist_attack_batch):
    x, y = mnist_attack_batch[0][:5], mnist_attack_batch[1][:5]
    options = dict(FAST, max_iterations=50, binary_search_steps=3)
    together = carlini_wagner_l2(mnist_attack_model, x, y, batch_size=8, **options)
    alone = _one_at_a_time(mnist_attack_model, x, y, batch_size=1, **options)
    # Convolutions round differently at different batch sizes and Adam's normalised steps let
    # pixels with ~zero gradient drift apart, so compare the outcome, not every pixel.
    np.testing.assert_array_equal(together.success, alone["success"])
    np.testing.assert_allclose(together.const, alone["const"])
    np.testing.assert_allclose(together.l2, alone["l2"], rtol=2e-2)


def test_eager_and_compiled_agree(l2_linear_problem):
    model, x, y, _ = l2_linear_problem(n=3)
    options = dict(max_iterations=30, binary_search_steps=2, initial_const=1.0)
    compiled = carlini_wagner_l2(model, x, y, **options)
    tf.config.run_functions_eagerly(True)
    try:
        eager = carlini_wagner_l2(model, x, y, **options)
    finally:
        tf.config.run_functions_eagerly(False)
    np.testing.assert_array_equal(compiled.success, eager.success)
    np.testing.assert_allclose(compiled.x_adv, eager.x_adv, atol=1e-5)
    np.testing.assert_allclose(compiled.const, eager.const)


def test_failed_examples_keep_their_original_image(l2_linear_problem):
    model, x, y, _ = l2_linear_problem(n=4)
    result = carlini_wagner_l2(
        model, x, y, max_iterations=2, binary_search_steps=1, initial_const=1e-6
    )
    assert not result.success.any()
    np.testing.assert_array_equal(result.x_adv, x)
    np.testing.assert_array_equal(result.l2, 0.0)


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(max_iterations=-5), "max_iterations must be an integer >= 1"),
        (dict(binary_search_steps=0), "binary_search_steps"),
        (dict(confidence=-1.0), "confidence must be >= 0"),
        (dict(learning_rate=0.0), "learning_rate must be > 0"),
        (dict(initial_const=0.0), "initial_const must be > 0"),
        (dict(largest_const=1e-4), "largest_const"),
        (dict(abort_rule="never"), "abort_rule"),
        (dict(clip_min=1.0, clip_max=1.0), "clip_min must be < clip_max"),
        (dict(clip_min=0.2), "inside \\[clip_min, clip_max\\]"),
        (dict(targeted=True), "needs target labels"),
        (dict(batch_size=0), "batch_size"),
    ],
)
def test_bad_arguments_raise(l2_linear_problem, options, message):
    model, x, y, _ = l2_linear_problem(n=2)
    x[0, 0, 0, 0] = 0.1
    with pytest.raises(ValueError, match=message):
        carlini_wagner_l2(model, x, y, **options)


def test_wrong_shapes_raise(l2_linear_problem):
    model, x, y, _ = l2_linear_problem(n=2)
    with pytest.raises(ValueError, match="shape \\[N, H, W, C\\]"):
        carlini_wagner_l2(model, x[0], y)
    with pytest.raises(ValueError, match="shape \\[2\\]"):
        carlini_wagner_l2(model, x, y[:1])


def test_probability_model_refused_unless_allowed(l2_linear_problem):
    model, x, y, _ = l2_linear_problem(n=2)
    probabilities = keras.Sequential([model, keras.layers.Softmax()])
    with pytest.raises(ValueError, match="look like probabilities"):
        carlini_wagner_l2(probabilities, x, y)
    result = carlini_wagner_l2(
        probabilities, x, y, allow_probabilities=True, max_iterations=20, binary_search_steps=1
    )
    assert result.x_adv.shape == x.shape


def test_no_retracing_across_batches_and_binary_steps(l2_linear_problem):
    from keras_takd.attacks import optimizers

    model, x, y, _ = l2_linear_problem(n=7)
    options = dict(max_iterations=10, binary_search_steps=3, batch_size=3)  # last batch padded
    carlini_wagner_l2(model, x, y, **options)
    carlini_wagner_l2(model, x[:5], y[:5], targeted=True, target=1 - y[:5], **options)
    compiled = list(optimizers._COMPILED_CACHE[model].values())
    assert len(compiled) == 1
    assert compiled[0].experimental_get_tracing_count() == 1


def test_xla_and_plain_compilation_agree(l2_linear_problem):
    model, x, y, _ = l2_linear_problem(n=3)
    options = dict(max_iterations=50, binary_search_steps=3, initial_const=1.0)
    plain = carlini_wagner_l2(model, x, y, **options)
    xla = carlini_wagner_l2(model, x, y, jit_compile=True, **options)
    np.testing.assert_array_equal(plain.success, xla.success)
    np.testing.assert_allclose(plain.const, xla.const)
    np.testing.assert_allclose(plain.x_adv, xla.x_adv, atol=1e-4)


def test_progress_bar_when_verbose(l2_linear_problem, capsys):
    model, x, y, _ = l2_linear_problem(n=4)
    carlini_wagner_l2(model, x, y, max_iterations=5, binary_search_steps=1, batch_size=2)
    assert "batch" not in capsys.readouterr().out
    carlini_wagner_l2(
        model, x, y, max_iterations=5, binary_search_steps=1, batch_size=2, verbose=True
    )
    assert "2/2" in capsys.readouterr().out


def test_largest_const_caps_the_search(l2_linear_problem):
    model, x, y, _ = l2_linear_problem(n=3)
    options = dict(max_iterations=3, binary_search_steps=4, abort_early=False)
    capped = carlini_wagner_l2(model, x, y, initial_const=1e-6, largest_const=1e-4, **options)
    free = carlini_wagner_l2(model, x, y, initial_const=1e-6, **options)
    assert not capped.success.any() and not free.success.any()
    np.testing.assert_allclose(capped.const, 1e-4)  # the last c tried: 1e-6 -> 1e-5 -> 1e-4
    np.testing.assert_allclose(free.const, 1e-2)  # times 10 per failure, as the original


def test_largest_const_caps_the_repeat_step(linear_two_class_model):
    # Class 1 needs w . x to rise by 1; the best an L2 step buys at c is 4 * c / 2 (delta = c / 2
    # per pixel), so c <= 0.1 never succeeds while the repeat step's c = 1e10 (no success yet)
    # would, if it ran uncapped.
    model = linear_two_class_model(np.ones((2, 2, 1)), -3.0)
    x = np.full((1, 2, 2, 1), 0.5, np.float32)
    options = dict(max_iterations=100, learning_rate=0.05, binary_search_steps=10)
    capped = carlini_wagner_l2(model, x, np.zeros(1, np.int64), largest_const=0.1, **options)
    assert not capped.success.any()
    assert capped.const[0] <= 0.1


def _reference_problem(linear_two_class_model, seed=3):
    """Five 3x3 images of both classes whose margins need c from about 5e-3 to about 0.3."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(3, 3, 1))
    x = rng.uniform(0.3, 0.7, size=(5, 3, 3, 1))
    margins = np.array([0.02, -0.1, 0.3, -0.6, 1.5])
    b = -0.5 * w.sum()
    x += ((margins - ((x - 0.5) * w).sum(axis=(1, 2, 3))) / np.sum(w**2))[:, None, None, None] * w
    x = np.clip(x, 0.05, 0.95).astype(np.float32)
    y = ((x * w).sum(axis=(1, 2, 3)) + b > 0).astype(np.int64)
    return linear_two_class_model(w, b), _reference.LinearModel(w, b), x, y


@pytest.mark.parametrize(
    "case, options",
    [
        ("batch_rule", dict(abort_rule="batch")),
        ("per_example_rule", dict(abort_rule="per_example")),
        # On the three images with the largest margins c reaches only 1e-2 in steps 1-9, so
        # all reach the repeat with no success and succeed there at c = upper = 1e10 (a 10th
        # step at c = 0.1 would leave two of them failed).
        ("repeat_step", dict(abort_rule="batch", binary_search_steps=10, initial_const=1e-10)),
        ("kappa", dict(abort_rule="batch", confidence=0.5)),
        ("targeted", dict(abort_rule="batch", targeted=True)),
        ("no_abort", dict(abort_rule="batch", abort_early=False)),
    ],
)
def test_matches_the_original_control_flow(linear_two_class_model, case, options):
    model, linear, x, y = _reference_problem(linear_two_class_model)
    if case == "repeat_step":
        # The two small margins flip at any c (Adam's first step is lr whatever c is), down to
        # c ~ 1e-11, where float32 and float64 part ways.
        x, y = x[2:], y[2:]
    # c tries 1e-4, 1e-3, 1e-2, 0.1: the last two images never succeed (but with the repeat).
    options = dict(learning_rate=0.05, max_iterations=50, binary_search_steps=4) | options
    options.setdefault("initial_const", 1e-4)
    target = 1 - y if options.get("targeted") else None
    result = carlini_wagner_l2(model, x, y, target=target, batch_size=len(x), **options)
    reference = dict(
        kappa=options.get("confidence", 0.0),
        targeted=options.get("targeted", False),
        lr=options["learning_rate"],
        steps=options["binary_search_steps"],
        iters=options["max_iterations"],
        abort_early=options.get("abort_early", True),
        initial_const=options["initial_const"],
    )
    labels = target if options.get("targeted") else y
    x64 = x.astype(np.float64)
    if options["abort_rule"] == "batch":  # the original on the whole batch
        x_adv, const, success, closest = _reference.l2_attack(linear, x64, labels, **reference)
    else:  # the original with batch_size=1, one image at a time
        runs = [
            _reference.l2_attack(linear, x64[i : i + 1], labels[i : i + 1], **reference)
            for i in range(len(x))
        ]
        x_adv, const, success = (np.concatenate([r[k] for r in runs]) for k in range(3))
        closest = min(r[3] for r in runs)
    assert closest > 1e-4  # no abort check near 0.9999: float32 round-off cannot flip one
    if case != "repeat_step":
        assert 0 < success.sum() < len(x)  # both branches of the c schedule are exercised
    np.testing.assert_array_equal(result.success, success)
    np.testing.assert_allclose(result.const, const, rtol=1e-6)  # the c schedule, exactly
    np.testing.assert_allclose(
        result.x_adv, np.where(success[:, None, None, None], x_adv, x), atol=1e-4
    )


def test_iterations_and_incomplete_optimisation_are_recorded(l2_linear_problem):
    """Cut at 200 slow iterations, every solve is still improving when it stops (incomplete);
    with room to converge, abort early ends the solves and nothing is flagged."""
    model, x, y, _ = l2_linear_problem()
    options = dict(binary_search_steps=3, initial_const=1.0)
    cut = carlini_wagner_l2(model, x, y, max_iterations=200, learning_rate=1e-4, **options)
    assert cut.incomplete.all()
    np.testing.assert_array_equal(cut.iterations, 3 * 200)  # no solve stopped early
    options["learning_rate"] = 0.01

    room = carlini_wagner_l2(model, x, y, max_iterations=10_000, **options)
    assert room.success.all() and not room.incomplete.any()
    assert (room.iterations < 3 * 10_000).all() and (room.iterations > 3 * 1_000).all()

    full = carlini_wagner_l2(model, x, y, max_iterations=50, abort_early=False, **options)
    np.testing.assert_array_equal(full.iterations, 3 * 50)
    assert full.incomplete is None  # no loss check was made
    batch = carlini_wagner_l2(model, x, y, max_iterations=50, abort_rule="batch", **options)
    assert batch.incomplete is None and batch.iterations is not None
