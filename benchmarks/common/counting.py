"""Helpers shared by the benchmarks: machine and load records, pass counting, timing, stats.

Time on a shared machine is noisy, so every timed section records, besides wall seconds, the
process's CPU seconds (user + system), the 1-minute load average before and after, and the
number of runnable tasks sampled every second while it ran (from /proc). A section whose
CPU seconds / (wall seconds * cores) is far below 1 was starved by other work.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import pathlib
import platform
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import tensorflow as tf


def machine_info() -> dict[str, Any]:
    """CPU model, core count, memory and OS of this machine."""
    cpu = "unknown"
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    mem_gb = float("nan")
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/meminfo") as f:
            mem_gb = int(f.readline().split()[1]) / 2**20
    return {
        "cpu": cpu,
        "cores_visible": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "memory_gb": round(mem_gb, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
    }


def versions(packages: list[str]) -> dict[str, str]:
    """Installed versions of `packages` ("not installed" where missing)."""
    from importlib import metadata

    out = {}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def git_commit(path: str) -> str:
    """The commit and dirty state of the repository at `path`."""
    try:
        commit = subprocess.run(
            ["git", "-C", path, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", path, "status", "--porcelain", "--", "keras_takd"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + (" (keras_takd/ has uncommitted changes)" if dirty else "")


def _loadavg() -> float:
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def _runnable_tasks() -> int:
    with open("/proc/loadavg") as f:
        return int(f.read().split()[3].split("/")[0])


@dataclasses.dataclass
class Timing:
    """Wall and CPU seconds of a timed section and the load around it."""

    wall_s: float = 0.0
    cpu_s: float = 0.0
    load1_before: float = 0.0
    load1_after: float = 0.0
    runnable_mean: float = 0.0
    runnable_max: int = 0

    def as_dict(self) -> dict[str, float]:
        cores = len(os.sched_getaffinity(0))
        out = {k: round(v, 3) for k, v in dataclasses.asdict(self).items()}
        out["cpu_share"] = round(self.cpu_s / max(self.wall_s * cores, 1e-9), 3)
        return out


@contextlib.contextmanager
def timed() -> Iterator[Timing]:
    """Times the enclosed block; samples runnable tasks once a second in a thread."""
    timing = Timing(load1_before=_loadavg())
    samples: list[int] = []
    stop = threading.Event()

    def sample():
        while not stop.wait(1.0):
            samples.append(_runnable_tasks())

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    cpu0, wall0 = os.times(), time.perf_counter()
    try:
        yield timing
    finally:
        wall1, cpu1 = time.perf_counter(), os.times()
        stop.set()
        thread.join()
        timing.wall_s = wall1 - wall0
        timing.cpu_s = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
        timing.load1_after = _loadavg()
        # The sampler and this process count themselves among the runnable tasks.
        timing.runnable_mean = float(np.mean(samples)) if samples else float("nan")
        timing.runnable_max = int(max(samples)) if samples else 0


class CountingModel:
    """Wraps a logits model and counts the forward and backward passes run through it.

    Counters are `tf.Variable`s incremented by ops placed next to the model call, so they
    count correctly inside `tf.function`s and `tf.while_loop`s (where a Python counter would
    only count traces), and in eager code such as ART's. A backward pass is counted through an
    identity with a custom gradient on the logits: it runs once per gradient taken through the
    model, whatever the attack does around it. Rows are images: a batch of 100 counts 100.
    Calls made outside any `tf.function` while `count_eager` is False (an attack's input checks
    and final verification) are not counted.
    """

    def __init__(self, model: Callable[..., Any], count_eager: bool = True):
        self.model = model
        self.count_eager = count_eager
        self.forward_rows = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.forward_calls = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.backward_rows = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.backward_calls = tf.Variable(0, dtype=tf.int64, trainable=False)

    def __call__(self, x, training=False, **kwargs):
        logits = self.model(x, training=False)
        if not (tf.inside_function() or self.count_eager):
            return logits
        rows = tf.cast(tf.shape(x)[0], tf.int64)
        counted = [self.forward_rows.assign_add(rows), self.forward_calls.assign_add(1)]
        with tf.control_dependencies(counted):
            logits = tf.identity(logits)

        @tf.custom_gradient
        def count_backward(z):
            def grad(dz):
                ops = [self.backward_rows.assign_add(rows), self.backward_calls.assign_add(1)]
                with tf.control_dependencies(ops):
                    return tf.identity(dz)

            return tf.identity(z), grad

        return count_backward(logits)

    def reset(self) -> None:
        for variable in self.counters():
            variable.assign(0)

    def counters(self) -> list[tf.Variable]:
        return [self.forward_rows, self.forward_calls, self.backward_rows, self.backward_calls]

    def snapshot(self) -> dict[str, int]:
        return {
            "forward_rows": int(self.forward_rows.numpy()),
            "forward_calls": int(self.forward_calls.numpy()),
            "backward_rows": int(self.backward_rows.numpy()),
            "backward_calls": int(self.backward_calls.numpy()),
        }


def distortion_stats(values: np.ndarray, success: np.ndarray) -> dict[str, float]:
    """Mean and median of `values` over the successful examples (NaN if none)."""
    chosen = np.asarray(values, np.float64)[np.asarray(success, bool)]
    if chosen.size == 0:
        return {"mean": float("nan"), "median": float("nan")}
    return {"mean": float(np.mean(chosen)), "median": float(np.median(chosen))}


def estimate_dict(estimate) -> dict[str, float]:
    """A `keras_takd.core.statistics.Estimate` as the reports store it: value, interval, n."""
    return {
        "estimate": estimate.estimate,
        "low": estimate.low,
        "high": estimate.high,
        "n": estimate.n,
    }


def prepare_model(cache_dir: pathlib.Path, data_dir: str, epochs: int, seed: int = 0):
    """Loads the benchmark MNIST model or trains it (T = 1, hard labels) and caches it.

    The paper's MNIST network (`keras_takd.core.models.build_model("mnist")`) trained `epochs`
    epochs on hard labels; the benchmarks attack it.

    Returns:
        `(model, dataset, info)`; `info` holds the cache path, test accuracy and training time.
    """
    import keras

    from keras_takd.core.data import load_dataset
    from keras_takd.core.distillation import TrainConfig, train_on_labels
    from keras_takd.core.models import build_model

    data = load_dataset("mnist", data_dir, validation_size=0)
    path = cache_dir / f"mnist_cnn_T1_epochs{epochs}_seed{seed}.keras"
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
        cache_dir.mkdir(parents=True, exist_ok=True)
        model.save(path)
    predicted = np.argmax(model.predict(data.x_test, batch_size=500, verbose=0), axis=-1)
    info = {
        "builder": 'keras_takd.core.models.build_model("mnist")',
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

    Returns:
        `(student, info)`; `info` holds the cache path and the training time.
    """
    import keras

    from keras_takd.core.distillation import TrainConfig, distil, train_on_labels
    from keras_takd.core.models import build_model

    path = cache_dir / f"mnist_cnn_T{temperature:g}_distilled_epochs{epochs}_seed{seed}.keras"
    if path.exists():
        return keras.models.load_model(path), {"cache": str(path), "train_seconds": None}
    config = TrainConfig(epochs=epochs, seed=seed)
    start = time.perf_counter()
    keras.utils.set_random_seed(seed)
    teacher = build_model("mnist")
    train_on_labels(teacher, data.x_train, data.y_train, temperature, config, verbose=2)
    student = build_model("mnist")
    distil(student, teacher, data.x_train, data.y_train, temperature, config, verbose=2)
    cache_dir.mkdir(parents=True, exist_ok=True)
    student.save(path)
    return student, {"cache": str(path), "train_seconds": time.perf_counter() - start}


