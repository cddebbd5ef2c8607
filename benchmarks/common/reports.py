"""Benchmark results: summaries of attack runs, number formatting, and writing the reports.

Every script writes `<results_dir>/<name>.json` (every measured number) and `<name>.md` (the
report drawn from that JSON alone), and can redraw the .md from the .json without running
anything (`--report_only`), so a committed report is always its JSON's.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Callable
from typing import Any

import numpy as np

from keras_takd.core import files


def fmt(value, digits: int = 3) -> str:
    """`value` with `digits` significant digits; "-" for None, NaN or infinity.

    Integers and strings come back as they are.
    """
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "-"
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def estimate_dict(estimate) -> dict[str, float]:
    """A `keras_takd.core.statistics.Estimate` as the reports store it: value, interval, n."""
    return {
        "estimate": estimate.estimate,
        "low": estimate.low,
        "high": estimate.high,
        "n": estimate.n,
    }


def distortion_stats(values: np.ndarray, success: np.ndarray) -> dict[str, float]:
    """Mean and median of `values` over the successful examples (NaN if none)."""
    chosen = np.asarray(values, np.float64)[np.asarray(success, bool)]
    if chosen.size == 0:
        return {"mean": float("nan"), "median": float("nan")}
    return {"mean": float(np.mean(chosen)), "median": float(np.median(chosen))}


def attack_summary(kind: str, x, x_adv, success, timing, extra: dict[str, Any]) -> dict[str, Any]:
    """Success, distortion and timing of one attack run, with per-image values.

    Args:
        kind: the norm whose distortion is reported: l0, l2 or linf.
        x: the clean images; `x_adv` the attack's images, `success` whether each fooled.
        timing: the run's `common.timing.Timing`.
        extra: further entries of the record (pass counts, library settings...).

    Returns:
        The record the C&W speed report reads.
    """
    from keras_takd.attacks.common import perturbation_norms

    l0, l2, linf = perturbation_norms(x_adv, x)
    distortion = {"l0": l0, "l2": l2, "linf": linf}[kind]
    stats = distortion_stats(distortion, success)
    return {
        "images": int(len(x)),
        "seconds": timing.wall_s,
        "seconds_per_image": timing.wall_s / len(x),
        "cpu_seconds_per_image": timing.cpu_s / len(x),
        "timing": timing.as_dict(),
        "success_rate": float(np.mean(success)),
        "distortion_metric": kind,
        "mean_distortion": stats["mean"],
        "median_distortion": stats["median"],
        "per_image_success": [bool(v) for v in success],
        "per_image_distortion": [float(v) for v in distortion],
        **extra,
    }


def write_results(
    results_dir: str | pathlib.Path,
    name: str,
    results: dict[str, Any],
    markdown: Callable[[dict[str, Any]], str],
    indent: int = 1,
) -> pathlib.Path:
    """Writes `<results_dir>/<name>.json` and the report `markdown(results)` as `<name>.md`.

    Args:
        results_dir: the report folder (created if missing).
        name: the files' stem.
        results: the JSON-able record of the run.
        markdown: draws the report from the record alone.
        indent: the JSON's indentation (each script keeps its own).

    Returns:
        The path of the .md.
    """
    folder = pathlib.Path(results_dir)
    text = json.dumps(results, indent=indent, default=float) + "\n"
    files.write_text_atomic(folder / f"{name}.json", text)
    files.write_text_atomic(folder / f"{name}.md", markdown(results))
    return folder / f"{name}.md"


def rewrite_report(
    results_dir: str | pathlib.Path, name: str, markdown: Callable[[dict[str, Any]], str]
) -> pathlib.Path:
    """Redraws `<name>.md` from `<name>.json` in `results_dir`, running nothing.

    Raises:
        FileNotFoundError: there is no `<name>.json` there.
    """
    folder = pathlib.Path(results_dir)
    source = folder / f"{name}.json"
    if not source.is_file():
        raise FileNotFoundError(f"--report_only: no {source}; expected a finished run's JSON")
    files.write_text_atomic(folder / f"{name}.md", markdown(json.loads(source.read_text())))
    return folder / f"{name}.md"
