r"""Evaluate a trained run: metrics, C&W L0 / L2 / L-inf attacks, gradient masking, budgets.

Mandal & Guo, "Improving Defensive Distillation using Teacher Assistant" (sections IV-C, V, VI);
Carlini & Wagner, arXiv:1608.04644; Papernot et al., arXiv:1511.04508. Writes the metric columns
of `keras_takd.takd.schema.METRIC_COLUMNS` into the run's results.csv (see
`keras_takd.takd.evaluation`).

  python -m keras_takd.takd.evaluate --flagfile=flags/mnist_takd_eval.cfg
  python -m keras_takd.takd.evaluate --output_dir=runs/smoke --num_images=20 --l2_max_iterations=100

--output_dir and --data_dir are shared with training (`keras_takd.takd.run_flags`).

Resuming: rerun the same command; finished units (a model's metrics, one attack on one model)
are read from <output_dir>/eval/<config>/ and only the missing ones are computed.

Sharding the attacked images over processes or machines:

  for i in 0 1 2 3; do   # four processes, e.g. on four machines sharing output_dir
    python -m keras_takd.takd.evaluate --flagfile=flags/mnist_takd_eval.cfg \
        --shard_index=$i --num_shards=4 &
  done; wait
  python -m keras_takd.takd.merge --results=runs/mnist_takd/results_shard0of4.csv,\
  runs/mnist_takd/results_shard1of4.csv,runs/mnist_takd/results_shard2of4.csv,\
  runs/mnist_takd/results_shard3of4.csv --output=runs/mnist_takd/results.csv

Shard i attacks the contiguous block [i * n // N, (i + 1) * n // N) of the first n =
--num_images test images; shard 0 also computes the attack-free metrics. Each shard writes
sums and counts, so the merge equals an unsharded run.

Several machines. Training cannot use MultiWorkerMirroredStrategy (Keras 3's fit fails under
it, keras-team/keras#20585; `keras_takd.main` refuses --strategy=multi_worker), but attacks on
different images are independent: give each machine its own shard of a shared output_dir, e.g.
with the task index of a TF_CONFIG already set up for the cluster,

  TASK=$(python -c 'import json, os; print(json.loads(os.environ["TF_CONFIG"])["task"]["index"])')
  python -m keras_takd.takd.evaluate --flagfile=... --num_shards=2 --shard_index=$TASK

then merge the shard CSVs on any one machine. evaluate itself creates no tf.distribute
strategy, so a TF_CONFIG left in the environment does not change what it computes.
"""

from __future__ import annotations

import math
import os
import pathlib
import re
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # see keras_takd.core.cli.import_tensorflow

from absl import flags

from keras_takd.core.cli import import_tensorflow, run_main
from keras_takd.takd import run_flags
from keras_takd.takd.run_flags import DATA_DIR, OUTPUT_DIR
from keras_takd.takd.schema import ALL_ATTACKS, APGD_ATTACKS, FMN_ATTACKS, JSMA_ATTACK

_ATTACK_NAMES = ("l0", "l2", "linf")

