"""Carlini & Wagner's L-infinity attack, batched over images and compiled with `tf.function`.

Implements the L-infinity attack of Carlini & Wagner, "Towards Evaluating the Robustness of
Neural Networks" (arXiv:1608.04644), following the logic and defaults of Carlini's reference
code (github.com/carlini/nn_robust_attacks, `li_attack.py`). For each image:

1. With a threshold tau (starting at 1), minimise
   ``c * f(x') + sum_i max(|x'_i - x_i| - tau, 0)`` with Adam (lr 5e-3) in tanh space, where
   ``f`` is the margin loss (kappa = 0). Start at c = 1e-5; a solve succeeds at the first
   step whose loss is below ``1e-4 * c`` and whose updated image is classified as wanted. If
   1,000 iterations do not succeed, double c and continue from where the optimiser stands,
   giving up when c reaches 20.
2. After a success, set tau to ``0.9 * min(tau, max |x' - x|)`` and solve again from the
   adversarial image with the last successful c; stop when tau <= 1/256 or a solve fails.
   The last success is the answer.

Beyond the original:

* Batched: up to `batch_size` images are optimised together, each with its own c, tau, Adam
  state, iteration counter and status, so every example follows the single-image original's
  trajectory; the scheduling (compiled chunks traced once per model and settings, freed slots,
  power-of-two padding of the running examples, or a fixed batch shape with
  ``compact=False`` for bitwise batch invariance) is shared with the L0 attack
  (`search.run_slot_pool`).
* The original classifies the image after a qualifying step with an extra forward pass. In a
  batch that pass would run for every row whenever any row qualifies; here the check is the
  next iteration's forward pass, whose Adam step is kept when the check fails (it is the
  original's next step) and dropped when it succeeds. Trajectories, c and results are the
  original's (bitwise the same as with the extra pass at a fixed batch shape).
* The faithful search stops up to one tau step (10%) above the smallest tau it could reach.
  ``refine=True`` then bisects tau between the last success and the first failure (or 0 when
  tau fell below 1/256), each bisection a solve of the same kind but with a smaller Adam
  learning rate (1e-3), until the bracket is narrower than `refine_tolerance` times the best
  distortion.
* ``confidence`` > 0 (not in the original, which has kappa = 0) also demands that margin at
  the success check.
* tau and distortions are measured in units of the box width (clip_max - clip_min); the
  original works on [-0.5, 0.5] only. On any box the image enters tanh space as the original's
  ``arctanh(x * 1.999999)`` does, through the factor 0.9999995 of the half-range
  (`TANH_SCALE`, not the L2 attack's 0.999999).
* ``abort_early=False`` checks for success only at the last iteration of each c. This is not what
  the original does at HEAD (carlini/nn_robust_attacks c6b8f6a): there, since commit d2067d5
  ("Remove dead code", 2018-03-05), a solve can only end on success when ``ABORT_EARLY`` is set,
  so with it off no solve ever succeeds and the attack always fails (``attack_single`` returns
  the original image). We keep the earlier revision's intent (its test ``step == CONST-1``, meant
  as the last step), because a mode that cannot succeed is of no use to an evaluation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from keras_takd.attacks.carlini_wagner.search import (
    RUNNING,
    SOLVED,
    SearchBase,
    SearchConfig,
    adam_update,
    compile_search_loop,
    compiled_chunk,
    const_schedule,
    load_example,
    may_end_solve,
    new_solve_state,
    restart_solve,
    run_search,
    solve_state_spec,
)
from keras_takd.attacks.common import (
    DEFAULT_BATCH_SIZE,
    L0_LINF_TANH_SCALE,
    AttackResult,
    call_model,
    from_tanh_space,
    margin_loss,
)
from keras_takd.attacks.optimizers import expand_to
from keras_takd.attacks.preparation import AttackInputs, prepare_inputs

# The original's arctanh(x * 1.999999) on the [-0.5, 0.5] box.
TANH_SCALE = L0_LINF_TANH_SCALE
# The original's success test: total loss below 1e-4 * c (and the right class).
SUCCESS_THRESHOLD = 1e-4
# The search over tau stops once tau falls to this (in units of the box width).
SMALLEST_TAU = 1.0 / 256
# Bisection steps allowed to `refine=True` per example.
MAX_REFINE_STEPS = 20

# Phases of an example's search between solves.
_DESCEND, _REFINE = 0, 1


@dataclasses.dataclass(frozen=True)
class _LinfConfig(SearchConfig):
    """The shared search settings and the L-inf attack's tau schedule and refinement."""

    decrease_factor: float
    refine: bool
    refine_tolerance: float
    refine_learning_rate: float

    def _check(self) -> None:
        super()._check()
        if not 0 < self.decrease_factor < 1:
            raise ValueError(f"decrease_factor must be in (0, 1), got {self.decrease_factor}")
        if not 0 < self.refine_tolerance < 1:
            raise ValueError(f"refine_tolerance must be in (0, 1), got {self.refine_tolerance}")
        if not self.refine_learning_rate > 0:
            raise ValueError(f"refine_learning_rate must be > 0, got {self.refine_learning_rate}")


