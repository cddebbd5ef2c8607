r"""Distil a deterministic student from a smoothed, adversarially trained CNI teacher.

Katz & Reches, "Knowledge Distillation via Smoothed Models and Adversarial Robustness" (2022),
on the smoothed noise-injection models of Nemcovsky et al. (arXiv:1911.07198): PGD-trained CNI
teacher, smoothed soft targets, (adversarial) distillation, transfer-attack matrix. The work is
`keras_takd.smoothed.pipeline.run_smoothed_kd`; this module only turns flags into its
arguments. Examples:

  python -m keras_takd.smoothed.run --flagfile=flags/smoothed_kd_quick.cfg
  python -m keras_takd.smoothed.run --flagfile=flags/smoothed_kd_paper.cfg --data_dir=DIR

Errors go through `keras_takd.core.cli.run_main`: one line on stderr, exit code 2 for a bad flag, 1
for bad input. Its flag names overlap those of `keras_takd.main`: run each as its own process.
"""

from __future__ import annotations

import math
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # see keras_takd.core.cli.import_tensorflow

from absl import flags, logging

from keras_takd.core.cli import import_tensorflow, run_main

_DATASET = flags.DEFINE_enum("dataset", "cifar10", ["cifar10", "mnist"], "Dataset.")
_DATA_DIR = flags.DEFINE_string(
    "data_dir",
    None,
    "Folder holding <dataset>.npz (refused without it); if unset, tensorflow-datasets loads "
    "(and the first time downloads) the dataset.",
)
_VALIDATION_SIZE = flags.DEFINE_integer(
    "validation_size", 0, "The first this many training images are held out.", lower_bound=0
)
_TRAIN_SIZE = flags.DEFINE_integer("train_size", None, "Train on this many images.", lower_bound=1)
_TEST_SIZE = flags.DEFINE_integer("test_size", None, "Keep this many test images.", lower_bound=1)
_ARCHITECTURE = flags.DEFINE_enum(
    "architecture", "wide_resnet", ["wide_resnet", "carlini_cnn"], "Teacher/student backbone."
)
_DEPTH = flags.DEFINE_integer("depth", 28, "Wide-ResNet depth, 6n + 4.", lower_bound=10)
_TEACHER_WIDEN = flags.DEFINE_integer(
    "teacher_widen_factor", 10, "Widen factor k of the CNI teacher.", lower_bound=1
)
_STUDENT_WIDEN = flags.DEFINE_integer(
    "student_widen_factor", 10, "Widen factor k of the student.", lower_bound=1
)
_NOISE = flags.DEFINE_enum("noise", "colored", ["colored", "white"], "Teacher weight noise.")
_TEACHER_EPOCHS = flags.DEFINE_integer(
    "teacher_epochs", 100, "Epochs of PGD training of the teacher.", lower_bound=1
)
_STUDENT_EPOCHS = flags.DEFINE_integer(
    "student_epochs", 100, "Epochs of distillation of the student.", lower_bound=1
)
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 128, "Images per step.", lower_bound=1)
_LEARNING_RATE = flags.DEFINE_float("learning_rate", 1e-4, "Adam learning rate.", lower_bound=0)
_WEIGHT_DECAY = flags.DEFINE_float("weight_decay", 1e-4, "Adam weight decay.", lower_bound=0)
_LR_MILESTONES = flags.DEFINE_list(
    "lr_milestones", ["50", "75"], "Epochs after which lr *= lr_gamma (MultiStepLR)."
)
_LR_GAMMA = flags.DEFINE_float(
    "lr_gamma", 0.1, "Learning-rate factor at each milestone.", lower_bound=0, upper_bound=1
)
_TRAIN_EPS = flags.DEFINE_float(
    "train_eps_255", 8.0, "L-inf radius of the training PGD, in 1/255.", lower_bound=0
)
_TRAIN_STEP = flags.DEFINE_float(
    "train_step_size_255", 2.0, "Step size of the training PGD, in 1/255.", lower_bound=0
)
_TRAIN_STEPS = flags.DEFINE_integer(
    "train_pgd_steps", 10, "Iterations k of the training PGD.", lower_bound=1
)
_ADVERSARIAL_WEIGHT = flags.DEFINE_float(
    "adversarial_weight",
    0.5,
    "Weight of the adversarial term of the teacher's loss (0.5 PNI/CNI, 1 Madry).",
    lower_bound=0,
    upper_bound=1,
)
_TEMPERATURE = flags.DEFINE_float("temperature", 1.0, "Distillation temperature T.", lower_bound=0)
_DISTIL_WEIGHT = flags.DEFINE_float(
    "distil_weight", 0.75, "Teacher-vs-label weight w.", lower_bound=0, upper_bound=1
)
_PERTURB_DISTIL_WEIGHT = flags.DEFINE_float(
    "perturb_distil_weight",
    0.25,
    "Weight p of the PGD-perturbed term; 0 is clean distillation (Table 1).",
    lower_bound=0,
    upper_bound=1,
)
_AGGREGATION = flags.DEFINE_enum(
    "aggregation",
    "soft_prediction",
    ["prediction", "soft_prediction"],
    "Smoothed teacher output distilled: vote counts / M or mean softmax.",
)
_NUM_SAMPLES = flags.DEFINE_integer(
    "num_samples", 512, "M, noisy passes of the smoothed teacher.", lower_bound=1
)
_ATTACK_SAMPLES = flags.DEFINE_integer(
    "attack_samples", 8, "Passes in the gradient when attacking the smoothed CNI.", lower_bound=1
)
_CHUNK_SIZE = flags.DEFINE_integer("chunk_size", 32, "Passes per compiled call.", lower_bound=1)
_EVAL_SIZE = flags.DEFINE_integer(
    "eval_size", 1000, "Test images for PGD evaluation and transfer.", lower_bound=1
)
_EVAL_EPS = flags.DEFINE_float(
    "eval_eps_255", 8.0, "Radius of the white-box PGD evaluation, in 1/255.", lower_bound=0
)
_PGD_STEPS = flags.DEFINE_integer(
    "pgd_steps", 10, "Iterations of the evaluation and transfer PGD.", lower_bound=1
)
_TRANSFER_EPS = flags.DEFINE_list(
    "transfer_eps_255", ["2", "8", "30"], "Radii of the transfer matrix, in 1/255."
)
_CURVE_SIZE = flags.DEFINE_integer(
    "curve_size",
    0,
    "After every student epoch, clean and PGD accuracy on this many training and test images"
    " (Figs. 1-3, figures/student_epochs.png); 0: off.",
    lower_bound=0,
)
_COMPARE_AGGREGATIONS = flags.DEFINE_boolean(
    "compare_aggregations",
    False,
    "Also distil a student from the other aggregation (Fig. 1: both side by side).",
)
_SEED = flags.DEFINE_integer("seed", 0, "Seed of Python, NumPy and TensorFlow.", lower_bound=0)
_DETERMINISTIC = flags.DEFINE_boolean("deterministic", True, "TensorFlow op determinism.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", "runs/smoothed_kd", "Where outputs go.")


