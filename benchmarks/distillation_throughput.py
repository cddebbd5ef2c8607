"""Does distillation cost more than plain training? One epoch of DistillerModel against model.fit.

Target: distillation costs at most 1.10x plain training of the same MNIST model on the same
data. Both runs use the package's own training paths: `train_on_labels`' tempered model
(TemperatureSoftmax + sparse cross-entropy) and `DistillerModel` with cached soft labels, the
same optimiser, batch size and tf.data pipeline. Each measurement is one epoch after a warm-up
epoch (so tracing is excluded); the two are interleaved, repeated, and the medians compared.

  python benchmarks/distillation_throughput.py --data_dir=../shared/data
  python benchmarks/distillation_throughput.py --report_only  # redraw the .md from the .json

Writes benchmarks/results/distillation_throughput.json and distillation_throughput.md (next to
`--out`).
"""

import os
import pathlib
import statistics
import sys
import time
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402
from common import reports  # noqa: E402
from common.environment import RESULTS_DIR  # noqa: E402

from keras_takd.core import cli  # noqa: E402

NAME = "distillation_throughput"
TARGET = 1.10

_DATA_DIR = flags.DEFINE_string("data_dir", "../shared/data", "Folder with mnist.npz.")
_IMAGES = flags.DEFINE_integer("images", 20000, "Training images per epoch.", lower_bound=128)
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed epochs per method.", lower_bound=1)
_OUT = flags.DEFINE_string("out", str(RESULTS_DIR / f"{NAME}.json"), "Result file (.json).")
_REPORT_ONLY = flags.DEFINE_bool(
    "report_only", False, "Compute nothing: redraw the .md next to --out from its .json."
)


def measure(data_dir: str, images: int, repeats: int, temperature: float = 20.0) -> dict:
    """Seconds per epoch of plain training and of distillation, interleaved `repeats` times.

    Args:
        data_dir: the folder holding mnist.npz.
        images: training images per epoch.
        repeats: timed epochs of each method, after one warm-up epoch each.
        temperature: T of both the tempered plain model and the distillation.

    Returns:
        `{"images_per_epoch", "batch_size", "seconds_per_epoch": {method: [s, ...]}}`.
    """
    import keras

    from keras_takd.core.data import load_dataset
    from keras_takd.core.distillation import (
        DistillerModel,
        TrainConfig,
        make_batches,
        make_optimizer,
        soft_labels,
    )
    from keras_takd.core.layers import TemperatureSoftmax
    from keras_takd.core.models import build_model

    data = load_dataset("mnist", data_dir, validation_size=0, train_size=images)
    config = TrainConfig(epochs=1, seed=0)
    keras.utils.set_random_seed(0)
    teacher = build_model("mnist")
    cached = soft_labels(teacher, data.x_train, temperature)

    plain_model = build_model("mnist")
    plain = keras.Model(plain_model.input, TemperatureSoftmax(temperature)(plain_model.output))
    plain.compile(
        optimizer=make_optimizer(config),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    plain_data = make_batches((data.x_train, data.y_train), config.batch_size, True, 0)

    distiller = DistillerModel(build_model("mnist"), teacher, temperature)
    distiller.compile(optimizer=make_optimizer(config))
    distil_data = make_batches((data.x_train, data.y_train, cached), config.batch_size, True, 0)

    def epoch(model, dataset):
        start = time.perf_counter()
        model.fit(dataset, epochs=1, verbose=0, shuffle=False)
        return time.perf_counter() - start

    epoch(plain, plain_data), epoch(distiller, distil_data)  # warm-up: tracing
    times = {"plain_fit": [], "distiller": []}
    for _ in range(repeats):
        times["plain_fit"].append(epoch(plain, plain_data))
        times["distiller"].append(epoch(distiller, distil_data))
    return {
        "images_per_epoch": len(data.x_train),
        "batch_size": config.batch_size,
        "seconds_per_epoch": times,
    }


def markdown_report(result: dict[str, Any]) -> str:
    """The report: median seconds per epoch of each method, their ratio and the target."""
    medians = result["median_seconds"]
    load = ", ".join(f"{v:.1f}" for v in result["load_average"])
    lines = [
        "# Distillation throughput: DistillerModel against plain model.fit",
        "",
        *([f"Command: `{result['command']}`.", ""] if "command" in result else []),
        f"{result['images_per_epoch']} MNIST training images per epoch, batch "
        f"{result['batch_size']}; median of {result['repeats']} interleaved epochs after a "
        f"warm-up epoch each. {result['cpus']} CPUs, load average {load} (1, 5, 15 min) at the "
        f"end; {result['machine']}; "
        + ", ".join(f"{k} {v}" for k, v in result["versions"].items())
        + ".",
        "",
        "| method | median s / epoch | every epoch (s) |",
        "|---|---|---|",
    ]
    for method, seconds in result["seconds_per_epoch"].items():
        every = ", ".join(f"{s:.1f}" for s in seconds)
        lines.append(f"| {method} | {medians[method]:.2f} | {every} |")
    verdict = "met" if result["meets_target"] else "NOT met"
    lines += [
        "",
        f"Ratio distiller / plain: {result['ratio_distiller_over_plain']:.3f} (target "
        f"{result['target']}: {verdict}).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    del argv
    out = pathlib.Path(_OUT.value)
    if _REPORT_ONLY.value:
        reports.rewrite_report(out.parent, out.stem, markdown_report)
        return
    import platform

    import tensorflow as tf

    from keras_takd.core.results import library_versions

    measured = measure(_DATA_DIR.value, _IMAGES.value, _REPEATS.value)
    medians = {k: statistics.median(v) for k, v in measured["seconds_per_epoch"].items()}
    ratio = medians["distiller"] / medians["plain_fit"]
    result = {
        "benchmark": NAME,
        "command": " ".join(["python", "benchmarks/distillation_throughput.py", *sys.argv[1:]]),
        "images_per_epoch": measured["images_per_epoch"],
        "batch_size": measured["batch_size"],
        "repeats": _REPEATS.value,
        "seconds_per_epoch": measured["seconds_per_epoch"],
        "median_seconds": medians,
        "ratio_distiller_over_plain": round(ratio, 4),
        "target": f"<= {TARGET:.2f}",
        "meets_target": ratio <= TARGET,
        "load_average": os.getloadavg(),
        "cpus": os.cpu_count(),
        "machine": platform.platform(),
        "versions": library_versions(),
        "tf_threads": [
            tf.config.threading.get_inter_op_parallelism_threads(),
            tf.config.threading.get_intra_op_parallelism_threads(),
        ],
    }
    reports.write_results(out.parent, out.stem, result, markdown_report, indent=2)
    print(
        f"plain fit {medians['plain_fit']:.2f} s/epoch, distiller "
        f"{medians['distiller']:.2f} s/epoch: ratio {ratio:.3f} (target <= {TARGET:.2f}) -> {out}"
    )


if __name__ == "__main__":
    cli.run_main(main, NAME)  # bad input: one line and exit 1, not a traceback
