r"""The quick study serially and on a local Ray with 2 workers: wall time, overhead per unit.

Issue 24, item 7. Runs the study of `./reproduce.sh --quick` with the command a user runs,
`python -m keras_takd.takd.study --flagfile=flags/smoke.cfg --flagfile=flags/smoke_eval.cfg`,
twice, each into a fresh output folder under --work_dir: once with --executor=serial, once with
--executor=ray (a local Ray that the command starts, RAY_ADDRESS unset, one CPU per unit: 2
workers on 2 cores). Every unit, a chain to train or an evaluation unit, is timed where it ran
(the study's "<unit> done (<seconds> s)" lines, to 0.1 s); the report gives the wall times,
the units, the units' own compute seconds, the overhead per unit (worker-seconds not spent
computing a unit: starting Ray and its workers, each worker's TensorFlow import, model loads,
the object store, writing the run folder, the figures), and whether the two studies wrote the
same per_image.csv and results.csv.

Same outputs. The serial study runs with --serial_threads TensorFlow threads (default 1, as a
Ray task of one CPU has): training on another number of threads sums in another order and can
end a validation image apart (tests/takd/study/test_pipeline.py), after which every attack
differs. With equal threads, per_image.csv is compared byte for byte and results.csv column by
column but for wall time and folder paths, at 0 tolerance: each unit runs with the same seeds,
op determinism and thread count on either executor.

  python benchmarks/study_executors.py --data_dir=../shared/data       # the timing run
  python benchmarks/study_executors.py --data_dir=../shared/data --tiny \
      --results_dir=/tmp/study_executors                                # a check of the script
  python benchmarks/study_executors.py --report_only                    # redraw the .md

Writes <results_dir>/study_executors.{json,md}; the studies go to --work_dir.
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(__file__))

from absl import flags  # noqa: E402
from common import reports  # noqa: E402
from common.environment import RESULTS_DIR, git_commit, machine_info, versions  # noqa: E402
from common.timing import timed, utc_now  # noqa: E402

from keras_takd.core import cli  # noqa: E402

_NAME = "study_executors"
_REPO = pathlib.Path(__file__).resolve().parents[1]
_EXECUTORS = ("serial", "ray")
_FLAGFILES = ("--flagfile=flags/smoke.cfg", "--flagfile=flags/smoke_eval.cfg")
# --tiny: 2 chains of 2 models on 256 images, L2 on 2 images: a check that the script runs.
_TINY = (
    "--stages=2", "--epochs=1", "--train_size=256", "--validation_size=64", "--test_size=32",
    "--attacks=l2", "--num_images=2", "--metric_images=32", "--l2_max_iterations=5",
    "--l2_binary_search_steps=1", "--nogradient_masking",
)  # fmt: skip
# The columns of results.csv that differ between two trainings: wall time and the folder.
_RUN_COLUMNS = ("train_seconds", "saved_model", "keras_model")
_DONE = re.compile(r"^study: (?P<unit>.+) done \((?P<seconds>[0-9.]+) s\); ")

_DATA_DIR = flags.DEFINE_string("data_dir", None, "The folder holding mnist.npz.")
_WORK_DIR = flags.DEFINE_string(
    "work_dir", "/tmp/study_executors", "Where the two studies go (emptied first)."
)
_RESULTS_DIR = flags.DEFINE_string("results_dir", str(RESULTS_DIR), "Report folder.")
_SERIAL_THREADS = flags.DEFINE_integer(
    "serial_threads",
    1,
    "TensorFlow threads of the serial study (0: TensorFlow's default, all cores); a Ray task "
    "has one per CPU of its unit, and only equal threads give the same outputs.",
    lower_bound=0,
)
_TINY_FLAG = flags.DEFINE_bool("tiny", False, "Shrink the study to seconds (checks the script).")
_REPORT_ONLY = flags.DEFINE_bool(
    "report_only", False, f"Compute nothing: redraw <results_dir>/{_NAME}.md from its json."
)


def _command(output_dir: pathlib.Path, executor: str) -> list[str]:
    """The study's command line (run from the repository root)."""
    tiny = list(_TINY) if _TINY_FLAG.value else []
    return [
        "python", "-m", "keras_takd.takd.study", *_FLAGFILES,
        f"--data_dir={pathlib.Path(_DATA_DIR.value).resolve()}",
        f"--output_dir={output_dir}", f"--executor={executor}", *tiny,
    ]  # fmt: skip


def _thread_variables(executor: str) -> list[str]:
    """["TF_NUM_INTRAOP_THREADS=1", ...]: the serial study's threads (--serial_threads)."""
    if executor != "serial" or not _SERIAL_THREADS.value:
        return []
    return [f"TF_NUM_{pool}_THREADS={_SERIAL_THREADS.value}" for pool in ("INTRAOP", "INTEROP")]