_ATTACKS = flags.DEFINE_list(
    "attacks",
    list(_ATTACK_NAMES),
    "Attacks to run (may be empty): C&W l0,l2,linf; Fast Minimum-Norm fmn_l2,fmn_linf,fmn_l0 "
    "(arXiv:2102.12827, columns like C&W's); APGD apgd_ce,apgd_dlr (arXiv:2003.01690, robust "
    "accuracy at --apgd_eps in L-inf); jsma (Papernot et al.'s JSMA towards every wrong class, "
    "theta = +1, gamma = 14.5%, on the softmax at T = 1: success per (image, target) pair).",
)
_NUM_IMAGES = flags.DEFINE_integer(
    "num_images", 1000, "Attack the first this many test images (C&W: 1,000).", lower_bound=1
)
_ATTACK_IMAGES = flags.DEFINE_list(
    "attack_images",
    [],
    "Per-attack overrides of --num_images as attack=count, e.g. l0=20 (L0 costs several times "
    "L2); the gradient-masking attack follows l2.",
)
_MODELS = flags.DEFINE_list(
    "models",
    [],
    "Compute units of these models only, named as their folders below the dataset: "
    "T<temperature>/stage<k> (e.g. T1/stage1,T40/stage3; default: every model of the run). "
    "The tables keep every model: the others show the units already computed.",
)
flags.register_validator(
    "models",
    lambda names: all(re.fullmatch(r"T[^/]+(/seed\d+)?/stage\d+", n) for n in names),
    message="--models must be a comma-separated list of T<temperature>/stage<k>, e.g. "
    "T1/stage1,T40/stage3",
)
_METRIC_IMAGES = flags.DEFINE_integer(
    "metric_images",
    None,
    "Accuracy, sensitivity and confidence on the first this many test images (default: all).",
    lower_bound=1,
)
_GRADIENT_MASKING = flags.DEFINE_boolean(
    "gradient_masking",
    True,
    "Also run the L2 attack against softmax(logits / T) at the training T (with --attacks l2).",
)
_INDICATORS = flags.DEFINE_boolean(
    "indicators",
    True,
    "After each attack, check its images for the indicators of attack failure (Pintor et al. "
    "2022): silent success, incomplete optimisation, vanishing gradients, unconstrained "
    "failure. Costs about a gradient per image; prints a warning line (on stderr) for each one "
    "that trips.",
)
_L2_BUDGET = flags.DEFINE_float(
    "l2_budget", 1.0, "L2 budget of l2_budget_success_rate (Papernot).", lower_bound=0.0
)
_LINF_BUDGET = flags.DEFINE_float(
    "linf_budget", 0.1, "L-inf budget of linf_budget_success_rate.", lower_bound=0.0
)
_SHARD_INDEX = flags.DEFINE_integer(
    "shard_index", 0, "Which block of the attacked images to take (0-based).", lower_bound=0
)
_NUM_SHARDS = flags.DEFINE_integer(
    "num_shards", 1, "Into how many contiguous blocks the attacked images are split.", lower_bound=1
)
_OUTPUT = flags.DEFINE_string(
    "output",
    None,
    "The results CSV to write (default: <output_dir>/results.csv, or "
    "results_shard<i>of<N>.csv); its per-image table goes beside it.",
)
_ATTACK_BATCH_SIZE = flags.DEFINE_integer(
    "attack_batch_size", None, "Images attacked together (default: the attack's).", lower_bound=1
)
_ABORT_EARLY = flags.DEFINE_boolean(
    "abort_early", True, "Stop an attack's search when its loss stalls (as C&W's code)."
)
_ATTACK_VERBOSE = flags.DEFINE_boolean(
    "attack_verbose",
    None,
    "Progress bars of the attacks inside each unit (images done, time left). Default: on when "
    "stdout is a terminal.",
)
_REPLACE = flags.DEFINE_boolean(
    "replace",
    False,
    "If the results CSV holds an evaluation with other settings, replace its columns instead "
    "of refusing (its units stay cached under <output_dir>/eval/, so nothing is recomputed if "
    "you go back to them).",
)

_EXECUTOR = flags.DEFINE_enum(
    "executor",
    "serial",
    ["serial", "ray"],
    "Where the units run: serial (one after another in this process) or ray (Ray tasks on a "
    "local Ray, or on the cluster of --ray_address; needs pip install keras_takd[ray]).",
)
_RAY_ADDRESS = flags.DEFINE_string(
    "ray_address",
    None,
    "With --executor=ray: the Ray cluster to join (host:port, as `ray start --head` prints it; "
    "default RAY_ADDRESS, else a local Ray started on this machine).",
)
_CPUS_PER_UNIT = flags.DEFINE_integer(
    "cpus_per_unit",
    1,
    "With --executor=ray: CPUs (and TensorFlow threads) per unit.",
    lower_bound=1,
)
_GPUS_PER_UNIT = flags.DEFINE_integer(
    "gpus_per_unit", 0, "With --executor=ray: GPUs per unit (0: units see no GPU).", lower_bound=0
)
_MAX_RETRIES = flags.DEFINE_integer(
    "max_retries",
    3,
    "With --executor=ray: reruns of a unit whose worker died (killed, out of memory) before "
    "the evaluation stops naming it.",
    lower_bound=0,
)

