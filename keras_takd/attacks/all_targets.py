"""Attack every wrong class of each image and report best, average and worst case.

The evaluation protocol of Carlini & Wagner (arXiv:1608.04644, Section 6, and `test_attack.py`
of their code): a targeted attack is run once for each incorrect target label; the best case is
the easiest target (smallest distortion among the successful ones), the worst case the hardest
(largest distortion, a failure if any target failed), and the average case a target drawn
uniformly at random (mean over targets). Their tables report, per case, the success rate and
the mean distortion of the successful examples.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from keras_takd.attacks import common
from keras_takd.core.metrics import predict_logits

CASES = ("best", "average", "worst")
DISTANCES = ("l0", "l2", "linf")


@dataclasses.dataclass
class AllTargetsResult:
    """The targeted attacks of `all_targets` and their best/average/worst-case summaries.

    Attributes:
        result: the `AttackResult` of all N * (K - 1) targeted attacks, image-major: row
            `i * (K - 1) + j` attacks image `i` towards its j-th wrong class.
        image_index: [N * (K - 1)] the image each row attacks.
        y: [N] the true labels.
        num_classes: K.
    """

    result: common.AttackResult
    image_index: np.ndarray
    y: np.ndarray
    num_classes: int

    def distances(self, distance: str = "l2") -> np.ndarray:
        """The distortions per image and wrong target.

        Args:
            distance: "l0", "l2" or "linf".

        Returns:
            float64 [N, K - 1], NaN where the attack failed.

        Raises:
            ValueError: for an unknown distance.
        """
        _check_distance(distance)
        values = np.asarray(getattr(self.result, distance), np.float64)
        values = np.where(self.result.success, values, np.nan)
        return values.reshape(-1, self.num_classes - 1)

    def per_image(self, distance: str = "l2") -> pd.DataFrame:
        """One row per image: success and distortion in the best, average and worst case.

        Columns: `image`, `true_label`, and for each case `<case>_success` (for the average
        case the fraction of targets reached) and `<case>_<distance>` (NaN when the case
        failed; the average is over the successful targets), plus `best_target` and
        `worst_target` (-1 when that case failed).

        Args:
            distance: "l0", "l2" or "linf".

        Returns:
            A `pandas.DataFrame` with one row per image.
        """
        values = self.distances(distance)
        success = ~np.isnan(values)
        targets = self.result.target.reshape(values.shape)
        any_ok, all_ok = success.any(axis=1), success.all(axis=1)
        rows = np.arange(len(values))
        best = np.argmin(np.where(success, values, np.inf), axis=1)
        worst = np.argmax(np.where(success, values, -np.inf), axis=1)
        # Rows with no success are filled with 0 only to keep nanmean quiet; they become NaN.
        average = np.nanmean(np.where(any_ok[:, None], values, 0.0), axis=1)
        frame = pd.DataFrame(
            {
                "image": np.arange(len(values)),
                "true_label": self.y,
                "best_success": any_ok,
                f"best_{distance}": np.where(any_ok, values[rows, best], np.nan),
                "best_target": np.where(any_ok, targets[rows, best], -1),
                "average_success": success.mean(axis=1),
                f"average_{distance}": np.where(any_ok, average, np.nan),
                "worst_success": all_ok,
                f"worst_{distance}": np.where(all_ok, values[rows, worst], np.nan),
                "worst_target": np.where(all_ok, targets[rows, worst], -1),
            }
        )
        return frame

    def summary(self, distance: str = "l2") -> pd.DataFrame:
        """C&W's table form: per case, the success rate and mean/median distortion.

        The distortion statistics are over the images where that case succeeded.

        Args:
            distance: "l0", "l2" or "linf".

        Returns:
            A `pandas.DataFrame` with rows best, average, worst and columns `case`,
            `success_rate`, `mean_<distance>`, `median_<distance>`.
        """
        frame = self.per_image(distance)
        records = []
        for case in CASES:
            values = frame[f"{case}_{distance}"].dropna()
            records.append(
                {
                    "case": case,
                    "success_rate": float(frame[f"{case}_success"].mean()),
                    f"mean_{distance}": float(values.mean()) if len(values) else np.nan,
                    f"median_{distance}": float(values.median()) if len(values) else np.nan,
                }
            )
        return pd.DataFrame.from_records(records)


def all_targets(
    attack: Callable[..., common.AttackResult],
    model: Callable[..., Any],
    x: np.ndarray,
    y: np.ndarray,
    *,
    num_classes: int | None = None,
    **options: Any,
) -> AllTargetsResult:
    """Runs a targeted `attack` towards every wrong class of every image, in one batched call.

    Args:
        attack: an attack function of this package, e.g. `carlini_wagner_l2`.
        model: the model to attack (returns logits).
        x: images [N, H, W, C].
        y: true labels [N].
        num_classes: K; by default the width of the model's output.
        **options: passed on to `attack` (not `targeted` or `target`).

    Returns:
        An `AllTargetsResult`; see its `per_image()` and `summary()`.

    Raises:
        ValueError: if `options` sets `targeted` or `target`, or on bad inputs.
    """
    if "targeted" in options or "target" in options:
        raise ValueError("all_targets chooses the targets itself: do not pass targeted/target")
    x = np.asarray(x, np.float32)
    y = np.asarray(y)
    if x.ndim != 4 or y.ndim != 1 or len(x) != len(y):
        raise ValueError(f"expected x [N, H, W, C] and y [N], got shapes {x.shape} and {y.shape}")
    if num_classes is None:
        num_classes = predict_logits(model, x[:1], 1).shape[1]
    if num_classes < 2:
        raise ValueError(f"all_targets needs at least 2 classes, got num_classes={num_classes}")
    y = y.astype(np.int64)
    if y.min() < 0 or y.max() >= num_classes:
        raise ValueError(f"y must be in [0, {num_classes - 1}], got [{y.min()}, {y.max()}]")
    classes = np.tile(np.arange(num_classes), (len(y), 1))
    targets = classes[classes != y[:, None]].reshape(len(y), num_classes - 1)
    image_index = np.repeat(np.arange(len(y)), num_classes - 1)
    result = attack(
        model,
        x[image_index],
        y[image_index],
        targeted=True,
        target=targets.reshape(-1),
        **options,
    )
    return AllTargetsResult(result=result, image_index=image_index, y=y, num_classes=num_classes)


def _check_distance(distance: str) -> None:
    if distance not in DISTANCES:
        raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}")
