"""Auto-PGD (APGD; Croce & Hein, ICML 2020, arXiv:2003.01690).

APGD is projected gradient ascent inside the eps-ball (L-inf or L2) whose only free parameter
is the number of steps N (Sect. 3 of the paper, Algorithm 1):

- the step size starts at eta = 2 eps and is halved at the checkpoints
  w_j = ceil(p_j N), p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06), when
  (1) fewer than rho = 0.75 of the steps since the last checkpoint raised the loss, or
  (2) the step size was not halved at the last checkpoint and the best loss has not risen
  since; after a halving the iterate restarts from the best point x_max found so far;
- every step after the first has momentum alpha = 0.75:
  z = P(x_k + eta s(grad)), x_{k+1} = P(x_k + alpha (z - x_k) + (1 - alpha)(x_k - x_{k-1})),
  with s the sign (L-inf) or the L2-normalised gradient (L2) and P the projection onto the
  eps-ball and the box.

It maximises the cross-entropy ("ce") or the Difference of Logits Ratio ("dlr", Sect. 4):
DLR = -(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3), with z_pi the logits sorted in decreasing
order, and in its targeted form -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2). DLR does not
change when the logits are multiplied by a constant, so it keeps its gradient where the
cross-entropy of a large-logit model (a defensively distilled one) saturates.

`autoattack_lite` (its own module) runs APGD-CE, then APGD-T, as a reduced AutoAttack.

Where this implementation deviates from the paper and from the authors' code
(github.com/fra31/auto-attack):
- The random start is uniform in the L-inf cube or the L2 ball (`random_start_points`, as PGD
  here); the authors' code starts on the L2 sphere or at a random sign-like point.
- After a halving the loss at the restart point is taken to be f(x_max) for the next window's
  count of increases (the authors' code keeps the loss of the discarded iterate); condition 1
  is the paper's strict "<" (the code uses "<=").
- The returned image is the last adversarial iterate where one was found (as the authors'
  code), else the original image; success is re-verified by classifying it.
- Restarts run only on the images that no earlier restart fooled.
- Numerics, not the algorithm: TensorFlow on the CPU flushes denormal floats (below 1.2e-38)
  to zero, PyTorch does not. Where a large-logit model's softmax saturates, the cross-entropy
  gradient is then exactly zero here, while the authors' code keeps denormal gradients whose
  sign still steers an L-inf step. On the T = 40 distilled benchmark network APGD-CE leaves
  2 to 8 points more robust accuracy here than the authors' code at L-inf eps 0.1 to 0.3, and
  within 1.4 points of it (every interval holding 0) when PyTorch flushes denormals too;
  of the other 21 comparisons (APGD-DLR, APGD-CE then APGD-T, L2, the T = 1 network), 20 are
  the same within 2 points and one is inconclusive (benchmarks/apgd_fidelity.py).
  TensorFlow has no switch for this, so there is no option for the original's numerics: read
  APGD-CE on a distilled model as an upper bound, and use DLR.

The N steps of a batch run in one compiled `tf.while_loop` with a fixed input signature.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from typing import Any, NamedTuple

import keras
import numpy as np
import tensorflow as tf

from keras_takd.attacks import common, projections
from keras_takd.attacks.optimizers import expand_to
from keras_takd.attacks.preparation import AttackInputs, check_positive_finite, prepare_inputs
from keras_takd.attacks.projected_gradient_descent import random_start_points

NORMS = ("linf", "l2")
LOSSES = ("ce", "dlr")
MOMENTUM = 0.75
RHO = 0.75
_DLR_TINY = 1e-12


def apgd(
    model: Callable[..., Any],
    x: np.ndarray,
    y: np.ndarray,
    eps: float,
    norm: str = "linf",
    loss: str = "ce",
    steps: int = 100,
    restarts: int = 1,
    *,
    targeted: bool = False,
    target: np.ndarray | None = None,
    random_start: bool = True,
    rho: float = RHO,
    momentum: float = MOMENTUM,
    seed: int | None = 0,
    batch_size: int = 128,
    clip_min: float = 0.0,
    clip_max: float = 1.0,
    allow_probabilities: bool = False,
    verbose: bool = False,
) -> common.AttackResult:
    """Runs APGD-CE or APGD-DLR (APGD-T when targeted) on a batch of images.

    Args:
        model: a Keras model (or callable) mapping float32 images in the box to logits.
        x: images [N, H, W, C] inside [clip_min, clip_max].
        y: true labels [N].
        eps: radius of the allowed perturbation ball (in `norm`), > 0.
        norm: "linf" or "l2".
        loss: "ce" (cross-entropy) or "dlr" (Difference of Logits Ratio; needs >= 3 classes,
            >= 4 when targeted).
        steps: N, the iterations per run (N + 1 forward and backward passes).
        restarts: runs from independent random starts; each after the first attacks only the
            images not yet fooled.
        targeted: aim for `target` (APGD-T with the targeted DLR, or CE towards the target).
        target: target labels [N], required when `targeted`.
        random_start: start each run at a uniformly random point of the eps-ball, as the
            paper does; False starts at `x` itself (every restart alike, so use one), which an
            unbounded check of the attack needs: at eps covering the whole box a random start
            wins by chance and would hide a stalled attack.
        rho: the fraction of loss-raising steps below which the step size is halved.
        momentum: alpha, the weight of the new step against the previous one.
        seed: seed of the random starts (None: fresh ones); an image's start depends only on
            the seed, the restart and the image, not on the batch it is in.
        batch_size: at most this many images per compiled run; the images are split into the
            fewest such batches, filled evenly.
        clip_min: the lower edge of the box.
        clip_max: the upper edge of the box.
        allow_probabilities: attack a model that outputs probabilities on purpose.
        verbose: show a progress bar over batches.

    Returns:
        An `AttackResult` (`const` is NaN); `1 - success` per image is its robustness at eps.

    Raises:
        ValueError: on invalid options or inputs.
    """
    check_options(eps, norm, loss, steps, restarts, rho, momentum)
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
    needed = 4 if targeted else 3
    if loss == "dlr" and inputs.num_classes < needed:
        raise ValueError(
            f"the {'targeted ' if targeted else ''}DLR loss needs >= {needed} classes, "
            f"the model has {inputs.num_classes}"
        )
    plan = inputs.batches(fill_evenly=True)  # autoattack_lite runs it on ever fewer survivors
    run = inputs.compiled(
        model,
        "apgd",
        (plan.size, norm, loss, targeted),
        lambda: _build_runner(model, inputs, plan.size, norm, loss, targeted),
    )
    hyper = [
        tf.constant(eps, tf.float32),
        tf.constant(steps, tf.int32),
        tf.constant(checkpoints(steps)),
        tf.constant(rho, tf.float32),
        tf.constant(momentum, tf.float32),
    ]
    x, labels = inputs.x, (inputs.one_hot(inputs.y), inputs.onehot)
    x_adv, found = x.copy(), np.zeros(len(x), bool)
    progbar = keras.utils.Progbar(restarts, unit_name="restart") if verbose else None
    for restart in range(restarts):
        rows = np.flatnonzero(~found)
        if rows.size == 0:
            break
        x_init = (
            _random_starts(x[rows], eps, norm, clip_min, clip_max, seed, restart)
            if random_start
            else x[rows]
        )
        for part in plan.slices(rows.size):
            chosen = rows[part]
            padded = plan.pad(x[chosen], x_init[part], *(a[chosen] for a in labels))
            adv, hit = plan.trim(part, *run(*map(tf.constant, padded), *hyper))
            x_adv[chosen] = np.where(hit[:, None, None, None], adv, x[chosen])
            found[chosen] = hit
        if progbar is not None:
            progbar.update(restart + 1)
    return inputs.result(model, x_adv, const=np.nan, batch_size=plan.size, found=found)


def _random_starts(
    x: np.ndarray,
    eps: float,
    norm: str,
    clip_min: float,
    clip_max: float,
    seed: int | None,
    restart: int,
) -> np.ndarray:
    """Uniform random points of the eps-balls, each image's drawn from its own generator.

    The generator of an image is seeded with (seed, restart, CRC-32 of the image's bytes), so
    an image gets the same start whichever batch it is attacked in.
    """
    if seed is None:
        return random_start_points(x, eps, norm, clip_min, clip_max, None)
    starts = [
        random_start_points(
            image[None], eps, norm, clip_min, clip_max, [seed, restart, zlib.crc32(image.tobytes())]
        )
        for image in x
    ]
    return np.concatenate(starts, axis=0)


def checkpoints(steps: int) -> np.ndarray:
    """The paper's checkpoints as a bool mask over iteration counts 0..steps.

    w_j = ceil(p_j N) with p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06).

    Args:
        steps: N.

    Returns:
        bool [steps + 1]; entry k is True when k = w_j for some j >= 1.
    """
    mask = np.zeros(steps + 1, bool)
    previous, current = 0.0, 0.22
    while True:
        w = math.ceil(round(current * steps, 9))
        if w > steps:
            return mask
        mask[max(w, 1)] = True
        previous, current = current, current + max(current - previous - 0.03, 0.06)


def dlr_loss(logits: tf.Tensor, onehot: tf.Tensor) -> tf.Tensor:
    """Croce & Hein's untargeted DLR loss per example (Sect. 4), to be maximised.

    -(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3 + 1e-12), z_pi the logits in decreasing order.
    """
    top = tf.math.top_k(logits, k=3).values
    return -common.logit_margin(logits, onehot) / (top[:, 0] - top[:, 2] + _DLR_TINY)


def dlr_targeted_loss(
    logits: tf.Tensor, onehot_true: tf.Tensor, onehot_target: tf.Tensor
) -> tf.Tensor:
    """The targeted DLR loss (Sect. 4): -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)."""
    top = tf.math.top_k(logits, k=4).values
    true_logit = tf.reduce_sum(onehot_true * logits, axis=-1)
    target_logit = tf.reduce_sum(onehot_target * logits, axis=-1)
    scale = top[:, 0] - (top[:, 2] + top[:, 3]) / 2 + _DLR_TINY
    return -(true_logit - target_logit) / scale


def check_options(
    eps: float, norm: str, loss: str, steps: int, restarts: int, rho: float, momentum: float
) -> None:
    """Checks APGD's options before any work starts.

    Raises:
        ValueError: naming the first option APGD cannot run with.
    """
    check_positive_finite("eps", eps)
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    for name, value in (("steps", steps), ("restarts", restarts)):
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value}")
    if not 0 < rho < 1:
        raise ValueError(f"rho must be in (0, 1), got {rho}")
    if not 0 < momentum <= 1:
        raise ValueError(f"momentum must be in (0, 1], got {momentum}")


class _State(NamedTuple):
    k: Any  # scalar int32: iterations done
    x: Any  # [B, ...] x_k
    x_prev: Any  # [B, ...] x_{k-1}
    loss: Any  # [B] f(x_k)
    grad: Any  # [B, ...] grad f(x_k)
    eta: Any  # [B] step size
    x_max: Any  # [B, ...] best point
    loss_max: Any  # [B] f(x_max)
    grad_max: Any  # [B, ...] its gradient
    increases: Any  # [B] int32: steps that raised the loss since the last checkpoint
    last_check: Any  # scalar int32: iteration of the last checkpoint
    loss_max_at_check: Any  # [B] f_max at the last checkpoint
    halved_at_check: Any  # [B] bool: eta was halved at the last checkpoint
    found: Any  # [B] bool: some iterate was adversarial
    x_found: Any  # [B, ...] the last adversarial iterate


def _build_runner(
    model: Callable[..., Any],
    inputs: AttackInputs,
    batch_size: int,
    norm: str,
    loss_name: str,
    targeted: bool,
) -> Callable[..., Any]:
    image_shape, num_classes = inputs.x.shape[1:], inputs.num_classes
    clip_min, clip_max = inputs.clip_min, inputs.clip_max
    images = tf.TensorSpec([batch_size, *image_shape], tf.float32)
    labels = tf.TensorSpec([batch_size, num_classes], tf.float32)
    scalar = tf.TensorSpec([], tf.float32)
    signature = [
        images,
        images,
        labels,
        labels,
        scalar,
        tf.TensorSpec([], tf.int32),
        tf.TensorSpec([None], tf.bool),
        scalar,
        scalar,
    ]

    @tf.function(input_signature=signature, reduce_retracing=False)
    def run(x, x_init, onehot_true, onehot_goal, eps, steps, is_checkpoint, rho, momentum):
        def project(point):
            delta = projections.project_ball(point - x, eps, norm)
            return x + projections.clip_to_box(x, delta, clip_min, clip_max)

        def evaluate(point):
            with tf.GradientTape() as tape:
                tape.watch(point)
                logits = common.call_model(model, point)
                value = _loss(loss_name, targeted, logits, onehot_true, onehot_goal)
            hit = tf.equal(tf.argmax(logits, axis=-1), tf.argmax(onehot_goal, axis=-1))
            return value, tape.gradient(value, point), hit if targeted else ~hit

        def direction(grad):
            return tf.sign(grad) if norm == "linf" else projections.normalize_l2(grad)

        def step(s: _State) -> tuple[_State]:
            z = project(s.x + expand_to(s.eta, s.x) * direction(s.grad))
            weight = tf.where(s.k > 0, momentum, 1.0)
            x_new = project(s.x + weight * (z - s.x) + (1.0 - weight) * (s.x - s.x_prev))
            loss, grad, is_adv = evaluate(x_new)
            better = loss > s.loss_max
            x_max = tf.where(expand_to(better, x_new), x_new, s.x_max)
            loss_max = tf.where(better, loss, s.loss_max)
            grad_max = tf.where(expand_to(better, x_new), grad, s.grad_max)
            increases = s.increases + tf.cast(loss > s.loss, tf.int32)
            k = s.k + 1
            check = tf.gather(is_checkpoint, k)
            window = tf.cast(k - s.last_check, tf.float32)
            too_few = tf.cast(increases, tf.float32) < rho * window
            stalled = ~s.halved_at_check & (loss_max <= s.loss_max_at_check)
            halve = check & (too_few | stalled)
            back = expand_to(halve, x_new)
            return (
                _State(
                    k=k,
                    x=tf.where(back, x_max, x_new),
                    x_prev=s.x,
                    loss=tf.where(halve, loss_max, loss),
                    grad=tf.where(back, grad_max, grad),
                    eta=tf.where(halve, s.eta / 2.0, s.eta),
                    x_max=x_max,
                    loss_max=loss_max,
                    grad_max=grad_max,
                    increases=tf.where(check, 0, increases),
                    last_check=tf.where(check, k, s.last_check),
                    loss_max_at_check=tf.where(check, loss_max, s.loss_max_at_check),
                    halved_at_check=tf.where(check, halve, s.halved_at_check),
                    found=s.found | is_adv,
                    x_found=tf.where(expand_to(is_adv, x_new), x_new, s.x_found),
                ),
            )

        x0 = project(x_init)
        loss0, grad0, adv0 = evaluate(x0)
        start = _State(
            k=tf.constant(0, tf.int32),
            x=x0,
            x_prev=x0,
            loss=loss0,
            grad=grad0,
            eta=tf.fill([batch_size], 2.0 * eps),
            x_max=x0,
            loss_max=loss0,
            grad_max=grad0,
            increases=tf.zeros([batch_size], tf.int32),
            last_check=tf.constant(0, tf.int32),
            loss_max_at_check=loss0,
            # The paper's condition 2 compares with the step size at w_0, which is unchanged.
            halved_at_check=tf.zeros([batch_size], tf.bool),
            found=adv0,
            x_found=x0,
        )
        (final,) = tf.while_loop(lambda s: s.k < steps, step, (start,))
        return final.x_found, final.found

    return run


def _loss(
    name: str, targeted: bool, logits: tf.Tensor, onehot_true: tf.Tensor, onehot_goal: tf.Tensor
) -> tf.Tensor:
    """The per-example loss APGD maximises (`onehot_goal` is the target, or the true label)."""
    if name == "ce":
        ce = tf.nn.softmax_cross_entropy_with_logits(labels=onehot_goal, logits=logits)
        return -ce if targeted else ce
    if targeted:
        return dlr_targeted_loss(logits, onehot_true, onehot_goal)
    return dlr_loss(logits, onehot_true)