def carlini_wagner_linf(
    model: Callable[..., Any],
    x: np.ndarray,
    y: np.ndarray,
    *,
    targeted: bool = False,
    target: np.ndarray | None = None,
    confidence: float = 0.0,
    learning_rate: float = 5e-3,
    max_iterations: int = 1000,
    abort_early: bool = True,
    initial_const: float = 1e-5,
    largest_const: float = 20.0,
    const_factor: float = 2.0,
    decrease_factor: float = 0.9,
    refine: bool = False,
    refine_tolerance: float = 0.01,
    refine_learning_rate: float = 1e-3,
    batch_size: int = DEFAULT_BATCH_SIZE,
    clip_min: float = 0.0,
    clip_max: float = 1.0,
    allow_probabilities: bool = False,
    compact: bool = True,
    verbose: bool = False,
) -> AttackResult:
    """Runs Carlini & Wagner's L-infinity attack on a batch of images.

    Args:
        model: a Keras model or callable mapping float32 images [N, H, W, C] to logits.
        x: images [N, H, W, C] inside [clip_min, clip_max].
        y: true labels [N].
        targeted: aim for `target` instead of any wrong class.
        target: target labels [N] when `targeted`.
        confidence: the margin kappa of the loss (0 in the original).
        learning_rate: Adam's learning rate.
        max_iterations: Adam steps per value of c.
        abort_early: end a solve at the first successful step.
            False checks for success only at the last iteration of each c (the
            original at HEAD never succeeds then; see the module docstring).
        initial_const: the first c.
        largest_const: give up a solve when c reaches this.
        const_factor: c is multiplied by this after `max_iterations` steps without success.
        decrease_factor: tau is multiplied by this after each success.
        refine: after the original search, bisect tau between the last success and the first
            failure (opt-in; lands close to the smallest reachable distortion, at the cost of
            more solves).
        refine_tolerance: bisection stops when the bracket is narrower than this fraction of
            the best distortion.
        refine_learning_rate: Adam's learning rate in the bisection solves; smaller than
            `learning_rate` so that Adam's jitter around the tau kink (about one step) does
            not hide a tau that is reachable.
        batch_size: the most images optimised together.
        clip_min: the lower edge of the box.
        clip_max: the upper edge of the box.
        allow_probabilities: attack a model that outputs probabilities on purpose.
        compact: drop finished examples from the compiled batch (padded to a power of two).
            The answers are the same up to float round-off, which CPU kernels do differently
            for different batch sizes and which the search can amplify; with False every
            chunk runs on exactly `batch_size` rows and each example's result is bitwise
            independent of the other examples in its batch.
        verbose: show a progress bar over finished images.

    Returns:
        An `AttackResult`; success is verified by classifying `x_adv`, and failed examples
        keep their original image.

    Raises:
        ValueError: on bad shapes, labels or options, `x` outside the box, or a model whose
            outputs look like probabilities (unless `allow_probabilities`).
    """
    config = _LinfConfig(
        targeted=targeted,
        confidence=confidence,
        learning_rate=learning_rate,
        max_iterations=max_iterations,
        abort_early=abort_early,
        initial_const=initial_const,
        largest_const=largest_const,
        const_factor=const_factor,
        clip_min=clip_min,
        clip_max=clip_max,
        decrease_factor=decrease_factor,
        refine=refine,
        refine_tolerance=refine_tolerance,
        refine_learning_rate=refine_learning_rate,
    )
    inputs = prepare_inputs(
        model,
        x,
        y,
        targeted=targeted,
        target=target,
        clip_min=clip_min,
        clip_max=clip_max,
        batch_size=batch_size,
        allow_probabilities=allow_probabilities,
    )
    search = _LinfSearch(model, config, inputs)
    return run_search(search, model, inputs, compact=compact, verbose=verbose)


