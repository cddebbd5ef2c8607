"""Tests of APGD-CE then APGD-T without FAB and Square (keras_takd.attacks.autoattack_lite)."""

import numpy as np
import pytest

from keras_takd.attacks import apgd, autoattack_lite


def test_autoattack_lite_reports_robust_accuracy(mnist_attack_model, mnist_small):
    _, _, x_test, y_test = mnist_small
    x, y = x_test[:30], y_test[:30]
    result = autoattack_lite(mnist_attack_model, x, y, 0.1, steps=10, target_classes=3)
    predicted = mnist_attack_model.predict(result.x_adv, verbose=0).argmax(axis=1)
    np.testing.assert_array_equal(result.robust, predicted == y)
    assert set(result.fooled_by) <= {"", "misclassified", "apgd-ce", "apgd-t"}
    np.testing.assert_array_equal(result.fooled_by == "misclassified", ~result.clean_correct)
    ce_only = apgd(
        mnist_attack_model, x[result.clean_correct], y[result.clean_correct], 0.1, steps=10
    )
    assert result.robust_accuracy <= result.clean_accuracy * (1 - ce_only.success.mean()) + 1e-9
    assert np.all(np.abs(result.x_adv - x).max(axis=(1, 2, 3)) <= 0.1 + 1e-6)


def test_autoattack_lite_refuses_two_classes(linf_linear_problem):
    model, x, y, _ = linf_linear_problem
    with pytest.raises(ValueError, match="needs >= 4 classes"):
        autoattack_lite(model, x, y, 0.1)


def test_autoattack_lite_bad_arguments_raise(linf_linear_problem):
    model, x, y, _ = linf_linear_problem
    with pytest.raises(ValueError, match="target_classes must be an integer >= 1"):
        autoattack_lite(model, x, y, 0.1, target_classes=0)
    with pytest.raises(ValueError, match="eps must be > 0"):
        autoattack_lite(model, x, y, 0.0)
