"""Timing on a shared machine: wall and CPU seconds, and the load around them.

Time on a shared machine is noisy, so every timed section records, besides wall seconds, the
process's CPU seconds (user + system), the 1-minute load average before and after, and the
number of runnable tasks sampled every second while it ran (from /proc). A section whose
CPU seconds / (wall seconds * cores) is far below 1 was starved by other work.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
import time
from collections.abc import Iterator

import numpy as np


class BudgetExceeded(Exception):
    """Raised inside a reference implementation when its time budget runs out."""


def utc_now() -> str:
    """The current time as the reports write it, e.g. 2026-12-06T09:30:00Z."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _loadavg() -> float:
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def _runnable_tasks() -> int:
    with open("/proc/loadavg") as f:
        return int(f.read().split()[3].split("/")[0])


@dataclasses.dataclass
class Timing:
    """Wall and CPU seconds of a timed section and the load around it."""

    wall_s: float = 0.0
    cpu_s: float = 0.0
    load1_before: float = 0.0
    load1_after: float = 0.0
    runnable_mean: float = 0.0
    runnable_max: int = 0

    def as_dict(self) -> dict[str, float]:
        cores = len(os.sched_getaffinity(0))
        out = {k: round(v, 3) for k, v in dataclasses.asdict(self).items()}
        out["cpu_share"] = round(self.cpu_s / max(self.wall_s * cores, 1e-9), 3)
        return out


@contextlib.contextmanager
def timed() -> Iterator[Timing]:
    """Times the enclosed block; samples runnable tasks once a second in a thread."""
    timing = Timing(load1_before=_loadavg())
    samples: list[int] = []
    stop = threading.Event()

    def sample():
        while not stop.wait(1.0):
            samples.append(_runnable_tasks())

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    cpu0, wall0 = os.times(), time.perf_counter()
    try:
        yield timing
    finally:
        wall1, cpu1 = time.perf_counter(), os.times()
        stop.set()
        thread.join()
        timing.wall_s = wall1 - wall0
        timing.cpu_s = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
        timing.load1_after = _loadavg()
        # The sampler and this process count themselves among the runnable tasks.
        timing.runnable_mean = float(np.mean(samples)) if samples else float("nan")
        timing.runnable_max = int(max(samples)) if samples else 0