def _numbers(values: list[str], cast) -> list | None:
    try:
        return [cast(v) for v in values]
    except ValueError:
        return None


def _increasing_epochs(values: list[str]) -> bool:
    epochs = _numbers(values, int)
    return epochs is not None and all(e >= 1 for e in epochs) and epochs == sorted(set(epochs))


def _radii(values: list[str]) -> bool:
    radii = _numbers(values, float)
    return bool(radii) and all(0 < r <= 255 for r in radii)


flags.register_validator(
    "lr_milestones",
    _increasing_epochs,
    "--lr_milestones must be increasing epochs >= 1, e.g. 50,75",
)
flags.register_validator(
    "transfer_eps_255", _radii, "--transfer_eps_255 must be radii in (0, 255], e.g. 2,8,30"
)
for _name in ("learning_rate", "temperature", "train_eps_255", "train_step_size_255"):
    flags.register_validator(_name, lambda v: 0 < v < math.inf, f"--{_name} must be > 0 and finite")
flags.register_validator(
    "eval_eps_255", lambda v: 0 < v <= 255, "--eval_eps_255 must be in (0, 255]"
)
flags.register_validator(
    "depth", lambda v: (v - 4) % 6 == 0, "--depth must be 6n + 4 (10, 16, 22, 28, ...)"
)


