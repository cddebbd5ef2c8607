"""Tests for keras_takd.core.models (Zagoruyko & Komodakis, arXiv:1605.07146)."""

import numpy as np
import pytest

from keras_takd.core.models import blocks_per_group, wide_resnet


def _expected_trainable_params(depth: int, k: int, num_classes: int = 10, channels: int = 3) -> int:
    """Counts WRN-d-k trainable parameters from the paper's layout, independently of Keras."""
    n = (depth - 4) // 6
    total = 3 * 3 * channels * 16  # stem conv, no bias
    c_in = 16
    for width, stride in ((16 * k, 1), (32 * k, 2), (64 * k, 2)):
        for block in range(n):
            total += 2 * c_in + 9 * c_in * width + 2 * width + 9 * width * width
            if block == 0 and (c_in != width or stride != 1):
                total += c_in * width  # 1x1 shortcut, no bias
            c_in = width
    return total + 2 * c_in + c_in * num_classes + num_classes


def _trainable(model) -> int:
    return int(sum(np.prod(v.shape) for v in model.trainable_weights))


@pytest.mark.parametrize(
    "depth, k, published_millions",
    # Table 1 / Table 4 of arXiv:1605.07146 (rounded to 0.1 M).
    [(28, 10, 36.5), (16, 4, 2.7), (40, 1, 0.6)],
)
def test_parameter_count_matches_paper(depth, k, published_millions):
    model = wide_resnet(depth=depth, widen_factor=k)
    count = _trainable(model)
    assert count == _expected_trainable_params(depth, k)
    assert abs(count / 1e6 - published_millions) < 0.05 + 1e-9, count


def test_wrn_28_1_builds_and_returns_logits():
    model = wide_resnet(depth=28, widen_factor=1, num_classes=7)
    assert _trainable(model) == _expected_trainable_params(28, 1, num_classes=7)
    # Three groups of four blocks with two 3x3 convs each, the stem, and the 1x1 shortcuts of
    # groups 2 and 3 (16 -> 16 in group 1 needs none).
    convs = [layer for layer in model.layers if layer.__class__.__name__ == "Conv2D"]
    assert len(convs) == 1 + 3 * 4 * 2 + 2
    x = np.random.default_rng(0).random((2, 32, 32, 3)).astype("float32")
    logits = np.asarray(model(x, training=False))
    assert logits.shape == (2, 7)
    # Logits, not probabilities: rows need not sum to one and may be negative.
    assert not np.allclose(logits.sum(axis=1), 1.0)


def test_dropout_layers_only_when_asked():
    without = wide_resnet(depth=10, widen_factor=1)
    with_dropout = wide_resnet(depth=10, widen_factor=1, dropout=0.3)
    assert not any("dropout" in layer.name for layer in without.layers)
    assert sum("dropout" in layer.name for layer in with_dropout.layers) == 3


def test_small_input_shape():
    model = wide_resnet(depth=10, widen_factor=2, num_classes=3, input_shape=(8, 8, 1))
    out = model(np.zeros((1, 8, 8, 1), "float32"))
    assert tuple(out.shape) == (1, 3)


@pytest.mark.parametrize("depth", [27, 4, 9, 0, -2, 28.0, "28", True])
def test_bad_depth_raises(depth):
    with pytest.raises(ValueError, match="depth"):
        wide_resnet(depth=depth, widen_factor=1)


def test_blocks_per_group():
    assert [blocks_per_group(d) for d in (10, 16, 28, 40)] == [1, 2, 4, 6]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"widen_factor": 0}, "widen_factor"),
        ({"widen_factor": 2.5}, "widen_factor"),
        ({"num_classes": 1}, "num_classes"),
        ({"input_shape": (32, 32)}, "input_shape"),
        ({"input_shape": (32, 0, 3)}, "input_shape"),
        ({"dropout": 1.0}, "dropout"),
        ({"dropout": -0.1}, "dropout"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        wide_resnet(**{"depth": 10, "widen_factor": 1, **kwargs})
