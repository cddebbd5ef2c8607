"""Tests of the shared attack math and input checks (keras_takd.attacks.common)."""

import numpy as np
import pytest
import tensorflow as tf

from keras_takd.attacks import common


def test_tanh_space_round_trip_stays_finite_at_box_edges():
    x = np.array([0.0, 1e-3, 0.25, 0.5, 0.999, 1.0], np.float32).reshape(1, 2, 3, 1) * 2 - 1
    w = common.to_tanh_space(x, -1.0, 1.0, common.L2_TANH_SCALE)
    assert np.all(np.isfinite(w.numpy()))
    back = common.from_tanh_space(w, -1.0, 1.0).numpy()
    np.testing.assert_allclose(back, x, atol=2e-6)
    assert back.min() >= -1.0 and back.max() <= 1.0


def test_to_tanh_space_matches_the_originals_arctanh_at_the_box_edges():
    x = np.array([0.0, 0.3, 1.0], np.float32)
    l2 = common.to_tanh_space(x, 0.0, 1.0, common.L2_TANH_SCALE).numpy()
    l0_linf = common.to_tanh_space(x, 0.0, 1.0, common.L0_LINF_TANH_SCALE).numpy()
    # l2_attack.py: arctanh((x - boxplus) / boxmul * 0.999999) with boxplus = boxmul = 0.5;
    # l0_attack.py, li_attack.py: arctanh(x * 1.999999) on their [-0.5, 0.5] box.
    np.testing.assert_allclose(l2, np.arctanh((x - 0.5) / 0.5 * 0.999999), rtol=1e-5)
    np.testing.assert_allclose(l0_linf, np.arctanh((x - 0.5) * 1.999999), rtol=1e-5)
    assert abs(l0_linf[-1] - l2[-1]) > 0.3  # 7.6 against 7.25: a different edge slope


@pytest.mark.parametrize(
    "module_name, expected",
    [
        ("carlini_wagner_l2", 0.999999),
        ("carlini_wagner_l0", 0.9999995),
        ("carlini_wagner_linf", 0.9999995),
    ],
)
def test_each_attack_maps_into_tanh_space_with_its_originals_scale(
    module_name, expected, linear_two_class_model, monkeypatch
):
    from keras_takd import attacks
    from keras_takd.attacks.carlini_wagner import search

    scales = []
    original = common.to_tanh_space

    def recording(x, clip_min, clip_max, scale):
        scales.append(scale)
        return original(x, clip_min, clip_max, scale)

    for target in (search, common):
        monkeypatch.setattr(target, "to_tanh_space", recording)
    model = linear_two_class_model(np.ones((2, 2, 1)), -1.0)  # a fresh model: nothing cached
    x = np.full((1, 2, 2, 1), 0.1, np.float32)
    attack = getattr(attacks, module_name)
    attack(model, x, np.zeros(1, np.int64), max_iterations=2)
    assert scales and set(scales) == {expected}


def test_from_tanh_space_maps_any_w_into_the_box():
    w = tf.constant(np.linspace(-50, 50, 101, dtype=np.float32))
    x = common.from_tanh_space(w, 0.2, 0.7).numpy()
    assert x.min() >= 0.2 and x.max() <= 0.7


def test_margin_loss_matches_definition():
    logits = tf.constant([[1.0, 4.0, 2.0], [3.0, 0.0, -1.0]])
    onehot = tf.one_hot([2, 0], 3)
    targeted = common.margin_loss(logits, onehot, 0.5, targeted=True).numpy()
    untargeted = common.margin_loss(logits, onehot, 0.5, targeted=False).numpy()
    # Targeted: max(max_{i!=t} Z_i - Z_t + k, 0); untargeted: max(Z_y - max_{i!=y} Z_i + k, 0).
    np.testing.assert_allclose(targeted, [4 - 2 + 0.5, 0.0])
    np.testing.assert_allclose(untargeted, [0.0, 3 - 0 + 0.5])


