"""The one preparation every attack in `keras_takd.attacks` makes before it starts.

`prepare_inputs` checks an attack's images, labels, targets, box and batch size the way
Carlini & Wagner's original code would (arXiv:1608.04644; most notably that the model returns
logits, not probabilities), but with errors that name the bad value, and runs the model once
on the clean images. The `AttackInputs` it returns carries what every attack needs next: the
checked arrays, the clean logits and so the class count, the one-hot labels the losses use,
the batching rule (`common.batch_plan`) and the key under which the attack's compiled function
is cached (`optimizers.cached_compiled`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np

from keras_takd.attacks import common
from keras_takd.attacks.optimizers import cached_compiled
from keras_takd.core.metrics import predict_logits

# Rows in [0, 1] summing to 1 within this tolerance look like probabilities, not logits.
PROBABILITY_TOLERANCE = 1e-3


@dataclasses.dataclass(frozen=True, eq=False)
class AttackInputs:
    """An attack's checked inputs and what follows from them.

    Attributes:
        x: float32 [N, H, W, C] images inside [clip_min, clip_max].
        y: int64 [N] true labels.
        target: int64 [N] target labels of a targeted attack, else None.
        targeted: whether the attack is targeted.
        logits: float32 [N, K] the model's (finite) outputs on `x`.
        clip_min: the lower edge of the box.
        clip_max: the upper edge of the box.
        batch_size: the caller's batch size: images per forward pass, and the most images per
            compiled batch.
    """

    x: np.ndarray
    y: np.ndarray
    target: np.ndarray | None
    targeted: bool
    logits: np.ndarray
    clip_min: float
    clip_max: float
    batch_size: int

    @property
    def num_classes(self) -> int:
        """K, the width of the model's output."""
        return int(self.logits.shape[1])

    @property
    def labels(self) -> np.ndarray:
        """int64 [N]: the target labels of a targeted attack, the true labels otherwise."""
        return self.target if self.targeted else self.y

    @functools.cached_property
    def onehot(self) -> np.ndarray:
        """float32 [N, K] one-hot rows of `labels`, the labels the attack losses use."""
        return self.one_hot(self.labels)

    def one_hot(self, labels: np.ndarray) -> np.ndarray:
        """float32 [len(labels), K] one-hot rows of any int labels."""
        return np.eye(self.num_classes, dtype=np.float32)[labels]

    def batches(self, *, fill_evenly: bool = False) -> common.BatchPlan:
        """`common.batch_plan` for these images and the caller's batch size."""
        return common.batch_plan(len(self.x), self.batch_size, fill_evenly=fill_evenly)

    def compiled(
        self,
        model: Callable[..., Any],
        name: str,
        settings: tuple[Hashable, ...],
        build: Callable[[], Callable[..., Any]],
    ) -> Callable[..., Any]:
        """The attack's compiled function for these inputs, built once per model and key.

        The key is `(name, image shape, num_classes, clip_min, clip_max, *settings)`: what
        every compiled attack depends on, then what the attack's own function depends on.

        Args:
            model: the attacked model.
            name: the attack's (or its compiled function's) name.
            settings: everything else the compiled function depends on (hashable).
            build: makes the compiled function.

        Returns:
            The cached or newly built function (see `optimizers.cached_compiled`).
        """
        key = (name, self.x.shape[1:], self.num_classes, self.clip_min, self.clip_max)
        return cached_compiled(model, key + tuple(settings), build)

    def result(
        self,
        model: Callable[..., Any],
        x_adv: np.ndarray,
        *,
        const: np.ndarray | float,
        batch_size: int,
        found: np.ndarray | None,
        restore_failed: bool = True,
    ) -> common.AttackResult:
        """`common.finalize_result` of candidate images for these inputs.

        Args:
            model: the attacked model.
            x_adv: candidate adversarial images [N, H, W, C].
            const: the attack's constant per example ([N] or a scalar).
            batch_size: images per forward pass of the check.
            found: bool [N], whether the attack's search met its own success test.
            restore_failed: give failed examples their original image back.

        Returns:
            The verified `AttackResult`.
        """
        return common.finalize_result(
            model,
            self.x,
            x_adv,
            self.y,
            targeted=self.targeted,
            target=self.target,
            const=const,
            batch_size=batch_size,
            restore_failed=restore_failed,
            found=found,
        )