@functools.cache
def build_floor(model: Callable[..., Any], batch_size: int, image_shape: tuple[int, ...]):
    """A compiled while-loop of forward + backward passes with respect to the images.

    Built and traced once per model, batch size and image shape, so that rounds that
    interleave the floor with an attack reuse one trace.
    """

    @tf.function(
        input_signature=[
            tf.TensorSpec([batch_size, *image_shape], tf.float32),
            tf.TensorSpec([], tf.int32),
        ],
        autograph=False,
    )
    def loop(x, iterations):
        def body(i, images):
            with tf.GradientTape() as tape:
                tape.watch(images)
                logits = tf.cast(model(images, training=False), tf.float32)
                loss = tf.reduce_sum(tf.reduce_max(logits, axis=-1))
            grad = tape.gradient(loss, images)
            return i + 1, images - 1e-6 * grad  # the cheapest update that keeps the dependency

        _, images = tf.while_loop(lambda i, _: i < iterations, body, (tf.constant(0), x))
        return images

    return loop


def measure_floor(model, x: np.ndarray, batch_size: int, iterations: int, repeats: int):
    """Image-iterations per second of the bare forward + backward loop (median of repeats).

    The floor every attack's per-iteration cost is measured against: one forward and one
    backward pass per image and iteration, compiled, with nothing else in the loop.
    """
    batch = np.resize(x, (batch_size, *x.shape[1:])).astype(np.float32)
    loop = build_floor(model, batch_size, x.shape[1:])
    loop(tf.constant(batch), tf.constant(2)).numpy()  # trace (the first time), warm up
    runs = []
    for _ in range(repeats):
        with timed() as t:
            loop(tf.constant(batch), tf.constant(iterations)).numpy()
        runs.append(t.as_dict() | {"rate": batch_size * iterations / t.wall_s})
    rates = [r["rate"] for r in runs]
    cpu_rates = [batch_size * iterations / max(r["cpu_s"], 1e-9) for r in runs]
    return {
        "image_iterations_per_cpu_s_median": float(np.median(cpu_rates)),
        "batch_size": batch_size,
        "iterations_per_repeat": iterations,
        "image_iterations_per_s_median": float(np.median(rates)),
        "image_iterations_per_s_max": float(np.max(rates)),
        "image_iterations_per_s_min": float(np.min(rates)),
        "seconds_per_iteration_median": float(batch_size / np.median(rates)),
        "repeats": runs,
    }
