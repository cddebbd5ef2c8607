"""Carlini & Wagner's L0 attack, batched over images and compiled with `tf.function`.

Implements the L0 attack of Carlini & Wagner, "Towards Evaluating the Robustness of Neural
Networks" (arXiv:1608.04644), following the logic and defaults of Carlini's reference code
(github.com/carlini/nn_robust_attacks, `l0_attack.py`). For each image:

1. Start with every pixel allowed to change. Minimise ``c * f(x') + ||x' - x||_2^2`` with Adam
   (lr 1e-2) in tanh space, where ``f`` is the margin loss with kappa = 0.01 and ``x'`` takes
   the original value at frozen pixels. Start at c = 1e-3; if 1,000 iterations do not bring
   ``f`` below 1e-4, double c and continue from where the optimiser stands (variable and Adam
   state carried over), giving up when c reaches 2e6.
2. After a successful solve, score each still-allowed pixel by
   ``|sum_channels delta| * sum_channels |gradient of the loss|`` and freeze pixels in
   ascending score, stopping after the first with a score above 0.01 or after
   ``0.3 * sqrt(number of changed pixels)`` of them (always at least one).
3. Solve again, starting from the last adversarial image and the last successful c, and
   repeat until a solve fails. The last success is the answer.

Beyond the original:

* Batched: up to `batch_size` images are optimised together, each with its own c, pixel mask,
  Adam state, iteration counter and status. Each example follows exactly the trajectory the
  single-image original would (no quantity is shared across the batch), so the answers do not
  depend on the batch; only float round-off in batched kernels can differ.
* The inner Adam loop runs in a `tf.function` with a fixed input signature (batch dimension
  left open), traced once and reused for every batch, solve and later call with the same
  model and settings. Between compiled chunks, examples whose
  solve ended get their outer step (pixel freezing) in numpy and are sent back; examples that
  are finished leave the batch and free their slot for the next image; the running slots are
  gathered into a batch padded to a power of two, so stragglers do not pay for finished work.
  CPU kernels round differently for different batch sizes and the search can amplify that, so
  ``compact=False`` keeps every chunk at exactly `batch_size` rows (the last batch padded):
  slower, but each example's result is then bitwise independent of the rest of its batch.
* A solve succeeds only at an iterate that is also classified as wanted. With the original's
  kappa = 0.01 that is implied by ``f < 1e-4`` (the margin is then at least 0.0099), so nothing
  changes; with ``confidence=0`` (as `flags/common_eval.cfg` sets, following the paper), the
  original's test alone accepts near-ties that keep the true class, and the attack would freeze
  pixels on them and return no adversarial at all (the silent-success indicator tripped on
  every image of weak models).
* When the very first solve fails the original crashes; here the example is reported as a
  failure with its original image. An image that is adversarial with no pixel changed is
  finished at once (the original would freeze its pixels one per round, to the same answer).
* Distances are measured in units of the box width (clip_max - clip_min), so the original's
  thresholds (1e-4 for a changed pixel, 0.01 for a frozen one) keep their meaning for any box.
  The original works on [-0.5, 0.5] only; on any box the image enters tanh space as the
  original's ``arctanh(x * 1.999999)`` does, through the factor 0.9999995 of the half-range
  (`TANH_SCALE`, not the L2 attack's 0.999999).
* ``abort_early=False`` checks for success only at the last iteration of each c. This is not what
  the original does at HEAD (carlini/nn_robust_attacks c6b8f6a): there, since commit d2067d5
  ("Remove dead code", 2018-03-05), a solve can only end on success when ``ABORT_EARLY`` is set,
  so with it off no solve ever succeeds and the attack always fails (``attack_single`` returns
  None). We keep the earlier revision's intent (its test ``step == CONST-1``, meant as the last
  step), because a mode that cannot succeed is of no use to an evaluation.
* Among pixels with equal scores the one with the smaller index is frozen first (stable sort);
  the original's order among ties is whatever numpy's default (unstable, possibly SIMD) sort
  gives, which is not reproducible across machines, so there is no original order to keep.
* `verbose` shows a `keras.utils.Progbar` over finished images rather than over batches, since
  images enter and leave the batch one by one.
* XLA (`jit_compile=True`) was tried for the inner loop and left out: on CPU it ran about 8x
  slower than the plain graph on the MNIST CNN, and its float results differ slightly.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from keras_takd.attacks.carlini_wagner.search import (
    FAILED,
    RUNNING,
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
    L0_THRESHOLD,
    AttackResult,
    call_model,
    from_tanh_space,
    margin_loss,
)
from keras_takd.attacks.optimizers import expand_to
from keras_takd.attacks.preparation import AttackInputs, prepare_inputs

# The original's arctanh(x * 1.999999) on the [-0.5, 0.5] box.
TANH_SCALE = L0_LINF_TANH_SCALE
# The original's success test on the margin loss: f < 1e-4.
SUCCESS_THRESHOLD = 1e-4
# A pixel whose total change exceeds this stops the freezing of one round.
FREEZE_THRESHOLD = 0.01
# At most this times sqrt(number of changed pixels) pixels are frozen per round.
FREEZE_FRACTION = 0.3


def carlini_wagner_l0(
    model: Callable[..., Any],
    x: np.ndarray,
    y: np.ndarray,
    *,
    targeted: bool = False,
    target: np.ndarray | None = None,
    confidence: float = 0.01,
    learning_rate: float = 1e-2,
    max_iterations: int = 1000,
    abort_early: bool = True,
    initial_const: float = 1e-3,
    largest_const: float = 2e6,
    const_factor: float = 2.0,
    batch_size: int = DEFAULT_BATCH_SIZE,
    clip_min: float = 0.0,
    clip_max: float = 1.0,
    allow_probabilities: bool = False,
    compact: bool = True,
    verbose: bool = False,
) -> AttackResult:
    """Runs Carlini & Wagner's L0 attack on a batch of images.

    Args:
        model: a Keras model or callable mapping float32 images [N, H, W, C] to logits.
        x: images [N, H, W, C] inside [clip_min, clip_max].
        y: true labels [N].
        targeted: aim for `target` instead of any wrong class.
        target: target labels [N] when `targeted`.
        confidence: the margin kappa of the loss (0.01, hard-coded in the original).
        learning_rate: Adam's learning rate.
        max_iterations: Adam steps per value of c.
        abort_early: end a solve at the first iterate whose margin loss is below 1e-4.
            False checks for success only at the last iteration of each c (the
            original at HEAD never succeeds then; see the module docstring).
        initial_const: the first c.
        largest_const: give up a solve when c reaches this.
        const_factor: c is multiplied by this after `max_iterations` steps without success.
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
    config = SearchConfig(
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
    search = _L0Search(model, config, inputs)
    return run_search(search, model, inputs, compact=compact, verbose=verbose)


class _L0Search(SearchBase):
    """The L0 attack's per-example state, compiled inner loop and outer (freezing) step."""

    def __init__(
        self, model: Callable[..., Any], config: SearchConfig, inputs: AttackInputs
    ) -> None:
        super().__init__(config, inputs)
        self.run_chunk = compiled_chunk(_build_l0_chunk, model, config, inputs)

    def new_state(self, n_slots: int) -> dict[str, np.ndarray]:
        """Zeroed state for `n_slots` slots, all IDLE, with the pixel mask and the gradient."""
        state = new_solve_state(n_slots, self.x.shape[1:], self.onehot.shape[1])
        state["mask"] = np.zeros((n_slots, *self.x.shape[1:3], 1), np.float32)
        state["grad"] = np.zeros((n_slots, *self.x.shape[1:]), np.float32)
        return state

    def load(self, state: dict[str, np.ndarray], slot: int, example: int) -> None:
        """Puts an example's first solve (all pixels allowed, c = initial_const) in a slot."""
        load_example(state, slot, self.x[example], self.onehot[example], self.config.initial_const)
        state["mask"][slot] = 1.0
        restart_solve(state, slot, self.x[example])

    def advance(self, state: dict[str, np.ndarray], slot: int, example: int) -> bool:
        """The outer step after a solve ended; returns True when the example is finished."""
        if state["status"][slot] == FAILED:
            return True
        image = state["x_sol"][slot]
        self.best_image[example] = image
        self.best_const[example] = state["const"][slot]
        allowed = state["mask"][slot, ..., 0] > 0
        if not allowed.any():
            return True
        delta = (image - self.x[example]) / self.scale
        n_changed = int(np.sum(np.any(np.abs(delta) >= L0_THRESHOLD, axis=-1)))
        if n_changed == 0:
            # Adversarial with no pixel changed: the original would go on freezing one pixel
            # per round until none is left, and then return the original image.
            return True
        total_change = np.abs(delta.sum(axis=-1)) * np.abs(state["grad"][slot]).sum(axis=-1)
        frozen = pixels_to_freeze(total_change, allowed, n_changed)
        state["mask"][slot, ..., 0].flat[frozen] = 0.0
        restart_solve(state, slot, image)
        return False


def pixels_to_freeze(total_change: np.ndarray, allowed: np.ndarray, n_changed: int) -> np.ndarray:
    """The original's choice of pixels to freeze after a successful solve.

    Args:
        total_change: [H, W] score of each pixel, |sum of its change| * sum of |gradient|.
        allowed: bool [H, W], the pixels still allowed to change.
        n_changed: the number of pixels the last solution changed.

    Returns:
        Flat indices into [H, W] of the pixels to freeze, in ascending score: up to and
        including the first with a score above 0.01 or the
        ceil(0.3 * sqrt(n_changed))-th, at least one (none if no pixel is allowed).
    """
    order = np.argsort(total_change, axis=None, kind="stable")
    candidates = order[allowed.ravel()[order]]
    if candidates.size == 0:
        return candidates
    counts = np.arange(1, candidates.size + 1)
    stop = (total_change.ravel()[candidates] > FREEZE_THRESHOLD) | (
        counts >= FREEZE_FRACTION * math.sqrt(n_changed)
    )
    last = int(np.argmax(stop)) if stop.any() else candidates.size - 1
    return candidates[: last + 1]


def _build_l0_chunk(
    model: Callable[..., Any], config: SearchConfig, image_shape: tuple[int, ...], num_classes: int
) -> Callable[..., dict[str, tf.Tensor]]:
    """Compiles the L0 attack's inner Adam loop for one model and configuration."""
    state_spec = solve_state_spec(image_shape, num_classes)
    state_spec["mask"] = tf.TensorSpec([None, *image_shape[:2], 1], tf.float32)
    state_spec["grad"] = tf.TensorSpec([None, *image_shape], tf.float32)
    low, high = config.clip_min, config.clip_max

    def step_fn(s: dict[str, tf.Tensor], w_start: tf.Tensor, x_ref: tf.Tensor):
        running = tf.equal(s["status"], RUNNING)
        modifier = s["modifier"]
        with tf.GradientTape() as tape:
            tape.watch(modifier)
            mask = s["mask"]
            img = from_tanh_space(modifier + w_start, low, high) * mask + (1.0 - mask) * s["x0"]
            logits = call_model(model, img)
            loss1 = margin_loss(logits, s["labels"], config.confidence, config.targeted)
            loss2 = tf.reduce_sum(tf.square((img - x_ref) / (high - low)), axis=[1, 2, 3])
            total = tf.reduce_sum(s["const"] * loss1 + loss2)
        grad = tape.gradient(total, modifier)
        hit = tf.equal(tf.argmax(logits, axis=-1), tf.argmax(s["labels"], axis=-1))
        wanted = hit if config.targeted else ~hit
        solved = running & wanted & (loss1 < SUCCESS_THRESHOLD) & may_end_solve(s["step"], config)
        new = dict(s)
        # A solved example keeps the iterate that succeeded (the original restores it).
        adam_update(new, s, grad, config.learning_rate, running & ~solved)
        new["const"], new["step"], new["status"] = const_schedule(s, running, solved, config)
        new["grad"] = tf.where(expand_to(solved, grad), grad, s["grad"])
        new["x_sol"] = tf.where(expand_to(solved, img), img, s["x_sol"])
        return new

    return compile_search_loop(state_spec, step_fn, low, high, TANH_SCALE)
