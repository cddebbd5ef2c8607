r"""`python -m keras_takd.takd.summary`: a run at a glance, in the terminal.

  python -m keras_takd.takd.summary --results=runs/smoke/results.csv

prints per model the test accuracy with its interval, per model and attack the share of
attacked images fooled and the mean minimal perturbation with their intervals and n, and the
evaluation's settings in words (`keras_takd.takd.analysis.summary`). Reads only; writes
nothing; imports no plotting library.
"""

from __future__ import annotations

from absl import flags

from keras_takd.core.cli import run_main
from keras_takd.takd import analysis_flags
from keras_takd.takd.analysis.summary import summarize

flags.declare_key_flag("results", flags.FLAGS)
flags.declare_key_flag("ci_level", flags.FLAGS)


def main(argv: list[str]) -> None:
    del argv  # run_main refuses positional arguments
    results = analysis_flags.RESULTS.value
    if len(results) != 1:
        raise ValueError(f"--results takes one run's results.csv, got {len(results)}: {results}")
    print(summarize(results[0], analysis_flags.CI_LEVEL.value), flush=True)


def run() -> None:
    """Console-script entry point `keras-takd-summary`."""
    run_main(main, "keras-takd-summary")


if __name__ == "__main__":
    run()
