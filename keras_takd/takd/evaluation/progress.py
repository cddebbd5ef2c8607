"""The progress lines of an evaluation: a unit's start, its end, and the time left.

The expected time of a unit is the mean of the finished units of its kind (cached or just
computed: each records its "seconds"), so the estimates sharpen as the evaluation goes on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from keras_takd.takd.evaluation.indicator_units import indicated_attack, indicator_counts
from keras_takd.takd.evaluation.tables import final_columns
from keras_takd.takd.schema import APGD_ATTACKS, INDICATORS


def seconds_by_kind(done: Iterable[Mapping[str, Mapping]]) -> dict[str, list[float]]:
    """The measured seconds of every finished unit, by kind.

    Args:
        done: each model's finished units, {kind: unit}.
    """
    seconds = {}
    for units in done:
        for kind, value in units.items():
            if isinstance(value.get("seconds"), (int, float)):
                seconds.setdefault(kind, []).append(float(value["seconds"]))
    return seconds


def duration(seconds: float) -> str:
    """A duration in words: "under 1 s", "12 s", "7 min" or "1.5 h"."""
    if seconds < 0.5:
        return "under 1 s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def about(seconds: float) -> str:
    """An estimated duration: "about 12 s", "about 7 min", or "under 1 s" (never "about under")."""
    text = duration(seconds)
    return text if text.startswith("under") else f"about {text}"


def _where(row: Mapping) -> str:
    return f"{row['dataset']} T={float(row['temperature']):g} stage {int(row['stage'])}"


def start_line(
    row: Mapping, kind: str, images: Sequence[int], measured: Mapping[str, list[float]]
) -> str:
    """The line of a unit that starts, with its expected time.

    Args:
        row: the model's results row.
        kind: the unit's kind.
        images: its images [start, stop).
        measured: `seconds_by_kind` of the finished units.
    """
    start, stop = images
    seconds = measured.get(kind, [])
    expected = (
        f"{about(float(np.mean(seconds)))} (mean of {len(seconds)} finished)"
        if seconds
        else "first of its kind, no estimate yet"
    )
    return f"{_where(row)} {kind} on test images {start}-{stop}: started, {expected}"


def time_left(remaining: Sequence[str], measured: Mapping[str, list[float]]) -> str:
    """ "; 3 units left, about 12 min" from the mean time of each kind, or "; evaluation complete".

    Args:
        remaining: the kinds of the units still to compute.
        measured: `seconds_by_kind` of the finished units.
    """
    if not remaining:
        return "; evaluation complete"
    unknown = sorted({kind for kind in remaining if kind not in measured})
    left = sum(float(np.mean(measured[kind])) for kind in remaining if kind in measured)
    units = f"{len(remaining)} unit{'s' if len(remaining) > 1 else ''}"
    text = f"; {units} left, {about(left)}"
    return text + (f" plus the {', '.join(unknown)} units" if unknown else "")


# How to ask for less than the paper's evaluation, named where its cost is announced.
SMALLER_EVALUATION = (
    "--flagfile=flags/smoke_eval.cfg (10 images, minutes), or fewer images, e.g. "
    "--num_images=50 --attack_images=l0=10"
)
# From this many attacked images on, an evaluation with an unmeasured kind is told its size.
LARGE_EVALUATION = 100


def expected_cost(
    remaining: Sequence[str], measured: Mapping[str, list[float]], num_images: int
) -> str:
    """The line an evaluation prints before it starts: what it will cost, and where from.

    The figure is the mean time of the finished units of each kind on this machine (cached by
    an earlier evaluation of the same settings, or by other models); a kind without one is
    named, and an evaluation of `LARGE_EVALUATION` images or more (the paper's: 1,000, with
    L0) is told it takes hours on a CPU and how to run a smaller one.

    Args:
        remaining: the kinds of the units to compute.
        measured: `seconds_by_kind` of the finished units.
        num_images: the images each attack unit attacks (`EvaluationConfig.num_images`).
    """
    if not remaining:
        return "expected cost: nothing to compute"
    known = [kind for kind in remaining if kind in measured]
    unknown = sorted({kind for kind in remaining if kind not in measured})
    parts = []
    if known:
        seconds = sum(float(np.mean(measured[kind])) for kind in known)
        parts.append(
            f"{about(seconds)} on this CPU for {len(known)} of the {len(remaining)} units (the "
            "mean time of the finished units of their kinds)"
        )
    if unknown:
        parts.append(f"no measured time yet for {', '.join(unknown)} (their first units give one)")
    line = "expected cost: " + "; ".join(parts)
    if unknown and num_images >= LARGE_EVALUATION:
        line += (
            f". Attacking {num_images} images per model (the paper's settings: 1,000, with L0) "
            f"takes hours on a CPU; for a smaller evaluation: {SMALLER_EVALUATION}"
        )
    return line


def unit_line(row: Mapping, kind: str, value: Mapping) -> str:
    """The line of a unit that ended: its headline numbers and its time."""
    attack = indicated_attack(kind)
    if kind == "metrics":
        m = value["metrics"]
        what = f"accuracy {100 * m['test_accuracy']:.2f}%, confidence {m['confidence']:.3f}"
    elif attack is not None:
        counts = indicator_counts(attack, value["flags"])
        what = ", ".join(
            f"{name} {'-' if pd.isna(n) else int(n)}"
            for name, n in zip(INDICATORS, counts.values(), strict=True)
        )
        what += f" of {len(value['index'])} attacked images"
    elif kind in APGD_ATTACKS:
        s = final_columns(kind, value["statistics"])
        what = (
            f"robust accuracy {s[f'{kind}_robust_accuracy']:.2f} at eps {s[f'{kind}_eps']:g}, "
            f"success {s[f'{kind}_success_rate']:.2f} of {s[f'{kind}_attacked']}"
        )
    else:
        what = _minimal_norm_words(kind, final_columns(kind, value["statistics"]))
    return f"{_where(row)} {kind}: {what} ({value['seconds']:.1f} s)"


def _minimal_norm_words(kind: str, columns: Mapping[str, float]) -> str:
    """A minimal-norm attack's success and distances, without NaN where nothing was fooled."""
    attacked = int(columns[f"{kind}_attacked"])
    if attacked == 0:
        return "no image attacked (the model misclassified every one)"
    if pd.isna(columns[f"{kind}_mean"]):
        return f"success 0.00 of {attacked}, no image fooled"
    return (
        f"success {columns[f'{kind}_success_rate']:.2f} of {attacked}, "
        f"mean {columns[f'{kind}_mean']:.4g}, max {columns[f'{kind}_max']:.4g}"
    )
