"""The networks the benchmarks attack: trained here and cached, or read from a keras_takd run.

`prepare_model` is the benchmark MNIST network (the paper's, 3 epochs at T = 1 on hard
labels) that every C&W, FMN and APGD benchmark attacks; `prepare_distilled` is Papernot et
al.'s defensively distilled one (arXiv:1511.04508); `load_run_model` and `run_chain` read the
models of a `keras_takd.main` run.
"""

from __future__ import annotations

import pathlib
import time
from typing import Any

import numpy as np

MNIST_BUILDER = 'keras_takd.core.models.build_model("mnist")'


def model_path(cache_dir: pathlib.Path, epochs: int, seed: int = 0) -> pathlib.Path:
    """Where `prepare_model` caches the benchmark network."""
    return pathlib.Path(cache_dir) / f"mnist_cnn_T1_epochs{epochs}_seed{seed}.keras"


def prepare_model(cache_dir: pathlib.Path, data_dir: str, epochs: int, seed: int = 0):
    """Loads the benchmark MNIST model or trains it (T = 1, hard labels) and caches it.

    The paper's MNIST network (`keras_takd.core.models.build_model("mnist")`) trained `epochs`
    epochs on hard labels with `keras_takd.core.distillation.train_on_labels`.

    Args:
        cache_dir: the folder of the cached model (outside git).
        data_dir: the folder holding mnist.npz.
        epochs: training epochs.
        seed: the training seed.

    Returns:
        `(model, data, correct, info)`: the Keras model, the MNIST `Dataset`, whether each
        test image is classified correctly (bool [N]), and a record of the cache path, the
        training and its seconds (None when loaded) and the test accuracy.
    """
    import keras

    from keras_takd.core.data import load_dataset
    from keras_takd.core.distillation import TrainConfig, train_on_labels
    from keras_takd.core.models import build_model

    data = load_dataset("mnist", data_dir, validation_size=0)
    path = model_path(cache_dir, epochs, seed)
    train_seconds = None
    if path.exists():
        model = keras.models.load_model(path)
    else:
        keras.utils.set_random_seed(seed)
        model = build_model("mnist")
        start = time.perf_counter()
        config = TrainConfig(epochs=epochs, seed=seed)
        train_on_labels(model, data.x_train, data.y_train, 1.0, config, verbose=2)
        train_seconds = time.perf_counter() - start
        path.parent.mkdir(parents=True, exist_ok=True)
        model.save(path)
    predicted = np.argmax(model.predict(data.x_test, batch_size=500, verbose=0), axis=-1)
    info = {
        "builder": MNIST_BUILDER,
        "training": f"train_on_labels, T=1, TrainConfig(epochs={epochs}, seed={seed}) defaults",
        "cache": str(path),
        "train_seconds": train_seconds,
        "test_accuracy": float(np.mean(predicted == data.y_test)),
    }
    return model, data, (predicted == data.y_test), info


def prepare_distilled(cache_dir: pathlib.Path, data, epochs: int, temperature: float, seed=0):
    """Papernot et al.'s defensive distillation: a teacher and a student both at T, cached.

    The paper's MNIST network, `epochs` epochs each: the teacher on hard labels at T, the
    student distilled from it at T (`keras_takd.core.distillation`). With 3 epochs it is
    undertrained (78% test accuracy) but its logits have the scale of a distilled network.

    Args:
        cache_dir: the folder of the cached student (outside git).
        data: the MNIST `Dataset` (from `prepare_model`).
        epochs: training epochs of each model.
        temperature: T of the teacher's training and of the distillation.
        seed: the training seed.

    Returns:
        `(student, info)`; `info` holds the cache path and the training seconds (None when
        loaded).
    """
    import keras

    from keras_takd.core.distillation import TrainConfig, distil, train_on_labels
    from keras_takd.core.models import build_model

    name = f"mnist_cnn_T{temperature:g}_distilled_epochs{epochs}_seed{seed}.keras"
    path = pathlib.Path(cache_dir) / name
    if path.exists():
        return keras.models.load_model(path), {"cache": str(path), "train_seconds": None}
    config = TrainConfig(epochs=epochs, seed=seed)
    start = time.perf_counter()
    keras.utils.set_random_seed(seed)
    teacher = build_model("mnist")
    train_on_labels(teacher, data.x_train, data.y_train, temperature, config, verbose=2)
    student = build_model("mnist")
    distil(student, teacher, data.x_train, data.y_train, temperature, config, verbose=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    student.save(path)
    return student, {"cache": str(path), "train_seconds": time.perf_counter() - start}


def _rows_at(run, temperature: float, flag: str):
    """The rows of `run`'s results table at `temperature`, sorted by stage.

    Raises:
        ValueError: the run has no model at that temperature.
    """
    rows = run.rows[np.isclose(run.rows["temperature"].astype(float), temperature)]
    if rows.empty:
        raise ValueError(
            f"{flag}: the run {run.output_dir} has no models at T = {temperature:g}: "
            f"expected some of {sorted(set(run.rows['temperature']))}"
        )
    return rows.sort_values("stage")


def load_run_model(run_dir: str, temperature: float, stage: int):
    """The model of stage `stage` at `temperature` of a keras_takd.main run, and its record.

    Raises:
        ValueError: the run has no such model.
    """
    from keras_takd.core.export import load_model
    from keras_takd.takd.evaluation.runs import read_run

    run = read_run(run_dir)
    rows = run.rows[
        np.isclose(run.rows["temperature"].astype(float), temperature)
        & (run.rows["stage"].astype(int) == stage)
    ]
    if rows.empty:
        have = sorted(zip(run.rows["temperature"], run.rows["stage"], strict=True))
        raise ValueError(
            f"--distilled_run: {run_dir} has no model of stage {stage} at T = {temperature:g}; "
            f"expected one of (T, stage) {have}"
        )
    row = rows.iloc[0]
    path = run.model_file(row)
    info = {"run": str(run_dir), "temperature": temperature, "stage": stage, "role": row["role"]}
    return load_model(path), info | {"file": str(path), "train_seconds": None}


def run_chain(run_dir: str, temperature: float) -> tuple[Any, dict[str, Any]]:
    """Every model of a keras_takd.main run's chain at `temperature`, by stage.

    Returns:
        `(run, models)`: the run (its dataset, flags) and `{"stage<k> <role>": model}`.

    Raises:
        ValueError: the run has no model at that temperature.
    """
    from keras_takd.core.export import load_model
    from keras_takd.takd.evaluation.runs import read_run

    run = read_run(run_dir)
    rows = _rows_at(run, temperature, "--temperatures")
    models = {
        f"stage{int(row['stage'])} {row['role']}": load_model(run.model_file(row))
        for _, row in rows.iterrows()
    }
    return run, models
