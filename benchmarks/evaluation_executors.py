r"""The quick evaluation serially and on a local Ray with 2 workers: wall time, overhead per unit.

Issue 24, item 7. Evaluates one trained `--quick` run (flags/smoke.cfg) twice with the command
a user runs, `python -m keras_takd.takd.evaluate --flagfile=flags/smoke_eval.cfg`, each time
on a fresh copy of the run: once with --executor=serial, once with --executor=ray (a local Ray
that this command starts, one CPU per unit, so 2 workers on 2 cores). It reports the wall
times, the compute seconds the units recorded, the overhead per unit (worker-seconds not spent
computing a unit: Ray's start, each worker's TensorFlow import and model loads, the object
store) and whether the two runs wrote the same tables.

  python -m keras_takd.main --flagfile=flags/smoke.cfg --data_dir=../shared/data \
      --output_dir=/tmp/ray_bench/smoke
  python benchmarks/evaluation_executors.py --run_dir=/tmp/ray_bench/smoke \
      --data_dir=../shared/data

Writes benchmarks/results/evaluation_executors.{json,md}; the copies go to --work_dir.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(__file__))

from absl import app, flags  # noqa: E402
from common import reports  # noqa: E402
from common.environment import RESULTS_DIR, git_commit, machine_info, versions  # noqa: E402
from common.timing import timed, utc_now  # noqa: E402

_NAME = "evaluation_executors"
_REPO = pathlib.Path(__file__).resolve().parents[1]
_RUN_DIR = flags.DEFINE_string("run_dir", None, "A trained --quick run (flags/smoke.cfg).")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "The folder holding mnist.npz.")
_WORK_DIR = flags.DEFINE_string("work_dir", "/tmp/ray_bench/copies", "Where the copies go.")
_WORKERS = 2
flags.mark_flags_as_required(["run_dir", "data_dir"])


def _evaluate(run_dir: pathlib.Path, executor: str) -> dict[str, Any]:
    """Runs the quick evaluation on `run_dir` with `executor`; its wall time and units."""
    command = [
        sys.executable, "-m", "keras_takd.takd.evaluate", "--flagfile=flags/smoke_eval.cfg",
        f"--output_dir={run_dir}", f"--data_dir={_DATA_DIR.value}", f"--executor={executor}",
    ]  # fmt: skip
    with timed() as timing:
        done = subprocess.run(command, cwd=_REPO, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{executor} evaluation failed: {done.stderr.strip()[-500:]}")
    units = [
        json.loads(p.read_text())
        for p in (run_dir / "eval").rglob("*.json")
        if p.name != "config.json"
    ]
    return {
        "timing": timing.as_dict(),
        "units": len(units),
        "unit_seconds": round(sum(u["seconds"] for u in units), 3),
    }


def _same_tables(serial: pathlib.Path, on_ray: pathlib.Path) -> dict[str, Any]:
    import pandas as pd

    per_image = (serial / "per_image.csv").read_bytes() == (on_ray / "per_image.csv").read_bytes()
    a, b = (pd.read_csv(folder / "results.csv") for folder in (serial, on_ray))
    numeric = a.select_dtypes("number").columns
    relative = ((a[numeric] - b[numeric]).abs() / a[numeric].abs().clip(lower=1e-300)).max()
    return {
        "per_image_byte_equal": per_image,
        "results_byte_equal": (serial / "results.csv").read_bytes()
        == (on_ray / "results.csv").read_bytes(),
        "results_max_relative_difference": float(relative.fillna(0).max()),
    }


def _overhead(run: dict[str, Any], workers: int) -> float:
    """Worker-seconds per unit not spent computing it."""
    return (workers * run["timing"]["wall_s"] - run["unit_seconds"]) / run["units"]


def _markdown(results: dict[str, Any]) -> str:
    serial, ray = results["serial"], results["ray"]
    same = results["same_tables"]
    rows = [
        f"| serial | 1 | {serial['units']} | {serial['timing']['wall_s']:.1f} | "
        f"{serial['unit_seconds']:.1f} | {_overhead(serial, 1):.2f} |",
        f"| Ray, local | {_WORKERS} | {ray['units']} | {ray['timing']['wall_s']:.1f} | "
        f"{ray['unit_seconds']:.1f} | {_overhead(ray, _WORKERS):.2f} |",
    ]
    return "\n".join(
        [
            "# The quick evaluation, serially and on a local Ray",
            "",
            f"Run {results['date']} on commit {results['commit']}; {results['machine']['cpu']}, "
            f"{results['machine']['cores_usable']} usable cores; ray {results['versions']['ray']},"
            f" tensorflow {results['versions']['tensorflow']}. Command: see the script's "
            "docstring (`benchmarks/evaluation_executors.py`).",
            "",
            "| executor | workers | units | wall s | unit compute s | overhead s / unit |",
            "|---|---|---|---|---|---|",
            *rows,
            "",
            f"Speed-up {serial['timing']['wall_s'] / ray['timing']['wall_s']:.2f}x. Overhead per "
            "unit: (workers x wall - the units' own compute seconds) / units. Same outputs: "
            f"per_image.csv byte-equal {same['per_image_byte_equal']}, results.csv byte-equal "
            f"{same['results_byte_equal']} (largest relative difference "
            f"{same['results_max_relative_difference']:.1e}). Load during the runs: "
            f"{serial['timing']['load1_after']:.1f} / {ray['timing']['load1_after']:.1f} "
            "(1-minute load average after each).",
            "",
        ]
    )


def main(argv: list[str]) -> None:
    del argv
    source = pathlib.Path(_RUN_DIR.value)
    work = pathlib.Path(_WORK_DIR.value)
    shutil.rmtree(work, ignore_errors=True)
    copies = {name: work / name for name in ("serial", "ray")}
    for copy in copies.values():
        shutil.copytree(source, copy, ignore=shutil.ignore_patterns("eval", "results_*.csv"))
    runs = {name: _evaluate(copy, name) for name, copy in copies.items()}
    results = {
        "date": utc_now(),
        "commit": git_commit(_REPO),
        "machine": machine_info(),
        "versions": versions(["tensorflow", "keras", "ray", "numpy"]),
        **runs,
        "same_tables": _same_tables(copies["serial"], copies["ray"]),
    }
    print(reports.write_results(RESULTS_DIR, _NAME, results, _markdown).read_text())


if __name__ == "__main__":
    app.run(main)