def _environment(executor: str) -> dict[str, str]:
    """This process's environment: no RAY_ADDRESS (a local Ray), the serial study's threads."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_REPO), env.get("PYTHONPATH")]))
    return env | dict(variable.split("=") for variable in _thread_variables(executor))


def _study(output_dir: pathlib.Path, executor: str) -> dict[str, Any]:
    """Runs the study into `output_dir` on `executor`: its wall time and its units' seconds.

    Raises:
        RuntimeError: the study failed (the end of its stderr).
    """
    command = _command(output_dir, executor)
    with timed() as timing:
        done = subprocess.run(
            [sys.executable, *command[1:]],
            cwd=_REPO,
            env=_environment(executor),
            capture_output=True,
            text=True,
            check=False,
        )
    if done.returncode != 0:
        raise RuntimeError(f"the {executor} study failed: {done.stderr.strip()[-500:]}")
    units = [m.groupdict() for m in map(_DONE.match, done.stdout.splitlines()) if m]
    training = [float(u["seconds"]) for u in units if u["unit"].startswith("training ")]
    evaluation = [float(u["seconds"]) for u in units if not u["unit"].startswith("training ")]
    return {
        "command": " ".join([*_thread_variables(executor), *command]),
        "timing": timing.as_dict(),
        "units": len(units),
        "chains": len(training),
        "train_seconds": round(sum(training), 1),
        "evaluation_seconds": round(sum(evaluation), 1),
        "unit_seconds": round(sum(training) + sum(evaluation), 1),
    }


def _same_outputs(serial: pathlib.Path, on_ray: pathlib.Path) -> dict[str, Any]:
    """Whether the studies wrote the same per_image.csv and results.csv (module docstring)."""
    import pandas as pd

    per_image = (serial / "per_image.csv").read_bytes() == (on_ray / "per_image.csv").read_bytes()
    a, b = (
        pd.read_csv(folder / "results.csv").drop(columns=list(_RUN_COLUMNS))
        for folder in (serial, on_ray)
    )
    different = [c for c in a.columns if c not in b.columns or not a[c].equals(b[c])]
    return {
        "per_image_byte_equal": per_image,
        "results_equal_but_run_columns": not different and list(a.columns) == list(b.columns),
        "results_columns_that_differ": different,
    }


def _overhead(run: dict[str, Any], workers: int) -> float:
    """Worker-seconds per unit not spent computing it."""
    return (workers * run["timing"]["wall_s"] - run["unit_seconds"]) / run["units"]


_TINY_NOTE = "; **--tiny**: a check of the script, not the quick study"


def markdown(results: dict[str, Any]) -> str:
    """The report, drawn from the results alone."""
    runs, same = results["runs"], results["same_outputs"]
    workers = {"serial": 1, "ray": results["ray_workers"]}
    rows = [
        f"| {name} | {workers[name]} | {run['units']} ({run['chains']} chains) | "
        f"{run['timing']['wall_s']:.1f} | {run['train_seconds']:.1f} | "
        f"{run['evaluation_seconds']:.1f} | {_overhead(run, workers[name]):.2f} | "
        f"{run['timing']['load1_after']:.1f} |"
        for name, run in runs.items()
    ]
    serial, ray = (runs[name]["timing"]["wall_s"] for name in _EXECUTORS)
    return "\n".join(
        [
            "# The quick study, serially and on a local Ray",
            "",
            f"Run {results['date']} on commit {results['commit']}; "
            f"{results['machine']['cpu']}, {results['machine']['cores_usable']} usable cores; "
            f"ray {results['versions']['ray']}, tensorflow {results['versions']['tensorflow']}"
            f"{_TINY_NOTE if results['tiny'] else ''}. Serial study on "
            f"{results['serial_threads'] or 'all'} TensorFlow thread(s).",
            "",
            "| executor | workers | units | wall s | training s | evaluation s | "
            "overhead s / unit | load after |",
            "|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            f"Speed-up {serial / ray:.2f}x. Training and evaluation s: the units' own seconds "
            "where they ran. Overhead per unit: (workers x wall - the units' seconds) / units. "
            f"Same outputs: per_image.csv byte-equal {same['per_image_byte_equal']}; "
            "results.csv equal but for wall time and paths "
            f"{same['results_equal_but_run_columns']}"
            + (
                f" (differing: {', '.join(same['results_columns_that_differ'])})"
                if same["results_columns_that_differ"]
                else ""
            )
            + ".",
            "",
            "Commands (from the repository root):",
            "",
            "```",
            *(run["command"] for run in runs.values()),
            "```",
            "",
        ]
    )


def main(argv: list[str]) -> None:
    del argv
    if _REPORT_ONLY.value:
        reports.rewrite_report(_RESULTS_DIR.value, _NAME, markdown)
        return
    if not _DATA_DIR.value:
        raise ValueError("--data_dir: missing; expected the folder holding mnist.npz")
    work = pathlib.Path(_WORK_DIR.value).resolve()
    shutil.rmtree(work, ignore_errors=True)
    runs = {name: _study(work / name, name) for name in _EXECUTORS}
    machine = machine_info()
    results = {
        "date": utc_now(),
        "commit": git_commit(_REPO),
        "machine": machine,
        "versions": versions(["tensorflow", "keras", "ray", "numpy"]),
        "tiny": _TINY_FLAG.value,
        "serial_threads": _SERIAL_THREADS.value,
        "ray_workers": machine["cores_visible"],  # a local Ray: one worker per CPU it counts
        "runs": runs,
        "same_outputs": _same_outputs(work / "serial", work / "ray"),
    }
    print(reports.write_results(_RESULTS_DIR.value, _NAME, results, markdown).read_text())


if __name__ == "__main__":
    cli.run_main(main, _NAME)
