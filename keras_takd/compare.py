"""Sets a results table beside the papers' claims (see `keras_takd.claims`) as Markdown.

    python -m keras_takd.compare \
        --results=runs/mnist_cpu/results.csv,runs/mnist_multistep_cpu/results.csv
    python -m keras_takd.compare --results=runs/smoke/results.csv --out=runs/smoke/figures/claims.md

prints per dataset a table of the claims (claim, the paper's figure, ours, the test applied,
the verdict) and one of the numbers behind them (a row per chain length, T and stage), and
with --out writes them to a file (atomically; the folder is created).
"""

from __future__ import annotations

import pathlib
import sys

from absl import app, flags

from keras_takd import claims, files, plotting

_RESULTS = flags.DEFINE_list(
    "results", None, "Comma-separated results CSVs (evaluated runs of keras_takd.evaluate)."
)
_OUT = flags.DEFINE_string("out", None, "Also write the Markdown to this file.")
_NOTE = flags.DEFINE_string("note", None, "A line printed above the tables, e.g. the settings.")
flags.mark_flag_as_required("results")


def render(paths, note: str | None = None) -> str:
    """The Markdown of every dataset in the results CSVs at `paths`."""
    table = plotting.read_results(paths)
    parts = ["# Our results beside the papers' claims", ""]
    if note:
        parts += [note, ""]
    for dataset in sorted(table["dataset"].unique()):
        parts.append(claims.to_markdown(claims.check_claims(table, dataset), dataset))
        parts.append(claims.summary_markdown(table, dataset))
    return "\n".join(parts)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    try:
        if _OUT.value:
            files.check_writable(pathlib.Path(_OUT.value).parent)
        text = render(_RESULTS.value, _NOTE.value)
        if _OUT.value:
            files.write_text_atomic(pathlib.Path(_OUT.value), text)
    except (FileNotFoundError, ValueError, OSError) as error:
        sys.exit(f"keras_takd.compare: error: {error}")
    print(text, end="")


def run() -> None:
    """Console-script entry point."""
    app.run(main)


if __name__ == "__main__":
    run()
