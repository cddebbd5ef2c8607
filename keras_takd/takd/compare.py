"""Sets a results table beside the papers' claims (see `keras_takd.takd.claims`) as Markdown.

    python -m keras_takd.takd.compare \
        --results=runs/mnist_cpu/results.csv,runs/mnist_multistep_cpu/results.csv
    python -m keras_takd.takd.compare --results=runs/smoke/results.csv \
        --out=runs/smoke/figures/claims.md

prints per dataset a table of the claims (claim, the paper's figure, ours, the test applied,
the verdict) and one of the numbers behind them (a row per chain length, T and stage), and
with --out writes them to a file (atomically; the folder is created).
"""

from __future__ import annotations

import pathlib

from absl import flags

from keras_takd.core import files
from keras_takd.core.cli import run_main
from keras_takd.takd import claims, figures

_RESULTS = flags.DEFINE_list(
    "results", None, "Comma-separated results CSVs (evaluated runs of keras_takd.takd.evaluate)."
)
_OUT = flags.DEFINE_string("out", None, "Also write the Markdown to this file.")
_NOTE = flags.DEFINE_string("note", None, "A line printed above the tables, e.g. the settings.")
flags.mark_flag_as_required("results")


def render(paths, note: str | None = None) -> str:
    """The Markdown of every dataset in the results CSVs at `paths`."""
    table = figures.read_results(paths)
    parts = ["# Our results beside the papers' claims", ""]
    if note:
        parts += [note, ""]
    for dataset in sorted(table["dataset"].unique()):
        parts.append(claims.to_markdown(claims.check_claims(table, dataset), dataset))
        parts.append(claims.summary_markdown(table, dataset))
    return "\n".join(parts)


def main(argv: list[str]) -> None:
    del argv  # run_main refuses positional arguments
    if _OUT.value:
        files.check_writable(pathlib.Path(_OUT.value).parent)
    text = render(_RESULTS.value, _NOTE.value)
    if _OUT.value:
        files.write_text_atomic(pathlib.Path(_OUT.value), text)
    print(text, end="")


def run() -> None:
    """Console-script entry point `keras-takd-compare`."""
    run_main(main, "keras-takd-compare")


if __name__ == "__main__":
    run()
