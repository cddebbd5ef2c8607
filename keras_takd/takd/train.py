r"""Train defensive-distillation chains: teacher -> assistant -> student -> ...

Mandal & Guo, "Improving Defensive Distillation using Teacher Assistant"; Papernot et al. 2016
(arXiv:1511.04508). Examples:

  python -m keras_takd.main --stages=3 --temperature=40
  python -m keras_takd.main --flagfile=flags/mnist_takd.cfg
  python -m keras_takd.main --dataset=mnist --data_dir=../shared/data --stages=3 \
      --temperature=20 --epochs=3
  python -m keras_takd.main --flagfile=flags/mnist_replicates.cfg   # 10 seeds a temperature
"""

from __future__ import annotations

import math
import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # see keras_takd.core.cli.import_tensorflow

from absl import flags, logging

from keras_takd.core.cli import import_tensorflow, run_main
from keras_takd.takd import run_flags
from keras_takd.takd.run_flags import DATA_DIR, OUTPUT_DIR

_DATASETS = ("cifar10", "mnist")

_DATASET = flags.DEFINE_enum("dataset", "mnist", _DATASETS, "Dataset to train on.")
_STAGES = flags.DEFINE_integer(
    "stages",
    3,
    "Models per chain: 1 teacher only, 2 Papernot's distillation, 3 teacher -> "
    "assistant -> student, 7 the paper's multi-step chain.",
    lower_bound=1,
)
_TEMPERATURE = flags.DEFINE_list(
    "temperature",
    ["20"],
    "Distillation temperature(s) T > 0, comma-separated for a sweep, e.g. 1,2,5,10,20,30,40.",
)
_EPOCHS = flags.DEFINE_integer("epochs", 50, "Training epochs per model.", lower_bound=1)
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 128, "Images per training step.", lower_bound=1)
_LEARNING_RATE = flags.DEFINE_float("learning_rate", 0.01, "SGD learning rate.", lower_bound=0.0)
_MOMENTUM = flags.DEFINE_float(
    "momentum", 0.9, "Nesterov momentum.", lower_bound=0.0, upper_bound=0.999
)
_LR_DECAY = flags.DEFINE_float(
    "lr_decay", 1e-6, "Learning-rate decay per step: lr / (1 + decay * step).", lower_bound=0.0
)
_WARM_START = flags.DEFINE_boolean(
    "warm_start",
    True,
    "Start every stage from the same weights, obtained by 1 epoch at "
    "T = 1 (as Carlini's and the authors' code do).",
)
_SOFT_TARGETS = flags.DEFINE_enum(
    "soft_targets",
    "cached",
    ["cached", "live"],
    "Teacher soft labels computed once per stage "
    "over the training set (cached) or by running the teacher on every batch (live).",
)
_DISTIL_WEIGHT = flags.DEFINE_float(
    "distil_weight",
    1.0,
    "Weight w of the soft-label term in the Hinton mix; 1.0 is defensive distillation.",
    lower_bound=0.0,
    upper_bound=1.0,
)
_SCALE_SOFT_LOSS = flags.DEFINE_boolean(
    "scale_soft_loss", False, "Multiply the soft-label term by T^2 (Hinton et al.)."
)
_VALIDATION_SIZE = flags.DEFINE_integer(
    "validation_size",
    5000,
    "The first this many training images are held out for validation (Carlini's protocol).",
    lower_bound=0,
)
_TRAIN_SIZE = flags.DEFINE_integer(
    "train_size", None, "Train on this many images only.", lower_bound=1
)
_TEST_SIZE = flags.DEFINE_integer(
    "test_size", None, "Evaluate on the first this many test images only.", lower_bound=1
)
_SEED = flags.DEFINE_integer(
    "seed",
    0,
    "Seed for Python, NumPy and TensorFlow; with --num_seeds > 1, the first of the seeds.",
    lower_bound=0,
)
_NUM_SEEDS = flags.DEFINE_integer(
    "num_seeds",
    1,
    "Independent chains per temperature (replicates), of seeds --seed, --seed + 1, ..., each "
    "its own initialisation, warm start and data order, in <dataset>/T<T>/seed<s>/stage<k>. "
    "1: one chain, in <dataset>/T<T>/stage<k>. Raising it on a finished run trains only the "
    "new seeds.",
    lower_bound=1,
)
_PRIMARY_COMPARISON = flags.DEFINE_string(
    "primary_comparison",
    None,
    "The study's primary comparison, declared before it runs and recorded in run.json, e.g. "
    "student-teacher@40 (later role - earlier role @ T, one of the trained T); with --stages "
    "above 3, last-teacher@40 (the chain's last step - its teacher, section VI's multi-step "
    "test). Claims and summary report it first.",
)
flags.register_validator(
    "primary_comparison",
    lambda value: value is None or _valid_comparison(value),
    message="--primary_comparison must be <later>-<earlier>@<T>: student-assistant, "
    "assistant-teacher, student-teacher or last-teacher, at a T > 0, e.g. student-teacher@40",
)
_DETERMINISTIC = flags.DEFINE_boolean(
    "deterministic", True, "Enable TensorFlow op determinism: the same seed gives the same numbers."
)
_STRATEGY = flags.DEFINE_enum(
    "strategy",
    "default",
    ["default", "mirrored", "multi_worker"],
    "tf.distribute strategy "
    "for training: mirrored uses every local GPU; multi_worker (every worker in TF_CONFIG) is "
    "refused: Keras 3's fit fails under it (keras-team/keras#20585).",
)
# Two workers on localhost (TF_CONFIG, tensorflow 2.21, keras 3.15) both died in the first
# model.fit with "Attempt to convert a value (PerReplica: ...)", the upstream Keras 3 bug, so the
# CLI refuses it at once rather than after loading the data.
flags.register_validator(
    "strategy",
    lambda name: name != "multi_worker",
    message="--strategy=multi_worker is not supported: Keras 3's model.fit fails under "
    "MultiWorkerMirroredStrategy (keras-team/keras#20585); use default or mirrored, and shard "
    "the evaluation over machines with keras_takd.takd.evaluate --shard_index/--num_shards",
)


