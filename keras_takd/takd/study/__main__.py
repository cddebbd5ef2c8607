r"""`python -m keras_takd.takd.study`: a whole study, from its training and evaluation flagfiles.

Trains every chain (one per temperature and seed), evaluates every model, and writes the
tables (results.csv, per_image.csv), the claims (claims.md) and the figures (see
`keras_takd.takd.study.pipeline`), with one progress line per finished unit:

  python -m keras_takd.takd.study --flagfile=flags/smoke.cfg --flagfile=flags/smoke_eval.cfg
  python -m keras_takd.takd.study --flagfile=flags/mnist_takd.cfg \
      --flagfile=flags/mnist_takd_eval.cfg --executor=ray              # a local Ray
  python -m keras_takd.takd.study ... --executor=ray --ray_address=head:6379   # a cluster
  python -m keras_takd.takd.study ... --executor=ray --gpus_per_unit=1  # one GPU per unit

It takes every flag of `keras_takd.main` and `keras_takd.takd.evaluate` (the executor flags
apply to training and evaluation units alike) but --num_shards, --shard_index, --output and
--replace. Rerunning the same command resumes: trained chains and stored units are skipped.
"""

from __future__ import annotations

import functools
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # see keras_takd.core.cli.import_tensorflow

from absl import flags, logging

from keras_takd.core.cli import import_tensorflow, run_main
from keras_takd.takd import evaluate, train
from keras_takd.takd.run_flags import OUTPUT_DIR

_FIGURES_DIR = flags.DEFINE_string(
    "figures_dir", None, "Where the figures and claims.md go (default: <output_dir>/figures)."
)
# As the analysis commands' (`keras_takd.takd.analysis_flags`, which this command does not
# import: its --results is required there, and a study's results are its own).
_CI_LEVEL = flags.DEFINE_float(
    "ci_level", 0.95, "Level of every confidence interval, in (0, 1).", lower_bound=0.0
)
flags.register_validator(
    "ci_level", lambda value: 0 < value < 1, message="--ci_level must be in (0, 1), e.g. 0.95"
)
_CAPTION = flags.DEFINE_string(
    "caption", None, "A line printed with the figures and claims, e.g. the study's settings."
)
# Evaluation's flags a study has no use for: it evaluates every image into its own tables.
_REFUSED = ("num_shards", "shard_index", "output", "replace")

flags.adopt_module_key_flags(train)
flags.adopt_module_key_flags(evaluate)
flags.register_multi_flags_validator(
    list(_REFUSED),
    lambda values: not any(flags.FLAGS[name].present for name in _REFUSED),
    message=f"a study takes none of --{', --'.join(_REFUSED)}: it evaluates every image of "
    "the run folder itself (use --executor=ray to spread the work)",
)


def main(argv: list[str]) -> None:
    del argv  # run_main refuses positional arguments
    from keras_takd.core.results import check_declaration
    from keras_takd.takd.study import run_study

    check_declaration(OUTPUT_DIR.value, train.recorded_run_info())  # before Ray and TensorFlow
    executor = evaluate.make_executor()  # an unreachable --ray_address fails here, at once
    import_tensorflow()
    logging.set_verbosity(logging.ERROR)  # TensorFlow's export and retracing chatter
    run_study(
        OUTPUT_DIR.value,
        train.data_settings(),
        train.chain_settings(),
        train.train_config(),
        evaluate.evaluation_config(),
        executor=executor,
        run_info=train.recorded_run_info(),
        figures_dir=_FIGURES_DIR.value,
        caption=_CAPTION.value,
        ci_level=_CI_LEVEL.value,
        workers=executor.room() if executor is not None else 1,
        log=functools.partial(evaluate.log_line, prog="keras-takd-study"),
        verbose=evaluate.attack_verbose(),
    )


def run() -> None:
    """Console-script entry point `keras-takd-study`."""
    run_main(main, "keras-takd-study")


if __name__ == "__main__":
    run()