def prepare_inputs(
    model: Callable[..., Any],
    x: Any,
    y: Any,
    *,
    targeted: bool = False,
    target: Any = None,
    clip_min: float = 0.0,
    clip_max: float = 1.0,
    batch_size: int = common.DEFAULT_BATCH_SIZE,
    allow_probabilities: bool = False,
) -> AttackInputs:
    """Checks an attack's inputs the way the original code would, but with clear errors.

    Runs the model once on `x` to learn the number of classes, to refuse a model whose output is
    NaN or infinite on any clean image (an attack would otherwise read NaN margins as success),
    and to make the original's pre-softmax check on the first batch: an output whose rows all
    lie in [0, 1] and sum to 1 (within 1e-3) is taken for probabilities, on which the margin
    loss is meaningless.

    Args:
        model: a Keras model or callable mapping float32 images to logits.
        x: images [N, H, W, C] inside [clip_min, clip_max].
        y: true labels [N].
        targeted: whether the attack is targeted.
        target: target labels [N]; required when `targeted`, each different from `y`.
        clip_min: the lower edge of the box.
        clip_max: the upper edge of the box.
        batch_size: images per batch, >= 1.
        allow_probabilities: attack a model that outputs probabilities on purpose (e.g.
            softmax(logits / T), to show the gradient masking of defensive distillation).

    Returns:
        The `AttackInputs`: `x` as float32, `y` and `target` as int64 (target None when not
        targeted), and the model's logits on `x`.

    Raises:
        ValueError: on a wrong shape, an empty or non-finite `x`, `x` outside the box,
            `clip_min >= clip_max`, `batch_size < 1`, a missing, superfluous or equal-to-`y`
            target, labels out of range, a model whose output on `x` is not finite, or one
            whose outputs look like probabilities.
    """
    if not clip_min < clip_max:
        raise ValueError(
            f"clip_min must be < clip_max, got clip_min={clip_min}, clip_max={clip_max}"
        )
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size}")
    x = _check_images(x, clip_min, clip_max)
    y = _check_labels("y", y, x.shape[0])
    target = _check_target(targeted, target, y)
    logits = _check_logits(predict_logits(model, x, batch_size), len(x))
    for name, labels in (("y", y), ("target", target)):
        if labels is not None and (labels.min() < 0 or labels.max() >= logits.shape[1]):
            raise ValueError(
                f"{name} must be in [0, {logits.shape[1] - 1}], "
                f"got [{labels.min()}, {labels.max()}]"
            )
    if not allow_probabilities and _looks_like_probabilities(logits[:batch_size]):
        raise ValueError(
            "the model's outputs look like probabilities (rows in [0, 1] summing to 1): "
            "attacks need logits; pass allow_probabilities=True to attack them on purpose"
        )
    return AttackInputs(
        x=x,
        y=y,
        target=target,
        targeted=bool(targeted),
        logits=logits,
        clip_min=clip_min,
        clip_max=clip_max,
        batch_size=int(batch_size),
    )


def check_positive_finite(name: str, value: Any) -> None:
    """Checks an attack option that must be a finite number > 0 (a radius, a step size).

    An infinite radius would overflow the projection and a NaN one would silently disable it,
    so both are refused like a negative one.

    Args:
        name: the option's name, for the message (e.g. "eps").
        value: its value.

    Raises:
        ValueError: `value` is not a finite number > 0.
    """
    if not (value > 0 and np.isfinite(value)):
        raise ValueError(f"{name} must be > 0 and finite, got {value}")


def _check_images(x: Any, clip_min: float, clip_max: float) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 4:
        raise ValueError(f"x must be images of shape [N, H, W, C], got shape {x.shape}")
    if x.shape[0] == 0:
        raise ValueError("x holds no images")
    finite = np.isfinite(x)
    if not finite.all():
        first = int(np.flatnonzero(~finite.reshape(len(x), -1).all(axis=1))[0])
        raise ValueError(
            f"x holds {int((~finite).sum())} NaN or infinite values (first in image {first}); "
            "expected finite pixel values"
        )
    if x.min() < clip_min or x.max() > clip_max:
        raise ValueError(
            f"x must lie inside [clip_min, clip_max] = [{clip_min}, {clip_max}], "
            f"got values in [{x.min()}, {x.max()}]"
        )
    return x


def _check_labels(name: str, labels: Any, n: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != n:
        raise ValueError(f"{name} must be integer labels of shape [{n}], got shape {labels.shape}")
    if labels.size and not np.all(np.equal(np.mod(labels, 1), 0)):
        raise ValueError(f"{name} must hold integer class labels, got {labels[:5]!r}...")
    return labels.astype(np.int64)


def _check_target(targeted: bool, target: Any, y: np.ndarray) -> np.ndarray | None:
    if not targeted:
        if target is not None:
            raise ValueError("target labels were given but targeted=False")
        return None
    if target is None:
        raise ValueError("targeted=True needs target labels [N], got target=None")
    target = _check_labels("target", target, len(y))
    if np.any(target == y):
        raise ValueError(
            f"target equals the true label y for examples {np.flatnonzero(target == y)[:10]}"
        )
    return target


def _check_logits(outputs: np.ndarray, n: int) -> np.ndarray:
    if outputs.ndim != 2:
        raise ValueError(f"the model must return [N, num_classes] logits, got {outputs.shape}")
    bad = ~np.all(np.isfinite(outputs), axis=1)
    if bad.any():
        raise ValueError(
            f"the model's output holds NaN or infinite values on {bad.sum()} of {n} clean "
            f"images (first: image {np.flatnonzero(bad)[0]}); expected finite logits"
        )
    return outputs


def _looks_like_probabilities(outputs: np.ndarray) -> bool:
    in_unit_interval = np.all(outputs >= -PROBABILITY_TOLERANCE) and np.all(
        outputs <= 1.0 + PROBABILITY_TOLERANCE
    )
    sums_to_one = np.all(np.abs(outputs.sum(axis=-1) - 1.0) <= PROBABILITY_TOLERANCE)
    return bool(in_unit_interval and sums_to_one)
