"""The progress lines of an evaluation: its expected cost, a unit's start, its end, the time left.

The expected time of a unit is the mean of the finished units of its kind (cached or just
computed: each records its "seconds"), so the estimates sharpen as the evaluation goes on.
Before any unit of a kind has finished, an attack run at its default settings (the paper's)
is estimated from `REFERENCE_SECONDS_PER_IMAGE`, measured on a 2-core CPU; other settings
get no estimate until their first unit ends. A unit still running after `HEARTBEAT_SECONDS`
says so every `HEARTBEAT_SECONDS` (`Heartbeat`), so a long unit is never silent.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence

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


# Seconds per attacked image of each attack at its default settings (C&W: the paper's, 9 x
# 10,000 L2 iterations; FMN: 1,000 steps), batch 100 on a 2-core AMD EPYC, from
# benchmarks/results/fmn_vs_cw_decisive.md (2026-12-05; the larger of its two models).
REFERENCE_SECONDS_PER_IMAGE = {
    "l2": 21.8,
    "l0": 25.6,
    "linf": 22.1,
    "fmn_l2": 0.70,
    "fmn_l0": 0.84,
    "fmn_linf": 0.81,
}
REFERENCE_SOURCE = "benchmarks/results/fmn_vs_cw_decisive.md, 2 CPU cores"
# Above this expected cost, the first line also says how to run a smaller evaluation.
LONG_EVALUATION_SECONDS = 600.0
# A unit expected to take at most this long gets no start line (its end line follows).
SHORT_UNIT_SECONDS = 10.0
# A unit running this long says it is still running, and again every as many seconds.
HEARTBEAT_SECONDS = 60.0


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
    """ "about 12 s", or "under 1 s" (never "about under 1 s")."""
    return "under 1 s" if seconds < 0.5 else f"about {duration(seconds)}"


def reference_seconds(kind: str, images: int, default_settings: bool) -> float | None:
    """The expected seconds of an attack unit from `REFERENCE_SECONDS_PER_IMAGE`, or None.

    Args:
        kind: the unit's kind (the gradient-masking attack counts as L2).
        images: how many images it attacks.
        default_settings: whether the attack runs at its default settings, the only ones the
            reference was measured at.
    """
    kind = "l2" if kind.startswith("l2_softmax") else kind
    if not default_settings or kind not in REFERENCE_SECONDS_PER_IMAGE:
        return None
    return REFERENCE_SECONDS_PER_IMAGE[kind] * images


def cost_line(expected: Mapping[str, float], quick_flagfile: str) -> str:
    """The line that says what an evaluation will cost, before it starts ("" if it is short).

    Args:
        expected: {kind: expected seconds of all its units to compute} from the references.
        quick_flagfile: the flagfile of a small evaluation, named to users of a long one.
    """
    total = sum(expected.values())
    if total < LONG_EVALUATION_SECONDS:
        return ""
    kinds = ", ".join(f"{kind} {duration(s)}" for kind, s in sorted(expected.items()))
    return (
        f"expected cost: up to {about(total)} ({kinds}; attacks at their default settings, the "
        f"paper's, measured in {REFERENCE_SOURCE}; misclassified images are skipped); for a "
        f"quick look first use "
        f"--flagfile={quick_flagfile} or fewer --num_images"
    )


def _where(row: Mapping) -> str:
    """ "mnist T=20 stage 3", with "seed 4" before the stage in a run of several seeds."""
    seed = row.get("seed")
    seed = "" if seed is None or seed != seed else f"seed {int(seed)} "  # NaN: one seed
    return f"{row['dataset']} T={float(row['temperature']):g} {seed}stage {int(row['stage'])}"


def unit_name(row: Mapping, kind: str) -> str:
    """ "mnist T=20 stage 3 l2": the model and kind of a unit, as its lines name it."""
    return f"{_where(row)} {kind}"


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
    return f"{unit_name(row, kind)} on test images {start}-{stop}: started, {expected}"


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
        what = _attack_headline(kind, final_columns(kind, value["statistics"]))
    return f"{unit_name(row, kind)}: {what} ({value['seconds']:.1f} s)"


def _attack_headline(kind: str, s: Mapping) -> str:
    attacked = int(s[f"{kind}_attacked"])
    if attacked == 0:
        return "no image attacked (the model misclassifies every image of the block)"
    fooled = f"success {s[f'{kind}_success_rate']:.2f} of {attacked}"
    if pd.isna(s[f"{kind}_mean"]):
        return f"{fooled}, no image fooled"
    return f"{fooled}, mean {s[f'{kind}_mean']:.4g}, max {s[f'{kind}_max']:.4g}"


class Heartbeat:
    """Says, every `interval` seconds, which units are still running and for how long.

    A thread of the calling process: `started(key, name, expected)` when the executor takes a unit,
    `ended(key)` when its result is stored; `stop()` at the end. Thread-safe, so executors
    that run several units at once are covered too.
    """

    def __init__(self, log: Callable[[str], None], interval: float = HEARTBEAT_SECONDS) -> None:
        self._log, self._interval = log, interval
        self._running: dict[Hashable, tuple[str, float, float | None]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)
        self._thread.start()

    def started(self, key: Hashable, name: str, expected: float | None) -> None:
        """A unit started: `key` identifies it, `name` is how lines name it, `expected` its
        expected seconds (None: unknown)."""
        with self._lock:
            self._running[key] = (name, time.monotonic(), expected)

    def ended(self, key: Hashable) -> None:
        """The unit `key` ended."""
        with self._lock:
            self._running.pop(key, None)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        while not self._stop.wait(self._interval):
            now = time.monotonic()
            with self._lock:  # held while logging: no line of a unit after `ended`
                for name, began, expected in self._running.values():
                    of = f" of {about(expected)} expected" if expected else ""
                    self._log(f"{name}: still running, {duration(now - began)}{of}")