def _parse_temperatures(values: list[str]) -> list[float]:
    """The --temperature list as floats; ValueError unless every one is a finite number > 0."""
    temperatures = [float(v) for v in values]
    if not temperatures or not all(0 < t < float("inf") for t in temperatures):
        raise ValueError(f"temperatures must be finite numbers > 0, got {values}")
    return temperatures


def _valid_comparison(value: str) -> bool:
    from keras_takd.takd.analysis.replicates import parse_comparison

    try:
        return bool(parse_comparison(value))
    except ValueError:
        return False


def _comparison_fits_chain(values: dict) -> bool:
    """Whether --primary_comparison names models the flags train: its T among --temperature,
    last-teacher for chains of more than 3 models and the 3-model roles for 3 models.

    Raises:
        flags.ValidationError: it does not; the message says what would.
    """
    from keras_takd.takd.analysis.replicates import COMPARISONS, LAST_STEP, parse_comparison

    declared, stages = values["primary_comparison"], values["stages"]
    if (
        declared is None
        or not _valid_comparison(declared)
        or not _valid_temperatures(values["temperature"])
    ):
        return True  # their own validators say what is wrong
    later, earlier, t = parse_comparison(declared)
    at = declared.partition("@")[2]  # as written: a rounded T would hide the mismatch
    if not any(math.isclose(t, found) for found in _parse_temperatures(values["temperature"])):
        raise flags.ValidationError(
            f"--primary_comparison={declared} is at T = {at}, which "
            f"--temperature={','.join(values['temperature'])} does not train: declare a "
            "comparison at one of those T"
        )
    roles = {2: {"teacher", "student"}, 3: {"teacher", "assistant", "student"}}
    options = [f"{a}-{b}@{at}" for a, b in COMPARISONS if {a, b} <= roles.get(stages, set())]
    multistep = (later, earlier) == LAST_STEP
    if multistep == (stages > 3) and (multistep or f"{later}-{earlier}@{at}" in options):
        return True
    if stages > 3:
        expected = f"last-teacher@{at} (the last step - the teacher)"
    elif multistep:
        expected = "--stages=4 or more for last-teacher"
        if options:
            expected += f", or {' or '.join(options)}"
    elif stages == 1:
        expected = "--stages=2 or more (a comparison needs a distilled model)"
    else:
        expected = " or ".join(options)
    raise flags.ValidationError(
        f"--primary_comparison={declared} does not fit --stages={stages}: expected {expected}"
    )


flags.register_multi_flags_validator(
    ["primary_comparison", "stages", "temperature"], _comparison_fits_chain
)


def _valid_temperatures(values: list[str]) -> bool:
    try:
        return bool(_parse_temperatures(values))
    except ValueError:
        return False


flags.register_validator(
    "temperature",
    _valid_temperatures,
    message="--temperature must be a comma-separated list of numbers > 0, e.g. 1,2,5,10,20",
)
flags.register_validator("learning_rate", lambda v: v > 0, message="--learning_rate must be > 0")


flags.adopt_module_key_flags(run_flags)  # --helpshort lists --output_dir, --data_dir