# Per-attack options, e.g. --l2_max_iterations; None keeps the attack function's default.
_OPTION_FLAGS = {
    "max_iterations": (flags.DEFINE_integer, "optimizer steps (per c for L2)", 1),
    "learning_rate": (flags.DEFINE_float, "Adam learning rate", 0.0),
    "initial_const": (flags.DEFINE_float, "first trade-off constant c", 0.0),
    "largest_const": (flags.DEFINE_float, "largest c before giving up", 0.0),
    "confidence": (flags.DEFINE_float, "margin kappa", 0.0),
}
_ATTACK_OPTIONS = {
    (attack, option): define(
        f"{attack}_{option}", None, f"C&W {attack}: {text}.", lower_bound=bound
    )
    for attack in _ATTACK_NAMES
    for option, (define, text, bound) in _OPTION_FLAGS.items()
}
_ATTACK_OPTIONS["l2", "binary_search_steps"] = flags.DEFINE_integer(
    "l2_binary_search_steps", None, "C&W l2: values of c tried per image.", lower_bound=1
)
_FMN_STEPS = flags.DEFINE_integer(
    "fmn_steps", None, "FMN steps per image (default: the attack's 1,000).", lower_bound=1
)
_APGD_EPS = flags.DEFINE_float(
    "apgd_eps", None, "APGD's L-inf radius (default 0.3, MNIST's standard eps)."
)
flags.register_validator(
    "apgd_eps",
    lambda eps: eps is None or 0 < eps < math.inf,
    message="--apgd_eps must be > 0 and finite",
)
_APGD_STEPS = flags.DEFINE_integer(
    "apgd_steps", None, "APGD iterations per run (default: the attack's 100).", lower_bound=1
)
_JSMA_GRADIENTS = flags.DEFINE_enum(
    "jsma_gradients",
    None,
    ["softmax", "logits"],
    "JSMA's F: the softmax at T = 1 (default, the papers') or the logits Z.",
)
_APGD_RESTARTS = flags.DEFINE_integer(
    "apgd_restarts", None, "APGD random restarts (default 1).", lower_bound=1
)

flags.register_validator(
    "attacks",
    lambda names: set(names) <= set(ALL_ATTACKS),
    message=f"--attacks must be a comma-separated subset of {','.join(ALL_ATTACKS)}",
)


def _parse_attack_images(items: list[str]) -> dict[str, int]:
    """{"l0": 20} from ["l0=20"]; raises ValueError naming the bad item."""
    parsed = {}
    for item in items:
        name, _, count = item.partition("=")
        if name not in ALL_ATTACKS or not count.isdigit() or int(count) < 1 or name in parsed:
            raise ValueError(item)
        parsed[name] = int(count)
    return parsed


def _valid_attack_images(items: list[str]) -> bool:
    try:
        _parse_attack_images(items)
    except ValueError:
        return False
    return True


flags.register_validator(
    "attack_images",
    _valid_attack_images,
    message="--attack_images must be a comma-separated list of attack=count, each attack one of "
    f"{','.join(ALL_ATTACKS)} at most once and count >= 1, e.g. l0=20",
)
flags.register_multi_flags_validator(
    ["shard_index", "num_shards"],
    lambda v: v["shard_index"] < v["num_shards"],
    message="--shard_index must be smaller than --num_shards",
)


def _attack_options() -> dict[str, dict]:
    options = {attack: {} for attack in ALL_ATTACKS}
    for (attack, option), holder in _ATTACK_OPTIONS.items():
        if holder.value is not None:
            options[attack][option] = holder.value
    for attacks, option, holder in (
        (FMN_ATTACKS, "steps", _FMN_STEPS),
        (APGD_ATTACKS, "eps", _APGD_EPS),
        (APGD_ATTACKS, "steps", _APGD_STEPS),
        (APGD_ATTACKS, "restarts", _APGD_RESTARTS),
        ((JSMA_ATTACK,), "gradients", _JSMA_GRADIENTS),
    ):
        if holder.value is not None:
            for attack in attacks:
                options[attack][option] = holder.value
    for attack in ALL_ATTACKS:
        if attack in _ATTACK_NAMES:
            options[attack]["abort_early"] = _ABORT_EARLY.value
        # JSMA keeps its own: its memory grows with the square of the features per image.
        if _ATTACK_BATCH_SIZE.value is not None and attack != JSMA_ATTACK:
            options[attack]["batch_size"] = _ATTACK_BATCH_SIZE.value
    return options


flags.adopt_module_key_flags(run_flags)  # --helpshort lists --output_dir, --data_dir


