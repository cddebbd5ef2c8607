"""Counting model passes and optimiser iterations, and the floor every attack is measured against.

`CountingModel` counts the forward and backward passes run through a model, inside compiled
loops too; `IterationCounter` counts keras_takd's per-image C&W iterations; the floor is a
compiled loop of bare forward + backward passes, the most image-iterations per second an
attack can reach on this machine.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from common.environment import carlini_wagner_module
from common.timing import timed


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


def measure_batching_gain(model, x: np.ndarray, batch_size: int, iterations: int, rounds: int):
    """The floor at `batch_size` against the floor at batch 1, interleaved round by round.

    Their ratio is the most that batching can make one image-iteration cheaper on this machine,
    so it bounds how much faster a batched attack can be than the same attack run one image at
    a time (when both run the same iterations per image).
    """
    pairs = []
    for _ in range(rounds):
        batched = measure_floor(model, x, batch_size, iterations, 1)
        single = measure_floor(model, x, 1, iterations * 5, 1)
        pairs.append(
            {
                "batch": batched["image_iterations_per_s_median"],
                "batch_per_cpu_s": batched["image_iterations_per_cpu_s_median"],
                "one": single["image_iterations_per_s_median"],
                "one_per_cpu_s": single["image_iterations_per_cpu_s_median"],
            }
        )
    return {
        "batch_size": batch_size,
        "ratio_median": float(np.median([p["batch"] / p["one"] for p in pairs])),
        "ratio_per_cpu_s_median": float(
            np.median([p["batch_per_cpu_s"] / p["one_per_cpu_s"] for p in pairs])
        ),
        "rounds": pairs,
    }


class IterationCounter:
    """Counts keras_takd's per-image algorithm iterations (wraps the attacks' step helpers).

    `rows`: iterations of the original algorithm, one per image per step of its loop. For L2
    every such iteration is an Adam step. For L0 and L-inf they are the rows whose step count
    `const_schedule` advances: Adam steps, plus L0's succeeding iteration, whose step the
    original takes and then discards (it restores the succeeding iterate), which keras_takd
    skips. Not counted: padding rows, rows idle in a chunk after their solve ended, and
    L-inf's check of a qualifying step (the original's extra forward pass).
    `moved`: rows on which an Adam step was applied.
    """

    def __init__(self):
        self.rows = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.moved = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.patched: list[str] = []

    def reset(self) -> None:
        self.rows.assign(0)
        self.moved.assign(0)

    def install(self) -> None:
        """Wraps the attacks' step helpers (once per process) so that they count rows.

        Raises:
            RuntimeError: a helper is gone (renamed), which must not silently count nothing.
        """
        # Where each attack looks the helpers up when it traces: L2 calls optimizers.adam_step
        # by its own name; L0 and L-inf share search's Adam step and call const_schedule.
        targets = {
            "l2": [("adam_step", (self.rows, self.moved))],
            "search": [("adam_step", (self.moved,))],
            "l0": [("const_schedule", (self.rows,))],
            "linf": [("const_schedule", (self.rows,))],
        }
        for part, wrapped in targets.items():
            module = carlini_wagner_module(part)
            for function_name, counters in wrapped:
                original = getattr(module, function_name, None)
                if original is None:
                    raise RuntimeError(
                        f"{module.__name__}.{function_name} not found: update the counter"
                    )
                if getattr(original, "_counted", False):
                    continue
                setattr(module, function_name, self._wrap(original, counters))
                self.patched.append(f"{module.__name__}.{function_name}")

    @staticmethod
    def _mask(original, args, kwargs):
        """The per-example rows a helper call counts: Adam's moving mask, or the iterations
        `const_schedule` counts (its `stepped`, default `running`)."""
        import inspect

        names = list(inspect.signature(original).parameters)
        bound = dict(zip(names, args, strict=False)) | kwargs
        if original.__name__ == "const_schedule":
            stepped = bound.get("stepped")
            return bound["running"] if stepped is None else stepped
        return bound["active" if "active" in bound else "moving"]

    def _wrap(self, original, counters):
        def counted(*args, **kwargs):
            added = tf.reduce_sum(tf.cast(self._mask(original, args, kwargs), tf.int64))
            updates = [counter.assign_add(added) for counter in counters]
            with tf.control_dependencies(updates):
                return tuple(tf.identity(t) for t in original(*args, **kwargs))

        counted = tf.autograph.experimental.do_not_convert(counted)
        counted._counted = True
        return counted
