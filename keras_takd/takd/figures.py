"""Redraws the figures of Mandal & Guo's "Improving Defensive Distillation using Teacher
Assistant" (Figs. 3-8, plus the gradient-masking and fixed-budget checks) from results CSVs.

    python -m keras_takd.takd.figures --results=runs/results.csv --output_dir=figures/
    python -m keras_takd.takd.figures \
        --results=runs/sweep/results.csv,runs/multistep/results.csv --output_dir=figures/

writes `<figure>.png` and `<figure>.pdf` for every figure whose columns hold data and logs the
ones it skips (see `keras_takd.takd.analysis.figures.catalog.FIGURES`). With per-image data
(the per-image table beside a results CSV, read by default, or `--per_image`), the mean
perturbations carry their `--ci_level` intervals and `paired_differences` is drawn as well;
with several seeds (a `seed` column) each point is the mean over seeds with its t-interval over
seeds, `seed_level_differences` draws the seed-level paired differences and, for chains of
more than 3 models, `step_trend` each step against the teacher over seeds.
"""

from __future__ import annotations

from absl import flags

from keras_takd.core.cli import run_main
from keras_takd.takd import analysis_flags
from keras_takd.takd.analysis.figures import catalog

_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", "figures", "Folder for the PNG and PDF figures (created)."
)
flags.adopt_module_key_flags(analysis_flags)


def main(argv: list[str]) -> None:
    del argv  # run_main refuses positional arguments
    print(
        catalog.write_figures(
            analysis_flags.RESULTS.value,
            _OUTPUT_DIR.value,
            per_image=analysis_flags.PER_IMAGE.value,
            caption=analysis_flags.CAPTION.value,
            ci_level=analysis_flags.CI_LEVEL.value,
        )
    )


def run() -> None:
    """Console-script entry point `keras-takd-figures`."""
    run_main(main, "keras-takd-figures")


if __name__ == "__main__":
    run()
