"""Sets a results table beside the papers' claims (see `keras_takd.takd.claims`) as Markdown.

    python -m keras_takd.takd.compare \
        --results=runs/mnist_cpu/results.csv,runs/mnist_multistep_cpu/results.csv
    python -m keras_takd.takd.compare --results=runs/smoke/results.csv \
        --out=runs/smoke/figures/claims.md

prints per dataset a table of the claims (claim, the paper's figure, ours, its confidence
interval and n, the test applied, the verdict: agrees / disagrees / inconclusive) and one of the
numbers behind them (a row per chain length, T and stage), and with --out writes them to a file
(atomically; the folder is created). Robustness verdicts read the per-image table beside each
results CSV (per_image.csv, or --per_image), so every verdict traces to its images.
"""

from __future__ import annotations

import pathlib

import pandas as pd
from absl import flags

from keras_takd.core import files
from keras_takd.core.cli import run_main
from keras_takd.takd import claims, evaluation, figures

_RESULTS = flags.DEFINE_list(
    "results", None, "Comma-separated results CSVs (evaluated runs of keras_takd.takd.evaluate)."
)
_OUT = flags.DEFINE_string("out", None, "Also write the Markdown to this file.")
_NOTE = flags.DEFINE_string("note", None, "A line printed above the tables, e.g. the settings.")
_PER_IMAGE = flags.DEFINE_list(
    "per_image",
    None,
    "Comma-separated per-image CSVs of the same runs (default: the per_image.csv beside each "
    "results CSV, where there is one). Without them robustness claims are inconclusive.",
)
_CONFIDENCE = flags.DEFINE_float(
    "confidence", 0.95, "Level of every confidence interval.", lower_bound=0.5, upper_bound=0.999
)
flags.mark_flag_as_required("results")


def _per_image_paths(results: list[str]) -> list[pathlib.Path]:
    """Each results CSV's per-image table, where it has one."""
    paths = [evaluation.per_image_path(path) for path in results]
    return [path for path in paths if path.is_file()]


def render(paths, note: str | None = None, per_image_paths=(), confidence: float = 0.95) -> str:
    """The Markdown of every dataset in the results CSVs at `paths`.

    Args:
        paths: results CSVs.
        note: a line printed above the tables.
        per_image_paths: per-image CSVs of the same runs (none: robustness is inconclusive).
        confidence: the level of every interval.
    """
    table = figures.read_results(paths)
    per_image = None
    if per_image_paths:
        per_image = pd.concat([evaluation.read_per_image(p) for p in per_image_paths])
    parts = ["# Our results beside the papers' claims", ""]
    if note:
        parts += [note, ""]
    sources = ", ".join(str(p) for p in per_image_paths) or "none (verdicts without intervals)"
    parts += [
        f"Intervals: {confidence:.0%}, paired over images where per-image data exist "
        f"(keras_takd.core.statistics; bootstrap seed 0). Per-image data: {sources}.",
        "",
    ]
    for dataset in sorted(table["dataset"].unique()):
        checked = claims.check_claims(table, dataset, per_image, confidence)
        parts.append(claims.to_markdown(checked, dataset, confidence))
        parts.append(claims.summary_markdown(table, dataset))
    return "\n".join(parts)


def main(argv: list[str]) -> None:
    del argv  # run_main refuses positional arguments
    if _OUT.value:
        files.check_writable(pathlib.Path(_OUT.value).parent)
    per_image = _PER_IMAGE.value
    per_image = _per_image_paths(_RESULTS.value) if per_image is None else per_image
    text = render(_RESULTS.value, _NOTE.value, per_image, _CONFIDENCE.value)
    if _OUT.value:
        files.write_text_atomic(pathlib.Path(_OUT.value), text)
    print(text, end="")


def run() -> None:
    """Console-script entry point `keras-takd-compare`."""
    run_main(main, "keras-takd-compare")


if __name__ == "__main__":
    run()
