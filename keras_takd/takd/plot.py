"""Redraws the figures of Mandal & Guo's "Improving Defensive Distillation using Teacher
Assistant" (Figs. 3-8, plus the gradient-masking and fixed-budget checks) from a results CSV.

    python -m keras_takd.takd.plot --results=runs/results.csv --out=figures/
    python -m keras_takd.takd.plot --results=runs/sweep/results.csv,runs/multistep/results.csv

writes `<figure>.png` and `<figure>.pdf` for every figure whose columns hold data and logs the
ones it skips (see `keras_takd.takd.figures.FIGURES`).
"""

from __future__ import annotations

from absl import flags

from keras_takd.core.cli import run_main
from keras_takd.takd import figures

_RESULTS = flags.DEFINE_list(
    "results",
    ["runs/results.csv"],
    "Comma-separated results CSVs, each with the columns dataset, temperature, stage, role "
    "(e.g. the temperature sweep's and the multi-step chain's).",
)
_OUT = flags.DEFINE_string("out", "figures", "Folder for the PNG and PDF figures (created).")
_CAPTION = flags.DEFINE_string(
    "caption", None, "Note printed under every figure, e.g. the settings of the run."
)


def main(argv: list[str]) -> None:
    del argv  # run_main refuses positional arguments
    results = figures.read_results(_RESULTS.value)
    paths = figures.draw_all(results, _OUT.value, caption=_CAPTION.value)
    skipped = figures.skipped_figures(results)
    print(
        f"wrote {len(paths)} files to {_OUT.value}"
        + (f"; skipped {', '.join(skipped)} (no data)" if skipped else "")
    )


def run() -> None:
    """Console-script entry point (`keras-takd-plot`)."""
    run_main(main, "keras-takd-plot")


if __name__ == "__main__":
    run()
