"""Redraws the figures of Mandal & Guo's "Improving Defensive Distillation using Teacher
Assistant" (Figs. 3-8, plus the gradient-masking and fixed-budget checks) from a results CSV.

    python -m keras_takd.takd.plot --results=runs/results.csv --out=figures/
    python -m keras_takd.takd.plot --results=runs/sweep/results.csv,runs/multistep/results.csv

writes `<figure>.png` and `<figure>.pdf` for every figure whose columns hold data and logs the
ones it skips (see `keras_takd.takd.figures.FIGURES`). With per-image data (`per_image.csv`
beside a results CSV, read by default, or `--per_image`), the mean perturbations carry their
`--confidence` intervals and `paired_differences` is drawn as well.
"""

from __future__ import annotations

import pathlib

from absl import flags

from keras_takd.core.cli import run_main
from keras_takd.takd import figures

PER_IMAGE_NAME = "per_image.csv"

_RESULTS = flags.DEFINE_list(
    "results",
    ["runs/results.csv"],
    "Comma-separated results CSVs, each with the columns dataset, temperature, stage, role "
    "(e.g. the temperature sweep's and the multi-step chain's).",
)
_PER_IMAGE = flags.DEFINE_list(
    "per_image",
    [],
    "Comma-separated per-image CSVs (keras_takd.takd.schema.PER_IMAGE_COLUMNS) of the same "
    f"models. Default: for each --results path, the {PER_IMAGE_NAME} beside it, if it exists. "
    "With them, mean perturbations get confidence intervals and paired_differences is drawn.",
)
_CONFIDENCE = flags.DEFINE_float(
    "confidence", 0.95, "Level of the confidence intervals drawn from per-image data, in (0, 1)."
)
flags.register_validator(
    "confidence", lambda value: 0 < value < 1, message="--confidence must be in (0, 1), e.g. 0.95"
)
_OUT = flags.DEFINE_string("out", "figures", "Folder for the PNG and PDF figures (created).")
_CAPTION = flags.DEFINE_string(
    "caption", None, "Note printed under every figure, e.g. the settings of the run."
)


def _per_image_paths(results: list[str], given: list[str]) -> list[pathlib.Path]:
    """The per-image CSVs to read: those given, else those beside the results CSVs."""
    if given:
        return [pathlib.Path(p) for p in given]
    beside = [pathlib.Path(p).parent / PER_IMAGE_NAME for p in results]
    return [p for p in beside if p.is_file()]


def main(argv: list[str]) -> None:
    del argv  # run_main refuses positional arguments
    results = figures.read_results(_RESULTS.value)
    per_image_paths = _per_image_paths(_RESULTS.value, _PER_IMAGE.value)
    per_image = figures.read_per_image(per_image_paths) if per_image_paths else None
    paths = figures.draw_all(
        results, _OUT.value, _CAPTION.value, per_image=per_image, confidence=_CONFIDENCE.value
    )
    skipped = figures.skipped_figures(results, per_image)
    if per_image_paths:
        uncertainty = f"{100 * _CONFIDENCE.value:g}% intervals from {len(per_image_paths)} "
        uncertainty += f"per-image file(s): {', '.join(map(str, per_image_paths))}"
    else:
        uncertainty = "no per-image data: no intervals"
    print(
        f"wrote {len(paths)} files to {_OUT.value}; {uncertainty}"
        + (f"; skipped {', '.join(skipped)} (no data)" if skipped else "")
    )


def run() -> None:
    """Console-script entry point (`keras-takd-plot`)."""
    run_main(main, "keras-takd-plot")


if __name__ == "__main__":
    run()
