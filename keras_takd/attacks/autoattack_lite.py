"""A reduced AutoAttack (Croce & Hein, ICML 2020, arXiv:2003.01690): APGD-CE, then APGD-T.

`autoattack_lite` runs APGD-CE, then APGD-T (targeted DLR, one run per target class, the
top-9 other classes) on the images APGD-CE did not fool, and reports robust accuracy. It is
not the full AutoAttack: FAB and Square are NOT included, so its robust accuracy is an upper
bound that full AutoAttack may lower further.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from keras_takd.attacks.apgd import MOMENTUM, RHO, apgd, check_options
from keras_takd.attacks.preparation import prepare_inputs


@dataclasses.dataclass
class AutoAttackLiteResult:
    """The outcome of `autoattack_lite` on N images.

    Attributes:
        x_adv: float32 [N, H, W, C]: the image that fooled the model, else the original.
        clean_correct: bool [N], the model classified the original image correctly.
        robust: bool [N], correct on the original and fooled by neither APGD-CE nor APGD-T.
        fooled_by: str [N]: "misclassified" (wrong before any attack), "apgd-ce", "apgd-t",
            or "" for robust images.
        eps: the radius of the ball.
        norm: its norm.
    """

    x_adv: np.ndarray
    clean_correct: np.ndarray
    robust: np.ndarray
    fooled_by: np.ndarray
    eps: float
    norm: str

    @property
    def robust_accuracy(self) -> float:
        """The fraction of all N images that stay correctly classified (NaN for none)."""
        return float(np.mean(self.robust)) if len(self.robust) else float("nan")

    @property
    def clean_accuracy(self) -> float:
        """The fraction of the N original images classified correctly."""
        return float(np.mean(self.clean_correct)) if len(self.clean_correct) else float("nan")


def autoattack_lite(
    model: Callable[..., Any],
    x: np.ndarray,
    y: np.ndarray,
    eps: float,
    norm: str = "linf",
    *,
    steps: int = 100,
    target_classes: int = 9,
    seed: int | None = 0,
    batch_size: int = 128,
    clip_min: float = 0.0,
    clip_max: float = 1.0,
    verbose: bool = False,
) -> AutoAttackLiteResult:
    """APGD-CE, then APGD-T on the survivors: AutoAttack without FAB and Square.

    As in AutoAttack's standard version (Croce & Hein 2020): APGD-CE with one run of
    `steps` iterations, then APGD-T with the targeted DLR loss, one run of `steps` iterations per
    target class, the `target_classes` classes with the highest clean logits after the true one,
    each run only on the images no earlier run fooled. FAB-T and Square are not run, so the
    robust accuracy is an upper bound that full AutoAttack may lower further.

    Args:
        model: a Keras model (or callable) mapping float32 images in the box to logits.
        x: images [N, H, W, C] inside [clip_min, clip_max].
        y: true labels [N].
        eps: radius of the ball, > 0.
        norm: "linf" or "l2".
        steps: iterations of each APGD run.
        target_classes: how many target classes APGD-T tries (at most num_classes - 1).
        seed: seed of the random starts.
        batch_size: images per compiled run.
        clip_min: the lower edge of the box.
        clip_max: the upper edge of the box.
        verbose: print one line per stage.

    Returns:
        An `AutoAttackLiteResult`.

    Raises:
        ValueError: on invalid options or inputs, or a model with fewer than 4 classes (the
            targeted DLR loss needs 4).
    """
    check_options(eps, norm, "dlr", steps, 1, RHO, MOMENTUM)
    if int(target_classes) != target_classes or target_classes < 1:
        raise ValueError(f"target_classes must be an integer >= 1, got {target_classes}")
    inputs = prepare_inputs(
        model, x, y, clip_min=clip_min, clip_max=clip_max, batch_size=batch_size
    )
    x, y, logits = inputs.x, inputs.y, inputs.logits
    if logits.shape[1] < 4:
        raise ValueError(f"autoattack_lite needs >= 4 classes, the model has {logits.shape[1]}")
    correct = logits.argmax(axis=1) == y
    fooled_by = np.where(correct, "", "misclassified").astype(object)
    x_adv = x.copy()
    options = dict(
        eps=eps,
        norm=norm,
        steps=steps,
        seed=seed,
        batch_size=batch_size,
        clip_min=clip_min,
        clip_max=clip_max,
    )
    ranked = np.argsort(-logits, axis=1, kind="stable")
    stages = [("apgd-ce", None)] + [
        ("apgd-t", rank) for rank in range(1, min(target_classes, logits.shape[1] - 1) + 1)
    ]
    for stage, rank in stages:
        rows = np.flatnonzero(fooled_by == "")
        if rows.size == 0:
            break
        if rank is None:
            result = apgd(model, x[rows], y[rows], loss="ce", **options)
        else:
            target = ranked[rows, rank]
            result = apgd(
                model, x[rows], y[rows], loss="dlr", targeted=True, target=target, **options
            )
        hit = rows[result.success]
        x_adv[hit] = result.x_adv[result.success]
        fooled_by[hit] = stage
        if verbose:
            print(
                f"{stage}{'' if rank is None else f' (target rank {rank})'}: fooled "
                f"{hit.size} of {rows.size}; robust accuracy {np.mean(fooled_by == ''):.2%}"
            )
    return AutoAttackLiteResult(
        x_adv=x_adv,
        clean_correct=correct,
        robust=fooled_by == "",
        fooled_by=fooled_by.astype(str),
        eps=float(eps),
        norm=norm,
    )