def data_settings() -> dict:
    """The keyword arguments of `keras_takd.core.data.load_dataset` the flags give."""
    return dict(
        name=_DATASET.value,
        data_dir=DATA_DIR.value,
        validation_size=_VALIDATION_SIZE.value,
        train_size=_TRAIN_SIZE.value,
        test_size=_TEST_SIZE.value,
    )


def chain_settings() -> dict:
    """What the flags say to train: {"temperatures", "stages", "seeds", "deterministic"}.

    `seeds` lists every seed a chain is trained with (--seed, ..., --seed + --num_seeds - 1).
    """
    return dict(
        temperatures=_parse_temperatures(_TEMPERATURE.value),
        stages=_STAGES.value,
        seeds=list(range(_SEED.value, _SEED.value + _NUM_SEEDS.value)),
        deterministic=_DETERMINISTIC.value,
    )


def train_config():
    """The `keras_takd.core.distillation.TrainConfig` of the flags (imports TensorFlow)."""
    from keras_takd.core.distillation import TrainConfig

    return TrainConfig(
        epochs=_EPOCHS.value,
        batch_size=_BATCH_SIZE.value,
        learning_rate=_LEARNING_RATE.value,
        momentum=_MOMENTUM.value,
        lr_decay=_LR_DECAY.value,
        warm_start=_WARM_START.value,
        soft_targets=_SOFT_TARGETS.value,
        distil_weight=_DISTIL_WEIGHT.value,
        scale_soft_loss=_SCALE_SOFT_LOSS.value,
        seed=_SEED.value,
    )


def recorded_run_info() -> dict:
    """What run.json records of this command: its flags and, when it declares a primary
    comparison, that declaration with the seeds it is made for (`results.DECLARED`)."""
    from keras_takd.core.results import DECLARED

    info = {"flags": recorded_flags()}
    if _PRIMARY_COMPARISON.value:
        comparison = {"primary_comparison": _PRIMARY_COMPARISON.value}
        info[DECLARED] = comparison | {"num_seeds": _NUM_SEEDS.value}
    return info


def recorded_flags() -> dict:
    """The flags as run.json records them, --data_dir made absolute so that evaluation finds
    the data from any working folder."""
    recorded = flags.FLAGS.flag_values_dict()
    if recorded.get("data_dir"):
        recorded["data_dir"] = str(pathlib.Path(recorded["data_dir"]).resolve())
    return recorded


def main(argv: list[str]) -> None:
    del argv  # run_main refuses positional arguments
    # Every check that needs no TensorFlow runs first, so bad input fails fast and cleanly.
    from keras_takd.core.data import load_dataset
    from keras_takd.core.files import check_writable
    from keras_takd.core.results import check_declaration

    data = load_dataset(**data_settings())  # before check_writable: a refused --data_dir
    check_writable(OUTPUT_DIR.value)  # writes nothing
    check_declaration(OUTPUT_DIR.value, recorded_run_info())
    import_tensorflow()
    logging.set_verbosity(logging.ERROR)  # TensorFlow's export and retracing chatter
    from keras_takd.core.seeding import set_seed
    from keras_takd.takd.chains import make_strategy, run_chain, stage_summary

    set_seed(_SEED.value, deterministic=_DETERMINISTIC.value)
    strategy = make_strategy(_STRATEGY.value)
    table = run_chain(
        data,
        _parse_temperatures(_TEMPERATURE.value),
        _STAGES.value,
        _worker_output_dir(OUTPUT_DIR.value, strategy),
        train_config(),
        run_info={**recorded_run_info(), "data_source": data.source},
        verbose=1 if sys.stdout.isatty() else 2,
        on_stage=lambda row, complete: print(stage_summary(row, complete), flush=True),
        strategy=strategy,
        log=lambda line: print(line, flush=True),
        on_warning=_warn,
        seeds=range(_SEED.value, _SEED.value + _NUM_SEEDS.value),
    )
    print(f"results: {OUTPUT_DIR.value}/results.csv ({len(table)} rows)")


def _warn(line: str) -> None:
    sys.stdout.flush()
    print(f"keras-takd-train: warning: {line}", file=sys.stderr, flush=True)


def _worker_output_dir(output_dir: str, strategy) -> str:
    """The chief (worker 0) writes output_dir; other workers write output_dir/.worker<i>."""
    resolver = getattr(strategy, "cluster_resolver", None)
    task_id = getattr(resolver, "task_id", None)
    if resolver is None or resolver.task_type == "chief" or not task_id:
        return output_dir
    return os.path.join(output_dir, f".worker{task_id}")


def run() -> None:
    """Console-script entry point `keras-takd-train` (also `python -m keras_takd.main`)."""
    run_main(main, "keras-takd-train")


if __name__ == "__main__":
    run()
