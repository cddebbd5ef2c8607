"""The fast gradient sign method (Goodfellow et al., arXiv:1412.6572).

One step of size eps along the sign of the gradient of the cross-entropy of the true label
(x + eps * sign(grad)), or against that of a target label, clipped to the box. It is PGD
(arXiv:1706.06083) with one step of size eps and no random start, and runs on that code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from keras_takd.attacks import common
from keras_takd.attacks.projected_gradient_descent import projected_gradient_descent


def fast_gradient_sign(
    model: Callable[..., Any],
    x: np.ndarray,
    y: np.ndarray,
    eps: float,
    *,
    targeted: bool = False,
    target: np.ndarray | None = None,
    clip_min: float = 0.0,
    clip_max: float = 1.0,
    batch_size: int = 128,
    keep_failed: bool = False,
    allow_probabilities: bool = False,
) -> common.AttackResult:
    """Runs FGSM on a batch of images.

    Args:
        model: a Keras model (or callable) mapping float32 images in the box to logits.
        x: images [N, H, W, C] inside [clip_min, clip_max].
        y: true labels [N].
        eps: the L-infinity size of the step, > 0.
        targeted: step down the cross-entropy of `target` instead of up that of `y`.
        target: target labels [N], required when `targeted`.
        clip_min: the lower edge of the box.
        clip_max: the upper edge of the box.
        batch_size: images per compiled step.
        keep_failed: keep the perturbed image of failed examples instead of the original.
        allow_probabilities: attack a model that outputs probabilities on purpose.

    Returns:
        An `AttackResult` (`const` is NaN).

    Raises:
        ValueError: on invalid options or inputs.
    """
    return projected_gradient_descent(
        model,
        x,
        y,
        eps=eps,
        step_size=eps,
        steps=1,
        random_start=False,
        norm="linf",
        targeted=targeted,
        target=target,
        clip_min=clip_min,
        clip_max=clip_max,
        batch_size=batch_size,
        keep_failed=keep_failed,
        allow_probabilities=allow_probabilities,
    )