def main(argv: list[str]) -> None:
    del argv  # run_main refuses positional arguments
    from keras_takd.core.data import load_dataset
    from keras_takd.core.files import check_writable

    data = load_dataset(  # before check_writable: a refused --data_dir writes nothing
        _DATASET.value,
        data_dir=_DATA_DIR.value,
        validation_size=_VALIDATION_SIZE.value,
        train_size=_TRAIN_SIZE.value,
        test_size=_TEST_SIZE.value,
    )
    check_writable(_OUTPUT_DIR.value)
    if _EVAL_SIZE.value > len(data.x_test):
        raise ValueError(
            f"--eval_size={_EVAL_SIZE.value} is larger than the {len(data.x_test)} test images"
        )
    if _CURVE_SIZE.value > min(len(data.x_train), len(data.x_test)):
        raise ValueError(
            f"--curve_size={_CURVE_SIZE.value} is larger than the {len(data.x_train)} training"
            f" or the {len(data.x_test)} test images"
        )
    import_tensorflow()
    logging.set_verbosity(logging.WARNING)
    from keras_takd.core.seeding import set_seed
    from keras_takd.smoothed.adversarial import AdversarialConfig
    from keras_takd.smoothed.pipeline import SmoothedKDConfig, describe_results, run_smoothed_kd

    set_seed(_SEED.value, deterministic=_DETERMINISTIC.value)
    training = dict(
        batch_size=_BATCH_SIZE.value,
        learning_rate=_LEARNING_RATE.value,
        weight_decay=_WEIGHT_DECAY.value,
        lr_milestones=tuple(int(m) for m in _LR_MILESTONES.value),
        lr_gamma=_LR_GAMMA.value,
        eps=_TRAIN_EPS.value / 255,
        step_size=_TRAIN_STEP.value / 255,
        steps=_TRAIN_STEPS.value,
        seed=_SEED.value,
    )
    config = SmoothedKDConfig(
        architecture=_ARCHITECTURE.value,
        depth=_DEPTH.value,
        teacher_widen_factor=_TEACHER_WIDEN.value,
        student_widen_factor=_STUDENT_WIDEN.value,
        noise=_NOISE.value,
        teacher=AdversarialConfig(epochs=_TEACHER_EPOCHS.value, **training),
        adversarial_weight=_ADVERSARIAL_WEIGHT.value,
        student=AdversarialConfig(epochs=_STUDENT_EPOCHS.value, **training),
        temperature=_TEMPERATURE.value,
        distil_weight=_DISTIL_WEIGHT.value,
        perturb_distil_weight=_PERTURB_DISTIL_WEIGHT.value,
        aggregation=_AGGREGATION.value,
        num_samples=_NUM_SAMPLES.value,
        attack_samples=_ATTACK_SAMPLES.value,
        chunk_size=_CHUNK_SIZE.value,
        eval_size=_EVAL_SIZE.value,
        eval_eps_255=_EVAL_EPS.value,
        pgd_steps=_PGD_STEPS.value,
        transfer_eps_255=tuple(float(e) for e in _TRANSFER_EPS.value),
        curve_size=_CURVE_SIZE.value,
        compare_aggregations=_COMPARE_AGGREGATIONS.value,
        seed=_SEED.value,
    )
    run_smoothed_kd(
        data,
        _OUTPUT_DIR.value,
        config,
        run_info={
            "flags": flags.FLAGS.flag_values_dict(),
            "data_source": data.source,
            "dataset_label": data.label,
        },
        verbose=1 if sys.stdout.isatty() else 2,
        log=lambda line: print(line, flush=True),
        on_warning=_warn,
    )
    print(describe_results(_OUTPUT_DIR.value), flush=True)


def _warn(line: str) -> None:
    sys.stdout.flush()
    print(f"keras-takd-smoothed: warning: {line}", file=sys.stderr, flush=True)


def run() -> None:
    """Console-script entry point `keras-takd-smoothed`."""
    run_main(main, "keras-takd-smoothed")


if __name__ == "__main__":
    run()
