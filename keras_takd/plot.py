"""Redraws the figures of Mandal & Guo's "Improving Defensive Distillation using Teacher
Assistant" (Figs. 3-8, plus the gradient-masking and fixed-budget checks) from a results CSV.

    python -m keras_takd.plot --results=runs/results.csv --out=figures/
    python -m keras_takd.plot --results=runs/sweep/results.csv,runs/multistep/results.csv

writes `<figure>.png` and `<figure>.pdf` for every figure whose columns hold data and logs the
ones it skips (see `keras_takd.plotting.FIGURES`).
"""

from __future__ import annotations

import sys

from absl import app, flags

from keras_takd import plotting

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
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    try:
        results = plotting.read_results(_RESULTS.value)
        paths = plotting.draw_all(results, _OUT.value, caption=_CAPTION.value)
    except (FileNotFoundError, ValueError, OSError) as error:
        sys.exit(f"keras_takd.plot: error: {error}")
    skipped = plotting.skipped_figures(results)
    print(
        f"wrote {len(paths)} files to {_OUT.value}"
        + (f"; skipped {', '.join(skipped)} (no data)" if skipped else "")
    )


def run() -> None:
    """Console-script entry point (`keras-takd-plot`)."""
    app.run(main)


if __name__ == "__main__":
    run()
