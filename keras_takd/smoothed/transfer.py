"""Transfer (black-box) attacks between a CNI model, its smoothed version and a KD student.

Katz & Reches ("Knowledge Distillation via Smoothed Models and Adversarial Robustness", 2022,
Table 3 and Figs. 4-6) craft L-inf PGD-10 examples on a source model and measure a target
model's accuracy on them, for every (source, target) pair among the CNI network of Nemcovsky
et al. (arXiv:1911.07198; one noisy forward pass), the smoothed CNI (M noisy passes
aggregated, `keras_takd.smoothed.smoothing.SmoothedClassifier`) and the distilled student, at
eps in {2, 8, 30}/255, and follow the accuracy along the PGD iterations k = 1..10.

One PGD-10 run per (source, eps) gives all ten iterates (PGD-k is the k-th iterate of the
same run, with the same step size 2.5 * eps / 10, Madry et al.'s rule, which is 2/255 at
eps = 8/255); each iterate is classified by every target. Gradients of the smoothed source
come from `SmoothedClassifier.__call__` (log of the mean softmax of `attack_samples` passes).

`transfer_matrix` returns a tidy table with exactly the columns of `COLUMNS`, one row per
(source, target, eps, k):

    source, target           model names
    eps                      L-inf radius in [0, 1] pixel units
    eps_255                  the same radius in 1/255 units (2, 8, 30)
    k                        PGD iterations, 1..steps
    clean_accuracy           the target's accuracy on the clean images
    adversarial_accuracy     the target's accuracy on the source's PGD-k images
    num_images               number of images
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf

from keras_takd.attacks import common, pgd_perturb
from keras_takd.attacks.optimizers import cached_compiled
from keras_takd.attacks.projected_gradient_descent import random_start_points
from keras_takd.core.metrics import predict_logits
from keras_takd.smoothed.smoothing import SOFT_PREDICTION, SmoothedClassifier

COLUMNS = (
    "source",
    "target",
    "eps",
    "eps_255",
    "k",
    "clean_accuracy",
    "adversarial_accuracy",
    "num_images",
)
PAPER_EPS_255 = (2.0, 8.0, 30.0)
STEP_SIZE_FACTOR = 2.5


@dataclasses.dataclass(frozen=True)
class TransferModel:
    """A model of the transfer matrix.

    Attributes:
        name: its name in the table ("cni", "smoothed_cni", "kd_student", ...).
        logits: differentiable map from float32 images to logits, attacked as a source.
        predict: map from a numpy batch of images to int labels [N], evaluated as a target.
    """

    name: str
    logits: Callable[[tf.Tensor], tf.Tensor]
    predict: Callable[[np.ndarray], np.ndarray]


def keras_transfer_model(name: str, model, batch_size: int = 256) -> TransferModel:
    """A Keras logits model (deterministic, or noisy with fresh noise per call) as source/target."""

    def predict(x: np.ndarray) -> np.ndarray:
        return np.argmax(predict_logits(model, x, batch_size), axis=-1)

    return TransferModel(name, model, predict)


def smoothed_transfer_model(
    name: str,
    smoothed: SmoothedClassifier,
    attack_samples: int = 8,
    aggregation: str = SOFT_PREDICTION,
) -> TransferModel:
    """A smoothed classifier: attacked through `attack_samples` passes, evaluated with M.

    Args:
        name: the table name.
        smoothed: the classifier; its `num_samples` M is used for evaluation.
        attack_samples: passes averaged in the differentiable logits a source is attacked
            through (memory under the gradient tape grows with it).
        aggregation: "prediction" or "soft_prediction" smoothing for evaluation.

    Returns:
        A `TransferModel`.
    """
    attacked = SmoothedClassifier(
        smoothed.model,
        num_samples=attack_samples,
        chunk_size=smoothed.chunk_size,
        batch_size=smoothed.batch_size,
    )
    return TransferModel(name, attacked, lambda x: smoothed.predict(x, aggregation=aggregation))


def _compiled_step(model, image_shape: tuple[int, ...], batch_size: int):
    images = tf.TensorSpec([batch_size, *image_shape], tf.float32)
    signature = [
        images,
        images,
        tf.TensorSpec([batch_size], tf.int64),
        tf.TensorSpec([], tf.float32),
        tf.TensorSpec([], tf.float32),
    ]

    @tf.function(input_signature=signature)
    def step(x, x_current, labels, eps, step_size):
        return pgd_perturb(model, x, labels, x_current, eps, step_size, 1, norm="linf")

    return step


def pgd_iterates(
    model: Callable[[tf.Tensor], tf.Tensor],
    x: np.ndarray,
    y: np.ndarray,
    eps: float,
    steps: int = 10,
    step_size: float | None = None,
    batch_size: int = 128,
    seed: int = 0,
) -> np.ndarray:
    """All iterates of one untargeted L-inf PGD run with a random start.

    Args:
        model: differentiable logits model (the source).
        x: images [N, H, W, C] in [0, 1].
        y: int labels [N].
        eps: L-inf radius > 0.
        steps: PGD iterations (10).
        step_size: step size; None for 2.5 * eps / steps.
        batch_size: images per compiled step.
        seed: seed of the random start.

    Returns:
        float32 [steps, N, H, W, C]; entry k - 1 is the PGD-k image.
    """
    step_size = STEP_SIZE_FACTOR * eps / steps if step_size is None else step_size
    batch_size = min(batch_size, len(x))
    key = ("transfer_pgd_step", tuple(x.shape[1:]), batch_size)
    step = cached_compiled(
        model, key, lambda: _compiled_step(model, tuple(x.shape[1:]), batch_size)
    )
    current = random_start_points(x, eps, "linf", 0.0, 1.0, seed)
    iterates = np.empty((steps, *x.shape), np.float32)
    for k in range(steps):
        for part in common.batch_slices(len(x), batch_size):
            padded = [common.pad_to_batch(a[part], batch_size)[0] for a in (x, current, y)]
            out = step(
                tf.constant(padded[0]),
                tf.constant(padded[1]),
                tf.constant(padded[2], tf.int64),
                tf.constant(eps, tf.float32),
                tf.constant(step_size, tf.float32),
            )
            iterates[k, part] = out.numpy()[: part.stop - part.start]
        current = iterates[k]
    return iterates


def _check_inputs(models, x, y, eps_values, steps) -> tuple[np.ndarray, np.ndarray]:
    names = [m.name for m in models]
    if not names or len(set(names)) != len(names):
        raise ValueError(f"models must have distinct names, got {names}")
    x = np.asarray(x, np.float32)
    y = np.asarray(y).astype(np.int64).reshape(-1)
    if x.ndim != 4 or len(x) == 0:
        raise ValueError(f"x must be a non-empty batch of images [N, H, W, C], got {x.shape}")
    if len(y) != len(x):
        raise ValueError(f"y must hold one label per image: {len(y)} labels, {len(x)} images")
    if x.min() < 0 or x.max() > 1:
        raise ValueError(f"x must lie in [0, 1], got [{x.min()}, {x.max()}]")
    if not eps_values or not all(0 < e <= 1 for e in eps_values):
        raise ValueError(f"eps_values must be radii in (0, 1], got {list(eps_values)}")
    if isinstance(steps, bool) or int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    return x, y


def transfer_matrix(
    models: Sequence[TransferModel],
    x: np.ndarray,
    y: np.ndarray,
    eps_values: Sequence[float] = tuple(e / 255 for e in PAPER_EPS_255),
    steps: int = 10,
    batch_size: int = 128,
    seed: int = 0,
    on_source: Callable[[str, float], Any] | None = None,
) -> pd.DataFrame:
    """Accuracy of every target on PGD examples of every source, along the PGD iterations.

    Args:
        models: the models, each both a source and a target.
        x: test images [N, H, W, C] in [0, 1].
        y: int labels [N].
        eps_values: L-inf radii (default 2/255, 8/255, 30/255).
        steps: PGD iterations (10); rows for k = 1..steps.
        batch_size: images per compiled PGD step.
        seed: seed of the random starts (the same start for every source at one eps).
        on_source: called as on_source(source_name, eps) after each attack, for progress.

    Returns:
        A DataFrame with exactly `COLUMNS`, len(models)^2 * len(eps_values) * steps rows,
        sorted by source, target, eps and k.

    Raises:
        ValueError: duplicate model names, bad images, labels, radii or steps.
    """
    x, y = _check_inputs(models, x, y, eps_values, steps)
    clean = {m.name: float(np.mean(m.predict(x) == y)) for m in models}
    rows = []
    for source in models:
        for eps in eps_values:
            iterates = pgd_iterates(source.logits, x, y, eps, steps, None, batch_size, seed)
            for target in models:
                for k in range(1, steps + 1):
                    accuracy = float(np.mean(target.predict(iterates[k - 1]) == y))
                    rows.append(
                        {
                            "source": source.name,
                            "target": target.name,
                            "eps": float(eps),
                            "eps_255": round(float(eps) * 255, 6),
                            "k": k,
                            "clean_accuracy": clean[target.name],
                            "adversarial_accuracy": accuracy,
                            "num_images": len(x),
                        }
                    )
            if on_source is not None:
                on_source(source.name, eps)
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    return frame.sort_values(["source", "target", "eps", "k"], kind="stable").reset_index(drop=True)


def transfer_table(frame: pd.DataFrame, eps_255: float = 8.0, k: int | None = None) -> pd.DataFrame:
    """The paper's Table 3 view: clean and PGD-k accuracy per (source, target) at one eps.

    Args:
        frame: a `transfer_matrix` table.
        eps_255: the radius in 1/255 units (8 in Table 3).
        k: PGD iterations; None for the largest in the table (10).

    Returns:
        Columns source, target, clean_accuracy, adversarial_accuracy.

    Raises:
        ValueError: if the table has no row at that eps and k.
    """
    k = int(frame["k"].max()) if k is None else k
    rows = frame[np.isclose(frame["eps_255"], eps_255) & (frame["k"] == k)]
    if rows.empty:
        raise ValueError(f"no transfer rows at eps_255={eps_255}, k={k}")
    columns = ["source", "target", "clean_accuracy", "adversarial_accuracy"]
    return rows[columns].reset_index(drop=True)