def test_perturbation_norms_count_pixels_not_channels():
    x = np.zeros((2, 3, 3, 2), np.float32)
    x_adv = x.copy()
    x_adv[0, 0, 0, :] = [0.3, 0.4]  # one pixel, two channels
    x_adv[0, 1, 1, 1] = 5e-5  # below the 1e-4 threshold
    x_adv[1, 2, 2, 0] = -0.2
    l0, l2, linf = common.perturbation_norms(x_adv, x)
    np.testing.assert_array_equal(l0, [1, 1])
    np.testing.assert_allclose(l2, [np.sqrt(0.25 + 5e-5**2), 0.2], rtol=1e-6)
    np.testing.assert_allclose(linf, [0.4, 0.2], rtol=1e-6)


def test_pad_to_batch_repeats_last_row():
    padded, n = common.pad_to_batch(np.array([[1, 2], [3, 4]]), 4)
    assert n == 2
    np.testing.assert_array_equal(padded, [[1, 2], [3, 4], [3, 4], [3, 4]])
    with pytest.raises(ValueError, match="cannot pad 5 rows"):
        common.pad_to_batch(np.zeros((5, 1)), 4)


@pytest.mark.parametrize(
    "n, batch_size, fill_evenly, size",
    [
        (8, 3, False, 3),
        (8, 5, False, 5),
        (3, 128, False, 3),  # never larger than the data
        (8, 5, True, 4),  # two batches of four, not five and three
        (130, 128, True, 65),
        (3, 128, True, 3),
    ],
)
def test_batch_plan_sizes(n, batch_size, fill_evenly, size):
    plan = common.batch_plan(n, batch_size, fill_evenly=fill_evenly)
    assert plan.size == size
    slices = plan.slices(n)
    assert len(slices) == -(-n // batch_size)  # the fewest batches of at most batch_size
    assert np.concatenate([np.arange(n)[part] for part in slices]).tolist() == list(range(n))


def test_batch_plan_pads_and_trims_the_last_batch():
    plan = common.batch_plan(5, 3)
    x, labels = np.arange(5.0)[:, None], np.arange(5)
    last = plan.slices(5)[-1]
    padded_x, padded_labels = plan.pad(x[last], labels[last])
    np.testing.assert_array_equal(padded_x[:, 0], [3.0, 4.0, 4.0])
    np.testing.assert_array_equal(padded_labels, [3, 4, 4])
    (trimmed,) = plan.trim(last, tf.constant(padded_labels))
    np.testing.assert_array_equal(trimmed, [3, 4])


def test_finalize_verifies_success_and_restores_failed_examples(linear_two_class_model):
    # Logits [0, sum(x) - 8] on 4x4 images: class 1 exactly when the mean pixel exceeds 0.5.
    model = linear_two_class_model(np.ones((4, 4, 1)), -8.0)
    x = np.full((3, 4, 4, 1), 0.4, np.float32)
    y = np.zeros(3, np.int64)
    x_adv = x + np.array([0.2, 0.05, 0.3], np.float32)[:, None, None, None]
    result = common.finalize_result(
        model, x, x_adv, y, targeted=False, target=None, const=[1.0, 2.0, 3.0]
    )
    np.testing.assert_array_equal(result.success, [True, False, True])
    np.testing.assert_array_equal(result.x_adv[1], x[1])  # the failure gets its image back
    np.testing.assert_allclose(result.l2, [0.8, 0.0, 1.2], rtol=1e-5)
    np.testing.assert_array_equal(result.l0, [16, 0, 16])
    np.testing.assert_array_equal(result.target, y)
    kept = common.finalize_result(
        model, x, x_adv, y, targeted=False, target=None, const=1.0, restore_failed=False
    )
    np.testing.assert_allclose(kept.x_adv, x_adv)
    assert not kept.success[1]