def _recorded_data_dir(run) -> str | None:
    """The --data_dir training recorded in run.json, if it is a folder from here.

    Runs trained before run.json recorded absolute paths hold the path as it was typed,
    relative to the folder training ran in.

    Raises:
        ValueError: the recorded folder does not exist from this working folder.
    """
    recorded = run.flags.get("data_dir")
    if recorded and not pathlib.Path(recorded).is_dir():
        raise ValueError(
            f"{run.output_dir}/run.json records the training's data_dir {recorded}, which is "
            f"not a folder from {pathlib.Path.cwd()}: pass --data_dir=<folder holding "
            f"{run.dataset}.npz>"
        )
    return recorded


def evaluation_config():
    """The `keras_takd.takd.evaluation.EvaluationConfig` of the flags."""
    from keras_takd.takd import evaluation

    return evaluation.EvaluationConfig(
        attacks=tuple(_ATTACKS.value),
        num_images=_NUM_IMAGES.value,
        attack_options=_attack_options(),
        budgets={"l2": _L2_BUDGET.value, "linf": _LINF_BUDGET.value},
        gradient_masking=_GRADIENT_MASKING.value,
        attack_images=_parse_attack_images(_ATTACK_IMAGES.value),
        metric_images=_METRIC_IMAGES.value,
        shard_index=_SHARD_INDEX.value,
        num_shards=_NUM_SHARDS.value,
        indicators=_INDICATORS.value,
    )


def attack_verbose() -> bool:
    """--attack_verbose, by default on when stdout is a terminal."""
    return sys.stdout.isatty() if _ATTACK_VERBOSE.value is None else _ATTACK_VERBOSE.value


def make_executor():
    """The executor of --executor (None: the loop's serial default).

    Raises:
        ValueError: --executor=ray without ray installed.
        ConnectionError: --ray_address did not answer within 30 seconds.
    """
    if _EXECUTOR.value == "serial":
        return None
    try:
        from keras_takd.takd.evaluation.ray_executor import RayExecutor
    except ImportError as e:  # ray is an extra
        raise ValueError(f"--executor=ray needs ray ({e}): pip install 'keras_takd[ray]'") from None
    return RayExecutor(
        address=_RAY_ADDRESS.value,
        cpus_per_unit=_CPUS_PER_UNIT.value,
        gpus_per_unit=_GPUS_PER_UNIT.value,
        max_retries=_MAX_RETRIES.value,
    )


def main(argv: list[str]) -> None:
    del argv  # run_main refuses positional arguments
    from keras_takd.core.data import load_dataset
    from keras_takd.takd import evaluation  # no TensorFlow yet: bad input fails fast
    from keras_takd.takd.evaluation.runs import lock_evaluation

    run = evaluation.read_run(OUTPUT_DIR.value)
    # Held until the evaluation ends: a training of the folder, or another process on
    # the same shard, is refused at once with the holder's PID.
    with lock_evaluation(run, _SHARD_INDEX.value, _NUM_SHARDS.value):
        output = _OUTPUT.value or evaluation.shard_results_path(
            run.output_dir, _SHARD_INDEX.value, _NUM_SHARDS.value
        )
        evaluation.check_results_file(output, None, run, sharded=_NUM_SHARDS.value > 1)
        executor = make_executor()  # an unreachable --ray_address fails here, before any work
        data = load_dataset(
            run.dataset,
            data_dir=DATA_DIR.value or _recorded_data_dir(run),
            validation_size=0,
            test_size=run.test_images,
        )
        import_tensorflow()
        table = evaluation.evaluate_run(
            run.output_dir,
            data,
            evaluation_config(),
            output=output,
            verbose=attack_verbose(),
            log=log_line,
            replace=_REPLACE.value,
            warn=log_line,
            executor=executor,
            models=_MODELS.value or None,
        )
        evaluation_id = table["eval_config"].iloc[0]
        print(f"results: {output} ({len(table)} rows, evaluation {evaluation_id})")
        sys.stdout.flush()


def log_line(line: str, prog: str = "keras-takd-evaluate") -> None:
    """Progress lines on stdout; warnings on stderr (as training's), after `prog`."""
    if not line.startswith("warning: "):
        print(line, flush=True)
        return
    sys.stdout.flush()
    print(f"{prog}: {line}", file=sys.stderr, flush=True)


def run() -> None:
    """Console-script entry point `keras-takd-evaluate`."""
    run_main(main, "keras-takd-evaluate")


if __name__ == "__main__":
    run()
