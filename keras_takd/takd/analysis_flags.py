"""The flags the analysis commands share: `keras_takd.takd.figures`, `.claims` and `.summary`.

absl flag names are global, so a flag more than one of them takes is defined here, once, and
each command imports this module (and adopts the flags it uses as key flags); none imports
another to borrow its flags. Each command defines its own output flag (`--output_dir` for the
figures, `--output` for the claims).
"""

from __future__ import annotations

from absl import flags

RESULTS = flags.DEFINE_list(
    "results",
    None,
    "Comma-separated results CSVs (runs evaluated by keras_takd.takd.evaluate), each with the "
    "columns dataset, temperature, stage, role; each file once, and no model (dataset, "
    "temperature, stage, chain length) in two of them. The summary takes one run's results.csv.",
)
PER_IMAGE = flags.DEFINE_list(
    "per_image",
    None,
    "Comma-separated per-image CSVs of the same models (keras_takd.takd.schema."
    "PER_IMAGE_COLUMNS). Default: the per-image table beside each --results CSV "
    "(results.csv -> per_image.csv, <name>.csv -> <name>_per_image.csv), where there is one. "
    "With them, means get confidence intervals and models are compared image by image. Every "
    "row must be of a model of --results, each (model, attack, image) once.",
)
CI_LEVEL = flags.DEFINE_float("ci_level", 0.95, "Level of every confidence interval, in (0, 1).")
flags.register_validator(
    "ci_level", lambda value: 0 < value < 1, message="--ci_level must be in (0, 1), e.g. 0.95"
)
CAPTION = flags.DEFINE_string(
    "caption", None, "A line printed with the figures or report, e.g. the settings of the run."
)
flags.mark_flag_as_required("results")