class _LinfSearch(SearchBase):
    """The L-inf attack's per-example state, compiled inner loop and outer (tau) step."""

    def __init__(
        self, model: Callable[..., Any], config: _LinfConfig, inputs: AttackInputs
    ) -> None:
        super().__init__(config, inputs)
        n = len(inputs.x)
        self.best_tau = np.full(n, np.inf)  # distortion of the best image, in box widths
        self.phase = np.full(n, _DESCEND)
        self.lower = np.zeros(n)  # largest tau known to fail (refinement)
        self.refine_steps = np.zeros(n, np.int64)
        self.run_chunk = compiled_chunk(_build_linf_chunk, model, config.inner(), inputs)

    def new_state(self, n_slots: int) -> dict[str, np.ndarray]:
        """Zeroed state for `n_slots` slots, all IDLE, with tau, learning rate and pending."""
        state = new_solve_state(n_slots, self.x.shape[1:], self.onehot.shape[1])
        state["tau"] = np.zeros(n_slots, np.float32)
        state["lr"] = np.zeros(n_slots, np.float32)
        state["pending"] = np.zeros(n_slots, bool)
        return state

    def load(self, state: dict[str, np.ndarray], slot: int, example: int) -> None:
        """Puts an example's first solve (tau = 1, c = initial_const) in a slot."""
        load_example(state, slot, self.x[example], self.onehot[example], self.config.initial_const)
        state["lr"][slot] = self.config.learning_rate
        self._restart(state, slot, self.x[example], tau=1.0)

    def _restart(
        self, state: dict[str, np.ndarray], slot: int, start: np.ndarray, tau: float
    ) -> None:
        """Starts a fresh solve at `tau` from `start` (new variable and Adam state)."""
        restart_solve(state, slot, start)
        state["pending"][slot] = False
        state["tau"][slot] = tau

    def advance(self, state: dict[str, np.ndarray], slot: int, example: int) -> bool:
        """The outer step after a solve ended; returns True when the example is finished."""
        tau = float(state["tau"][slot])
        if state["status"][slot] == SOLVED:
            image = state["x_sol"][slot]
            reached = float(np.max(np.abs(image - self.x[example]))) / self.scale
            # Like the original, the last success is the answer (each lies within the last).
            self.best_image[example] = image
            self.best_tau[example] = reached
            self.best_const[example] = state["const"][slot]
            if self.phase[example] == _DESCEND:
                tau = min(tau, reached) * self.config.decrease_factor
                if tau > SMALLEST_TAU:
                    self._restart(state, slot, image, tau)
                    return False
                return self._start_refinement(state, slot, example, failed_tau=0.0)
        elif self.phase[example] == _DESCEND:
            if not np.isfinite(self.best_tau[example]):
                return True
            return self._start_refinement(state, slot, example, failed_tau=tau)
        else:
            self.lower[example] = tau
        return self._bisect(state, slot, example)

    def _start_refinement(
        self, state: dict[str, np.ndarray], slot: int, example: int, failed_tau: float
    ) -> bool:
        if not self.config.refine:
            return True
        self.phase[example] = _REFINE
        state["lr"][slot] = self.config.refine_learning_rate
        self.lower[example] = failed_tau
        return self._bisect(state, slot, example)

    def _bisect(self, state: dict[str, np.ndarray], slot: int, example: int) -> bool:
        """Next refinement solve halfway into the bracket; True when the bracket is narrow."""
        upper, lower = self.best_tau[example], self.lower[example]
        steps = self.refine_steps[example]
        if upper - lower <= self.config.refine_tolerance * upper or steps >= MAX_REFINE_STEPS:
            return True
        self.refine_steps[example] += 1
        state["const"][slot] = self.best_const[example]
        self._restart(state, slot, self.best_image[example], tau=0.5 * (lower + upper))
        return False


def _build_linf_chunk(
    model: Callable[..., Any],
    config: SearchConfig,
    image_shape: tuple[int, ...],
    num_classes: int,
) -> Callable[..., dict[str, tf.Tensor]]:
    """Compiles the L-inf attack's inner Adam loop for one model and configuration."""
    state_spec = solve_state_spec(image_shape, num_classes)
    state_spec["tau"] = state_spec["lr"] = tf.TensorSpec([None], tf.float32)
    state_spec["pending"] = tf.TensorSpec([None], tf.bool)
    low, high = config.clip_min, config.clip_max

    def step_fn(s: dict[str, tf.Tensor], w_start: tf.Tensor, x_ref: tf.Tensor):
        running = tf.equal(s["status"], RUNNING)
        # The original classifies the image after a qualifying step with an extra forward
        # pass. Here the next iteration's forward pass is that check: on success the example
        # ends with that image; otherwise the iteration is the original's next step. Only an
        # example whose c is due to rise after a failed check waits: its step must use the
        # new c.
        pending = running & s["pending"]
        modifier = s["modifier"]
        with tf.GradientTape() as tape:
            tape.watch(modifier)
            img = from_tanh_space(modifier + w_start, low, high)
            logits = call_model(model, img)
            loss1 = margin_loss(logits, s["labels"], config.confidence, config.targeted)
            excess = tf.abs(img - x_ref) / (high - low) - expand_to(s["tau"], img)
            loss = s["const"] * loss1 + tf.reduce_sum(tf.nn.relu(excess), axis=[1, 2, 3])
            total = tf.reduce_sum(loss)
        grad = tape.gradient(total, modifier)
        hit = tf.equal(tf.argmax(logits, axis=-1), tf.argmax(s["labels"], axis=-1))
        wanted = hit if config.targeted else ~hit
        solved = pending & wanted & (loss1 <= 0.0)
        moving = running & ~solved & ~(pending & (s["step"] >= config.max_iterations))
        new = dict(s)
        adam_update(new, s, grad, s["lr"], moving)
        # Like the original: the loss before the step decides whether the image after it is
        # checked (at the next iteration) and returned.
        candidate = (
            moving & (loss < SUCCESS_THRESHOLD * s["const"]) & may_end_solve(s["step"], config)
        )
        new["pending"] = candidate
        new["const"], new["step"], new["status"] = const_schedule(
            s, running, solved, config, stepped=moving, undecided=candidate
        )
        new["x_sol"] = tf.where(expand_to(solved, img), img, s["x_sol"])
        return new

    return compile_search_loop(state_spec, step_fn, low, high, TANH_SCALE)
