"""Tests of the every-wrong-class evaluation (keras_takd.attacks.all_targets)."""

import numpy as np
import pytest

from keras_takd.attacks import all_targets, carlini_wagner_l2, projected_gradient_descent

FAST = dict(max_iterations=100, binary_search_steps=5, initial_const=1.0, learning_rate=0.1)


@pytest.fixture(scope="module")
def three_images_all_targets(mnist_attack_model, mnist_attack_batch):
    x, y = mnist_attack_batch[0][:2], mnist_attack_batch[1][:2]
    return x, y, all_targets(carlini_wagner_l2, mnist_attack_model, x, y, **FAST)


def test_attacks_every_wrong_class(three_images_all_targets):
    x, y, outcome = three_images_all_targets
    assert len(outcome.result) == 2 * 9
    targets = outcome.result.target.reshape(2, 9)
    for image in range(2):
        assert sorted(targets[image]) == [c for c in range(10) if c != y[image]]
    np.testing.assert_array_equal(outcome.image_index, np.repeat(np.arange(2), 9))
    failed = ~outcome.result.success
    np.testing.assert_array_equal(outcome.result.x_adv[failed], x[outcome.image_index][failed])


def test_best_average_worst_are_ordered(three_images_all_targets):
    _, y, outcome = three_images_all_targets
    frame = outcome.per_image("l2")
    assert list(frame["true_label"]) == list(y)
    distances = outcome.distances("l2")
    np.testing.assert_allclose(frame["best_l2"], np.nanmin(distances, axis=1))
    assert frame["best_success"].all()
    assert np.all(frame["best_l2"] <= frame["average_l2"])
    worst = frame.dropna(subset=["worst_l2"])
    assert np.all(worst["average_l2"] <= worst["worst_l2"])
    for _, row in frame.iterrows():
        best = row["best_target"]
        assert best != row["true_label"]
    summary = outcome.summary("l2")
    assert list(summary["case"]) == ["best", "average", "worst"]
    assert list(summary.columns) == ["case", "success_rate", "mean_l2", "median_l2"]
    assert summary["success_rate"].iloc[0] >= summary["success_rate"].iloc[2]
    assert summary["mean_l2"].iloc[0] <= summary["mean_l2"].iloc[1]


def test_worst_case_fails_when_one_target_fails(mnist_attack_model, mnist_attack_batch):
    x, y = mnist_attack_batch[0][:4], mnist_attack_batch[1][:4]
    # A tiny PGD budget reaches some targets but not all.
    outcome = all_targets(
        projected_gradient_descent, mnist_attack_model, x, y, eps=0.2, step_size=0.05, steps=8
    )
    frame = outcome.per_image("linf")
    success = outcome.result.success.reshape(4, 9)
    assert success.any() and not success.all(axis=1).all()  # the budget is tight enough
    np.testing.assert_array_equal(frame["best_success"], success.any(axis=1))
    np.testing.assert_array_equal(frame["worst_success"], success.all(axis=1))
    np.testing.assert_allclose(frame["average_success"], success.mean(axis=1))
    assert frame.loc[~frame["worst_success"], "worst_linf"].isna().all()
    assert (frame.loc[~frame["worst_success"], "worst_target"] == -1).all()


def test_rejects_own_targets(mnist_attack_model, mnist_attack_batch):
    x, y = mnist_attack_batch[0][:2], mnist_attack_batch[1][:2]
    with pytest.raises(ValueError, match="chooses the targets itself"):
        all_targets(carlini_wagner_l2, mnist_attack_model, x, y, targeted=True)
    with pytest.raises(ValueError, match="distance must be one of"):
        all_targets(
            projected_gradient_descent, mnist_attack_model, x, y, eps=0.1, step_size=0.1, steps=1
        ).per_image("l3")
