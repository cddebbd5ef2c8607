"""Wide residual networks (WRN-d-k) for CIFAR-sized images, returning logits.

Zagoruyko & Komodakis 2016, "Wide Residual Networks" (arXiv:1605.07146): a 3x3 stem
convolution with 16 filters, then three groups of (d - 4) / 6 pre-activation basic blocks
(BN-ReLU-conv3x3-[dropout]-BN-ReLU-conv3x3) of widths 16k, 32k and 64k with strides 1, 2, 2,
a final BN-ReLU, global average pooling and a dense layer. A 1x1 convolution on the
pre-activated input is the shortcut of every block that changes the width or the resolution.
WRN-28-10 (about 36.5 M parameters) is the backbone of the smoothed noise-injection teacher
of Nemcovsky et al. 2020 (arXiv:1911.07198) and of the student of Katz & Reches.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

# Batch-norm settings of the reference implementation (PyTorch defaults: momentum 0.1 there
# is 0.9 here, epsilon 1e-5).
_BN_MOMENTUM = 0.9
_BN_EPSILON = 1e-5
_STEM_WIDTH = 16
_GROUP_WIDTHS = (16, 32, 64)
_GROUP_STRIDES = (1, 2, 2)


def blocks_per_group(depth: int) -> int:
    """Returns the number of basic blocks per group, (depth - 4) / 6, of a WRN of `depth`.

    Raises:
        ValueError: if `depth` is not an integer >= 10 with (depth - 4) % 6 == 0.
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 10 or (depth - 4) % 6:
        raise ValueError(
            f"depth must be an integer >= 10 with (depth - 4) % 6 == 0 (10, 16, 22, 28, ...), "
            f"got {depth!r}"
        )
    return (depth - 4) // 6


def _check_arguments(
    widen_factor: int, num_classes: int, input_shape: Sequence[int], dropout: float
) -> tuple[int, ...]:
    if isinstance(widen_factor, bool) or not isinstance(widen_factor, int) or widen_factor < 1:
        raise ValueError(f"widen_factor must be a positive integer, got {widen_factor!r}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    shape = tuple(input_shape)
    if len(shape) != 3 or not all(isinstance(s, int) and s > 0 for s in shape):
        raise ValueError(
            f"input_shape must be three positive integers (height, width, channels), "
            f"got {input_shape!r}"
        )
    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    return shape


def _conv(filters: int, kernel_size: int, strides: int, name: str) -> keras.layers.Conv2D:
    return keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        use_bias=False,
        kernel_initializer="he_normal",
        name=name,
    )


def _bn_relu(x, name: str):
    x = keras.layers.BatchNormalization(
        momentum=_BN_MOMENTUM, epsilon=_BN_EPSILON, name=f"{name}_bn"
    )(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def _basic_block(x, width: int, strides: int, dropout: float, name: str):
    """One pre-activation basic block; the shortcut is a 1x1 conv when the shape changes."""
    pre = _bn_relu(x, f"{name}_pre1")
    if x.shape[-1] != width or strides != 1:
        shortcut = _conv(width, 1, strides, f"{name}_shortcut")(pre)
    else:
        shortcut = x
    y = _conv(width, 3, strides, f"{name}_conv1")(pre)
    y = _bn_relu(y, f"{name}_pre2")
    if dropout > 0:
        y = keras.layers.Dropout(dropout, name=f"{name}_dropout")(y)
    y = _conv(width, 3, 1, f"{name}_conv2")(y)
    return keras.layers.Add(name=f"{name}_add")([shortcut, y])


def wide_resnet(
    depth: int = 28,
    widen_factor: int = 10,
    num_classes: int = 10,
    input_shape: Sequence[int] = (32, 32, 3),
    dropout: float = 0.0,
    name: str | None = None,
) -> keras.Model:
    """Builds WRN-`depth`-`widen_factor` (Zagoruyko & Komodakis, arXiv:1605.07146).

    Convolutions have no bias and He-normal initialisation; weight decay is left to the
    optimiser. TensorFlow's "same" padding pads the stride-2 convolutions bottom/right where
    the PyTorch reference pads one pixel on every side; the parameter count is identical.

    Args:
        depth: total depth d; (d - 4) must be divisible by 6 (28 in the papers).
        widen_factor: the widening factor k (10 for the published WRN-28-10).
        num_classes: number of output logits.
        input_shape: (height, width, channels) of the images, channels last.
        dropout: dropout rate between the two convolutions of every block (0 disables it).
        name: the model's name; defaults to "wrn_{depth}_{widen_factor}".

    Returns:
        A functional `keras.Model` mapping images to logits of shape [batch, num_classes].

    Raises:
        ValueError: for a depth that is not 6n + 4 with n >= 1, a non-positive widen factor,
            fewer than two classes, a malformed input shape or a dropout outside [0, 1).
    """
    n = blocks_per_group(depth)
    shape = _check_arguments(widen_factor, num_classes, input_shape, dropout)
    inputs = keras.Input(shape=shape, name="images")
    x = _conv(_STEM_WIDTH, 3, 1, "stem_conv")(inputs)
    groups = zip(_GROUP_WIDTHS, _GROUP_STRIDES, strict=True)
    for group, (base, strides) in enumerate(groups, start=1):
        for block in range(n):
            x = _basic_block(
                x,
                base * widen_factor,
                strides if block == 0 else 1,
                float(dropout),
                name=f"group{group}_block{block + 1}",
            )
    x = _bn_relu(x, "final")
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    logits = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, logits, name=name or f"wrn_{depth}_{widen_factor}")
