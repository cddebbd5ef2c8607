"""Sets results beside the papers' claims (see `keras_takd.takd.analysis.claims`) as Markdown.

    python -m keras_takd.takd.claims \
        --results=runs/mnist_cpu/results.csv,runs/mnist_multistep_cpu/results.csv
    python -m keras_takd.takd.claims --results=runs/smoke/results.csv \
        --output=runs/smoke/figures/claims.md

prints per dataset a table of the claims (claim, the paper's figure, ours, its confidence
interval and n, the test applied, the verdict: agrees / disagrees / inconclusive) and one of the
numbers behind them (a row per chain length, T and stage), and with --output writes them to a
file (atomically; the folder is created). Robustness verdicts read the per-image table beside
each results CSV (or --per_image), so every verdict traces to its images. Imports no plotting
library.
"""

from __future__ import annotations

import pathlib

from absl import flags

from keras_takd.core import files
from keras_takd.core.cli import run_main
from keras_takd.takd import analysis_flags
from keras_takd.takd.analysis import tables
from keras_takd.takd.analysis.claims import report

_OUTPUT = flags.DEFINE_string("output", None, "Also write the Markdown to this file.")
_SEED_HALF_WIDTH = flags.DEFINE_float(
    "seed_half_width",
    None,
    "With several seeds: the half-width the seed-level 95%% t-interval should reach (e.g. 0.03 "
    "in L2, 2%% of it, for the replicate study): each seed-level comparison says how many "
    "seeds its measured between-seed SD needs for it.",
    lower_bound=0.0,
)
flags.register_validator(
    "seed_half_width",
    lambda value: value is None or value > 0,
    message="--seed_half_width must be a number > 0, e.g. 0.03",
)
_VALIDATION_PER_IMAGE = flags.DEFINE_list(
    "validation_per_image",
    None,
    "With several seeds: comma-separated per-image CSVs of ONE other run trained with the same "
    "settings (its evaluations, e.g. its C&W L2 and FMN L2 tables), read only to validate FMN "
    "against C&W: its chains count beside the run's, and it enters no comparison.",
)
flags.adopt_module_key_flags(analysis_flags)


def _check_output(output: pathlib.Path, inputs: list[str | pathlib.Path]) -> None:
    """Refuses an --output that would overwrite one of the input tables."""
    for given in inputs:
        if pathlib.Path(given).resolve() == output.resolve():
            raise ValueError(
                f"--output={output} is one of the input tables ({given}): expected a new file, "
                "e.g. claims.md beside them"
            )
    files.check_writable(output.parent)


def main(argv: list[str]) -> None:
    del argv  # run_main refuses positional arguments
    results, per_image = analysis_flags.RESULTS.value, analysis_flags.PER_IMAGE.value
    output = pathlib.Path(_OUTPUT.value) if _OUTPUT.value else None
    if output:  # the per-image tables beside the results are inputs too
        inputs = [*results, *tables.per_image_paths(results, per_image)]
        inputs += _VALIDATION_PER_IMAGE.value or []
        _check_output(output, inputs + [tables.predictions_path(r) for r in results])
    text = report.render(
        results,
        per_image,
        analysis_flags.CAPTION.value,
        analysis_flags.CI_LEVEL.value,
        _SEED_HALF_WIDTH.value,
        _VALIDATION_PER_IMAGE.value,
    )
    if output:
        files.write_text_atomic(output, text)
    print(text, end="")


def run() -> None:
    """Console-script entry point `keras-takd-claims`."""
    run_main(main, "keras-takd-claims")


if __name__ == "__main__":
    run()
