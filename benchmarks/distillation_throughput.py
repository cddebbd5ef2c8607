"""Benchmark: one epoch of DistillerModel (cached soft labels) against plain model.fit.

Issue target: distillation costs at most 1.10x plain training of the same MNIST model on the
same data. Both runs use the package's own training paths: `train_on_labels`' tempered model
(TemperatureSoftmax + sparse cross-entropy) and `DistillerModel` with cached soft labels, the
same optimiser, batch size and tf.data pipeline. Each measurement is one epoch after a warm-up
epoch (so tracing is excluded); the two are interleaved, repeated, and the medians compared.

  python benchmarks/distillation_throughput.py --data_dir=../shared/data

Writes benchmarks/results/distillation_throughput.json.
"""

import json
import os
import pathlib
import platform
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

_DATA_DIR = flags.DEFINE_string("data_dir", "../shared/data", "Folder with mnist.npz.")
_IMAGES = flags.DEFINE_integer("images", 20000, "Training images per epoch.", lower_bound=128)
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed epochs per method.", lower_bound=1)
_OUT = flags.DEFINE_string(
    "out",
    str(pathlib.Path(__file__).parent / "results" / "distillation_throughput.json"),
    "Result file.",
)


def main(argv):
    del argv
    import keras
    import tensorflow as tf

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
    from keras_takd.takd import chains as experiments

    data = load_dataset("mnist", _DATA_DIR.value, validation_size=0, train_size=_IMAGES.value)
    config = TrainConfig(epochs=1, seed=0)
    temperature = 20.0
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
    for _ in range(_REPEATS.value):
        times["plain_fit"].append(epoch(plain, plain_data))
        times["distiller"].append(epoch(distiller, distil_data))
    medians = {k: statistics.median(v) for k, v in times.items()}
    ratio = medians["distiller"] / medians["plain_fit"]
    result = {
        "benchmark": "distillation_throughput",
        "images_per_epoch": len(data.x_train),
        "batch_size": config.batch_size,
        "repeats": _REPEATS.value,
        "seconds_per_epoch": times,
        "median_seconds": medians,
        "ratio_distiller_over_plain": round(ratio, 4),
        "target": "<= 1.10",
        "meets_target": ratio <= 1.10,
        "load_average": os.getloadavg(),
        "cpus": os.cpu_count(),
        "machine": platform.platform(),
        "versions": experiments.library_versions(),
        "tf_threads": [
            tf.config.threading.get_inter_op_parallelism_threads(),
            tf.config.threading.get_intra_op_parallelism_threads(),
        ],
    }
    out = pathlib.Path(_OUT.value)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"plain fit {medians['plain_fit']:.2f} s/epoch, distiller "
        f"{medians['distiller']:.2f} s/epoch: ratio {ratio:.3f} (target <= 1.10) -> {out}"
    )


if __name__ == "__main__":
    app.run(main)
