"""The batched search machinery that the C&W L0 and L-infinity attacks share.

Carlini & Wagner (arXiv:1608.04644) solve both attacks as a sequence of Adam solves with a
doubling constant c and a warm start. Here every example of a batch carries its own c,
optimiser state and status, a compiled `tf.while_loop` runs chunks of iterations, and between
chunks Python applies each attack's outer step (`run_slot_pool`), refilling the slots of
finished images with new ones. The per-attack step functions live in
`carlini_wagner.l0` and `carlini_wagner.linf`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_takd.attacks.common import AttackResult, from_tanh_space, to_tanh_space
from keras_takd.attacks.optimizers import ADAM_BETA1, ADAM_BETA2, adam_step
from keras_takd.attacks.preparation import AttackInputs

# Per-example status inside and between compiled chunks.
RUNNING, SOLVED, FAILED, IDLE = 0, 1, 2, 3

# A compiled chunk runs at most this many iterations before Python looks at the batch ...
MAX_CHUNK_STEPS = 250

# ... and returns earlier once this fraction of its running examples has ended a solve.
EVENT_FRACTION = 0.1


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """The settings of the inner Adam loop that the L0 and L-inf searches share (hashable: it
    keys the compiled-function cache).

    Each field is checked on construction (before any work starts) and then cast to its type.

    Raises:
        ValueError: naming the first setting the search cannot run with.
    """

    targeted: bool
    confidence: float
    learning_rate: float
    max_iterations: int
    abort_early: bool
    initial_const: float
    largest_const: float
    const_factor: float
    clip_min: float
    clip_max: float

    def __post_init__(self) -> None:
        self._check()
        casts = {"bool": bool, "int": int, "float": float}
        for field in dataclasses.fields(self):
            object.__setattr__(self, field.name, casts[field.type](getattr(self, field.name)))

    def _check(self) -> None:
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if int(self.max_iterations) != self.max_iterations or self.max_iterations < 1:
            raise ValueError(f"max_iterations must be an integer >= 1, got {self.max_iterations}")
        if not self.initial_const > 0:
            raise ValueError(f"initial_const must be > 0, got {self.initial_const}")
        if not self.largest_const > self.initial_const:
            raise ValueError(
                f"largest_const must be > initial_const, "
                f"got {self.largest_const} <= {self.initial_const}"
            )
        if not self.const_factor > 1:
            raise ValueError(f"const_factor must be > 1, got {self.const_factor}")
        if not self.confidence >= 0:
            raise ValueError(f"confidence must be >= 0, got {self.confidence}")

    def inner(self) -> SearchConfig:
        """Only the settings the compiled inner loop depends on (its cache key)."""
        names = [field.name for field in dataclasses.fields(SearchConfig)]
        return SearchConfig(**{name: getattr(self, name) for name in names})


class SearchBase:
    """What every per-example search keeps: its config, the images and one-hot labels, and the
    best image and c found so far per example (the images themselves until a success)."""

    def __init__(self, config: SearchConfig, inputs: AttackInputs) -> None:
        self.config = config
        self.x = inputs.x
        self.onehot = inputs.onehot
        self.scale = config.clip_max - config.clip_min
        self.best_image = inputs.x.copy()
        self.best_const = np.full(len(inputs.x), np.nan)


def new_solve_state(
    n_slots: int, image_shape: tuple[int, ...], num_classes: int
) -> dict[str, np.ndarray]:
    """The per-slot state every search keeps, zeroed and IDLE.

    Keys: "x0" (the original image), "start" (the solve's start image), "labels" (one-hot),
    "modifier", "m", "v", "beta1_power", "beta2_power" (the variable and its Adam state),
    "const", "step", "status" and "x_sol" (the image a successful solve ends with).
    """
    image = np.zeros((n_slots, *image_shape), np.float32)
    vector = np.zeros(n_slots, np.float32)
    state = {key: image.copy() for key in ("x0", "start", "modifier", "m", "v", "x_sol")}
    state.update({key: vector.copy() for key in ("beta1_power", "beta2_power", "const")})
    state["labels"] = np.zeros((n_slots, num_classes), np.float32)
    state["step"] = np.zeros(n_slots, np.int32)
    state["status"] = np.full(n_slots, IDLE, np.int32)
    return state


def solve_state_spec(image_shape: tuple[int, ...], num_classes: int) -> dict[str, tf.TensorSpec]:
    """`tf.TensorSpec`s of `new_solve_state`'s entries, batch axis open."""
    image = tf.TensorSpec([None, *image_shape], tf.float32)
    vector = tf.TensorSpec([None], tf.float32)
    spec = {key: image for key in ("x0", "start", "modifier", "m", "v", "x_sol")}
    spec.update({key: vector for key in ("beta1_power", "beta2_power", "const")})
    spec["labels"] = tf.TensorSpec([None, num_classes], tf.float32)
    spec["step"] = tf.TensorSpec([None], tf.int32)
    spec["status"] = tf.TensorSpec([None], tf.int32)
    return spec


def load_example(
    state: dict[str, np.ndarray], slot: int, x: np.ndarray, labels: np.ndarray, const: float
) -> None:
    """Puts an image, its one-hot labels and its first c into a slot (no solve started)."""
    state["x0"][slot] = x
    state["labels"][slot] = labels
    state["const"][slot] = const


def restart_solve(state: dict[str, np.ndarray], slot: int, start: np.ndarray) -> None:
    """Starts a fresh solve from `start`: w and Adam reset (as TF1 initialises them), c kept."""
    state["start"][slot] = start
    for key in ("modifier", "m", "v"):
        state[key][slot] = 0.0
    state["beta1_power"][slot] = ADAM_BETA1
    state["beta2_power"][slot] = ADAM_BETA2
    state["step"][slot] = 0
    state["status"][slot] = RUNNING


def adam_update(
    new: dict[str, tf.Tensor],
    s: dict[str, tf.Tensor],
    grad: tf.Tensor,
    learning_rate: float | tf.Tensor,
    moving: tf.Tensor,
) -> None:
    """Writes one `optimizers.adam_step` of the state `s` into `new`, where `moving`."""
    keys = ("modifier", "m", "v", "beta1_power", "beta2_power")
    args = (s["m"], s["v"], s["beta1_power"], s["beta2_power"])
    new.update(zip(keys, adam_step(s["modifier"], grad, *args, learning_rate, moving), strict=True))


def run_slot_pool(
    *,
    n_examples: int,
    batch_size: int,
    new_state: Callable[[int], dict[str, np.ndarray]],
    load: Callable[[dict[str, np.ndarray], int, int], None],
    advance: Callable[[dict[str, np.ndarray], int, int], bool],
    run_chunk: Callable[..., dict[str, tf.Tensor]],
    compact: bool = True,
    verbose: bool = False,
) -> None:
    """Drives a per-example search through a compiled chunk function.

    Keeps up to `batch_size` examples in flight, one per slot of a numpy state dict (each value
    has a leading slot axis and a "status" entry). Each round gathers the RUNNING slots into a
    batch padded to the next power of two (`compact`) or always to `batch_size` rows, lets
    `run_chunk` advance them until a tenth of them have
    ended a solve (SOLVED or FAILED) or `MAX_CHUNK_STEPS` iterations passed, and hands every
    ended slot to `advance`, which either restarts it (status RUNNING) or finishes its example;
    a finished slot is loaded with the next example or left IDLE.

    Args:
        n_examples: number of examples to attack.
        batch_size: the number of slots.
        new_state: `new_state(n_slots)` -> state dict with every slot IDLE.
        load: `load(state, slot, example)` puts an example's first solve into a slot.
        advance: `advance(state, slot, example)` -> True when the example is finished.
        run_chunk: `run_chunk(batch_state, max_steps, min_events)` -> the batch state after
            the chunk, as tensors.
        compact: shrink the batch as examples finish. Otherwise every chunk runs on exactly
            `batch_size` rows, so that an example's arithmetic never depends on how many
            others share its batch (CPU kernels round differently for different batch sizes).
        verbose: show a `keras.utils.Progbar` over finished examples.
    """
    n_slots = min(batch_size, n_examples)
    state = new_state(n_slots)
    slot_example = np.arange(n_slots)
    for slot in range(n_slots):
        load(state, slot, slot)
    next_example, finished = n_slots, 0
    progbar = keras.utils.Progbar(n_examples, unit_name="image") if verbose else None
    while True:
        running = np.flatnonzero(state["status"] == RUNNING)
        if running.size == 0:
            break
        size = min(n_slots, 1 << (running.size - 1).bit_length()) if compact else batch_size
        rows = np.concatenate([running, np.repeat(running[-1:], size - running.size)])
        batch = {key: value[rows] for key, value in state.items()}
        batch["status"][running.size :] = IDLE
        min_events = max(1, math.ceil(EVENT_FRACTION * running.size))
        out = run_chunk(batch, tf.constant(MAX_CHUNK_STEPS), tf.constant(min_events))
        for key, value in out.items():
            state[key][running] = value.numpy()[: running.size]
        for slot in running[state["status"][running] != RUNNING]:
            if not advance(state, slot, slot_example[slot]):
                continue
            finished += 1
            if progbar is not None:
                progbar.update(finished)
            if next_example < n_examples:
                load(state, slot, next_example)
                slot_example[slot] = next_example
                next_example += 1
            else:
                state["status"][slot] = IDLE


def compiled_chunk(
    builder: Callable[..., Callable[..., dict[str, tf.Tensor]]],
    model: Callable[..., Any],
    config: SearchConfig,
    inputs: AttackInputs,
) -> Callable[..., dict[str, tf.Tensor]]:
    """`builder(model, config, image_shape, num_classes)`, compiled once per model and settings.

    Args:
        builder: compiles the chunk function of one attack.
        model: the attacked model.
        config: the settings the chunk function depends on.
        inputs: the attack's prepared inputs.

    Returns:
        The compiled chunk function, from `AttackInputs.compiled`.
    """
    shape, classes = inputs.x.shape[1:], inputs.num_classes
    return inputs.compiled(
        model, builder.__qualname__, (config,), lambda: builder(model, config, shape, classes)
    )


def may_end_solve(step: tf.Tensor, config: Any) -> tf.Tensor:
    """Whether a success at this step ends the solve: always, or only at the last step."""
    return tf.logical_or(tf.constant(config.abort_early), tf.equal(step, config.max_iterations - 1))


def const_schedule(
    s: dict[str, tf.Tensor],
    running: tf.Tensor,
    solved: tf.Tensor,
    config: Any,
    stepped: tf.Tensor | None = None,
    undecided: tf.Tensor | None = None,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Counts one step and applies the original's schedule of c, per example.

    After `config.max_iterations` steps without success c is multiplied by
    `config.const_factor` (the optimiser state carries over); reaching
    `config.largest_const` fails the solve.

    Args:
        s: the chunk state, with "const", "step" and "status" [N].
        running: bool [N], examples in a solve at this iteration.
        solved: bool [N], examples whose solve succeeded at this iteration.
        config: an attack configuration with `max_iterations`, `const_factor` and
            `largest_const`.
        stepped: bool [N], examples whose step count grows (default `running`).
        undecided: bool [N], examples whose success is only checked at the next iteration;
            c is not raised for them until that check fails (default none).

    Returns:
        The new `(const, step, status)`.
    """
    stepped = running if stepped is None else stepped
    step = tf.where(stepped, s["step"] + 1, s["step"])
    exhausted = running & ~solved & (step >= config.max_iterations)
    if undecided is not None:
        exhausted &= ~undecided
    const = tf.where(exhausted, s["const"] * config.const_factor, s["const"])
    step = tf.where(exhausted, tf.zeros_like(step), step)
    failed = exhausted & (const >= config.largest_const)
    status = tf.where(solved, SOLVED, tf.where(failed, FAILED, s["status"]))
    return const, step, status


def compile_search_loop(
    state_spec: dict[str, tf.TensorSpec],
    step_fn: Callable[[dict[str, tf.Tensor], tf.Tensor, tf.Tensor], dict[str, tf.Tensor]],
    clip_min: float,
    clip_max: float,
    tanh_scale: float,
) -> Callable[..., dict[str, tf.Tensor]]:
    """Wraps one attack step into a compiled loop over a chunk of iterations.

    Args:
        state_spec: the state's `tf.TensorSpec`s, batch dimension None (traced once).
        step_fn: `step_fn(state, w_start, x_ref)` -> the state after one Adam step, where
            `w_start` is the solve's start image in tanh space and `x_ref` the original image
            after the tanh round trip (which the original measures distances from).
        clip_min: the lower edge of the box.
        clip_max: the upper edge of the box.
        tanh_scale: the attack's factor before arctanh (see `common.to_tanh_space`).

    Returns:
        `run_chunk(state, max_steps, min_events)`: runs `step_fn` until `max_steps` steps
        passed or `min_events` examples are SOLVED or FAILED, and returns the state.
    """

    @tf.function(
        input_signature=[state_spec, tf.TensorSpec([], tf.int32), tf.TensorSpec([], tf.int32)]
    )
    def run_chunk(state, max_steps, min_events):
        # Eager runs (tf.config.run_functions_eagerly) skip the signature's conversion.
        state = {key: tf.convert_to_tensor(value) for key, value in state.items()}
        w_start = to_tanh_space(state["start"], clip_min, clip_max, tanh_scale)
        w_ref = to_tanh_space(state["x0"], clip_min, clip_max, tanh_scale)
        x_ref = from_tanh_space(w_ref, clip_min, clip_max)

        def cond(i, s):
            ended = (s["status"] == SOLVED) | (s["status"] == FAILED)
            return (i < max_steps) & (tf.reduce_sum(tf.cast(ended, tf.int32)) < min_events)

        def body(i, s):
            return i + 1, step_fn(s, w_start, x_ref)

        _, state = tf.while_loop(cond, body, (tf.constant(0), state))
        return state

    return run_chunk


def run_search(
    search: Any,
    model: Callable[..., Any],
    inputs: AttackInputs,
    *,
    compact: bool,
    verbose: bool,
) -> AttackResult:
    """Drives an attack's per-example search over all images and returns its result.

    Args:
        search: the attack's search object, with `new_state`, `load`, `advance`, `run_chunk`
            (see `run_slot_pool`) and, once done, `best_image` [N, H, W, C] and
            `best_const` [N].
        model: the attacked model.
        inputs: the attack's prepared inputs; `inputs.batch_size` is the most images
            optimised together.
        compact: drop finished examples from the compiled batch (see `run_slot_pool`).
        verbose: show a progress bar over finished images.

    Returns:
        The `AttackResult`, with success verified by classifying the best images.
    """
    run_slot_pool(
        n_examples=len(inputs.x),
        batch_size=inputs.batch_size,
        new_state=search.new_state,
        load=search.load,
        advance=search.advance,
        run_chunk=search.run_chunk,
        compact=compact,
        verbose=verbose,
    )
    return inputs.result(
        model,
        search.best_image,
        const=search.best_const,
        batch_size=inputs.batch_size,
        found=~np.isnan(search.best_const),
    )
