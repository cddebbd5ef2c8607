"""Defensive distillation: training at temperature T and distilling through a chain.

Implements the training of Papernot et al. 2016 (arXiv:1511.04508), as coded in Carlini's
`train_models.py` (arXiv:1608.04644) and reused by Mandal & Guo for teacher -> assistant ->
student chains:

- the teacher is trained on hard labels with loss CE(y, softmax(z / T));
- each later model is trained at the same T on the soft labels softmax(z_teacher / T) of the
  model before it, the "new training set {(X, F(X))}" of Papernot et al.: the soft labels are
  computed once per stage over the training set and cached (or, optionally, the teacher runs
  live on every batch);
- optionally Hinton et al.'s mix (arXiv:1503.02531) with distil weight w:
  (1 - w) * CE(y, softmax(z_s)) + w * [T^2] * CE(softmax(z_t / T), softmax(z_s / T)).
  Defensive distillation is w = 1 without the T^2 factor, the default.

`keras.distillation.LogitsDistillation` is not reused: it needs the teacher's logits on every
batch and always scales the KL term by T^2, whereas the paper's recipe trains on cached
probabilities without that factor.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from keras_takd.core.layers import check_temperature
from keras_takd.core.models import with_temperature


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one model's training (paper IV-B; Carlini's `train`).

    Attributes:
        epochs: passes over the training set (50 in the paper).
        batch_size: images per step (128).
        learning_rate: SGD learning rate (0.01).
        momentum: Nesterov momentum (0.9).
        lr_decay: Keras-2 style decay per step, lr / (1 + decay * step) (1e-6).
        warm_start: start every stage from the weights of one epoch at T = 1 on hard labels,
            as Carlini's `train_distillation` and the authors' code do.
        soft_targets: "cached" (teacher run once per stage over the training set) or "live"
            (teacher run on every batch).
        distil_weight: w in the Hinton mix; 1.0 is pure defensive distillation.
        scale_soft_loss: multiply the soft term by T^2 (Hinton); off for the paper.
        seed: seed for Python, NumPy and TensorFlow.
    """

    epochs: int = 50
    batch_size: int = 128
    learning_rate: float = 0.01
    momentum: float = 0.9
    lr_decay: float = 1e-6
    warm_start: bool = True
    soft_targets: str = "cached"
    distil_weight: float = 1.0
    scale_soft_loss: bool = False
    seed: int = 0

    def __post_init__(self):
        checks = (
            ("epochs", self.epochs >= 1, ">= 1"),
            ("batch_size", self.batch_size >= 1, ">= 1"),
            ("learning_rate", self.learning_rate > 0, "> 0"),
            ("momentum", 0 <= self.momentum < 1, "in [0, 1)"),
            ("lr_decay", self.lr_decay >= 0, ">= 0"),
            ("soft_targets", self.soft_targets in ("cached", "live"), "'cached' or 'live'"),
            ("distil_weight", 0 <= self.distil_weight <= 1, "in [0, 1]"),
        )
        for name, ok, expected in checks:
            if not ok:
                raise ValueError(f"{name} must be {expected}, got {getattr(self, name)!r}")


def make_optimizer(config: TrainConfig) -> keras.optimizers.Optimizer:
    """SGD with Nesterov momentum and Keras-2 style decay lr / (1 + decay * step).

    Keras 3 dropped the `decay=` argument the paper's code used; `InverseTimeDecay` with
    decay_steps=1 is the same schedule.
    """
    schedule = keras.optimizers.schedules.InverseTimeDecay(
        config.learning_rate, decay_steps=1, decay_rate=config.lr_decay
    )
    return keras.optimizers.SGD(schedule, momentum=config.momentum, nesterov=True)


def soft_labels(
    teacher: keras.Model, x: np.ndarray, temperature: float, batch_size: int = 1024
) -> np.ndarray:
    """The teacher's soft labels softmax(z / T) for every image, as float32 [N, classes]."""
    temperature = check_temperature(temperature)
    logits = teacher.predict(x, batch_size=batch_size, verbose=0)
    return keras.ops.convert_to_numpy(keras.ops.softmax(logits / temperature, axis=-1))


def distillation_loss(
    labels,
    logits,
    soft_targets,
    temperature: float,
    distil_weight: float = 1.0,
    scale_soft_loss: bool = False,
):
    """The Hinton distillation loss, per example: the one loss of every distillation here.

    L = (1 - w) * CE(y, softmax(z_s)) + w * k * CE(p_t, softmax(z_s / T)), k = T^2 with
    `scale_soft_loss` (Hinton et al. 2015, arXiv:1503.02531, and Katz & Reches), else 1
    (Papernot et al.'s defensive distillation: w = 1, k = 1). CE(p, q) = -sum_c p[c] log q[c].

    Args:
        labels: integer labels [N] (or [N, 1]), or one-hot / probability labels [N, C].
        logits: the student's logits z_s [N, C].
        soft_targets: the teacher's probabilities p_t [N, C] (e.g. softmax(z_t / T), or a
            smoothed teacher's soft targets).
        temperature: T > 0.
        distil_weight: w in [0, 1]; 0 is plain cross-entropy, 1 pure distillation.
        scale_soft_loss: multiply the soft term by T^2.

    Returns:
        (total, soft, hard): float32 tensors [N] of per-example losses. With w = 1 the hard
        term is reported but does not enter `total`.

    Raises:
        ValueError: a temperature that is not > 0, a weight outside [0, 1], or logits and soft
            targets of different shapes.
    """
    temperature = check_temperature(temperature)
    if not 0.0 <= distil_weight <= 1.0:
        raise ValueError(f"distil_weight must be in [0, 1], got {distil_weight!r}")
    logits = tf.convert_to_tensor(logits, tf.float32)
    soft_targets = tf.convert_to_tensor(soft_targets, tf.float32)
    if tuple(logits.shape) != tuple(soft_targets.shape):
        raise ValueError(
            f"logits {tuple(logits.shape)} and soft targets {tuple(soft_targets.shape)} must "
            "have the same shape"
        )
    labels = tf.convert_to_tensor(labels)
    if labels.shape.rank == logits.shape.rank and labels.shape[-1] != 1:
        hard = keras.losses.categorical_crossentropy(
            tf.cast(labels, tf.float32), logits, from_logits=True
        )
    else:
        hard = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
    soft = -tf.reduce_sum(soft_targets * tf.nn.log_softmax(logits / temperature, axis=-1), -1)
    total = distil_weight * (temperature**2 if scale_soft_loss else 1.0) * soft
    if distil_weight < 1:
        total += (1.0 - distil_weight) * hard
    return total, soft, hard


@keras.saving.register_keras_serializable(package="keras_takd")
class DistillerModel(keras.Model):
    """Trains a student on a frozen teacher's soft labels at temperature T.

    Batches are `(images, labels, soft_targets)` with cached soft labels, or
    `(images, labels)` when the teacher runs live. The loss is

        (1 - w) * CE(labels, softmax(z_s)) + w * k * CE(soft_targets, softmax(z_s / T)),

    with k = T^2 if `scale_soft_loss` else 1. Calling the model returns the student's logits.

    Args:
        student: the model to train; returns logits.
        teacher: the frozen model whose soft labels are learnt; returns logits. Needed for
            live soft targets; may be None when every batch carries cached soft targets.
        temperature: distillation temperature T > 0.
        distil_weight: w in [0, 1]; 1.0 (default) is Papernot's defensive distillation.
        scale_soft_loss: multiply the soft term by T^2 as Hinton et al. do.
        **kwargs: `keras.Model` arguments.
    """

    def __init__(
        self,
        student: keras.Model,
        teacher: keras.Model | None = None,
        temperature: float = 1.0,
        distil_weight: float = 1.0,
        scale_soft_loss: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not 0 <= distil_weight <= 1:
            raise ValueError(f"distil_weight must be in [0, 1], got {distil_weight!r}")
        self.student = student
        self.teacher = teacher
        if teacher is not None:
            teacher.trainable = False
        self.temperature = check_temperature(temperature)
        self.distil_weight = float(distil_weight)
        self.scale_soft_loss = bool(scale_soft_loss)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.soft_loss_tracker = keras.metrics.Mean(name="soft_loss")
        self.hard_loss_tracker = keras.metrics.Mean(name="hard_loss")
        self.accuracy_tracker = keras.metrics.SparseCategoricalAccuracy(name="accuracy")

    @property
    def metrics(self):
        return [
            self.loss_tracker,
            self.soft_loss_tracker,
            self.hard_loss_tracker,
            self.accuracy_tracker,
        ]

    def call(self, images, training=False):
        return self.student(images, training=training)

    def _unpack(self, data):
        if len(data) == 3:
            return data
        images, labels = data
        if self.teacher is None:
            raise ValueError("batches without soft targets need a teacher to run live")
        teacher_logits = self.teacher(images, training=False)
        return images, labels, tf.nn.softmax(teacher_logits / self.temperature, axis=-1)

    def _distillation_losses(self, labels, soft_targets, logits):
        """(total, soft, hard), each the batch mean of `distillation_loss`."""
        losses = distillation_loss(
            labels,
            logits,
            soft_targets,
            self.temperature,
            self.distil_weight,
            self.scale_soft_loss,
        )
        return tuple(tf.reduce_mean(loss) for loss in losses)

    def _update_metrics(self, labels, logits, losses):
        trackers = (self.loss_tracker, self.soft_loss_tracker, self.hard_loss_tracker)
        for tracker, value in zip(trackers, losses, strict=True):
            tracker.update_state(value)
        self.accuracy_tracker.update_state(labels, logits)
        return {m.name: m.result() for m in self.metrics}

    def train_step(self, data):
        images, labels, soft_targets = self._unpack(data)
        # Gradients are summed over replicas under tf.distribute: scale each replica's mean.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            logits = self.student(images, training=True)
            losses = self._distillation_losses(labels, soft_targets, logits)
            scaled_loss = losses[0] / replicas
        variables = self.student.trainable_variables
        self.optimizer.apply(tape.gradient(scaled_loss, variables), variables)
        return self._update_metrics(labels, logits, losses)

    def test_step(self, data):
        images, labels, soft_targets = self._unpack(data)
        logits = self.student(images, training=False)
        losses = self._distillation_losses(labels, soft_targets, logits)
        return self._update_metrics(labels, logits, losses)

    def get_config(self):
        return {
            **super().get_config(),
            "student": keras.saving.serialize_keras_object(self.student),
            "teacher": (
                None if self.teacher is None else keras.saving.serialize_keras_object(self.teacher)
            ),
            "temperature": self.temperature,
            "distil_weight": self.distil_weight,
            "scale_soft_loss": self.scale_soft_loss,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["student"] = keras.saving.deserialize_keras_object(config["student"])
        if config.get("teacher") is not None:
            config["teacher"] = keras.saving.deserialize_keras_object(config["teacher"])
        return cls(**config)


def make_batches(arrays: tuple, batch_size: int, shuffle: bool, seed: int) -> tf.data.Dataset:
    """A tf.data pipeline over `arrays` (a tuple of equal-length arrays), batched and prefetched.

    With `shuffle`, the order is reshuffled every epoch from `seed`.
    """
    ds = tf.data.Dataset.from_tensor_slices(tuple(arrays))
    if shuffle:
        ds = ds.shuffle(len(arrays[0]), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def train_on_labels(
    model: keras.Model,
    x,
    y,
    temperature: float,
    config: TrainConfig,
    epochs: int | None = None,
    validation_data=None,
    callbacks=(),
    verbose="auto",
) -> keras.callbacks.History:
    """Trains a logits model on hard labels with loss CE(y, softmax(z / T)) (a teacher).

    The model is wrapped by `keras_takd.core.models.with_temperature` (weights shared).

    Args:
        model: the logits model to train in place.
        x, y: training images [N, H, W, C] in [0, 1] and int labels [N].
        temperature: training temperature T > 0.
        config: the hyperparameters; `epochs` overrides `config.epochs`.
        epochs: optional override of `config.epochs` (the 1-epoch warm start uses it).
        validation_data: optional (x_val, y_val).
        callbacks: Keras callbacks (e.g. BackupAndRestore).
        verbose: Keras verbosity.

    Returns:
        The Keras History.
    """
    tempered = with_temperature(model, temperature)
    tempered.compile(
        optimizer=make_optimizer(config),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    val = None if validation_data is None else make_batches(validation_data, 1024, False, 0)
    return tempered.fit(
        make_batches((x, y), config.batch_size, True, config.seed),
        epochs=epochs or config.epochs,
        validation_data=val,
        callbacks=list(callbacks),
        verbose=verbose,
        shuffle=False,
    )


def distil(
    student: keras.Model,
    teacher: keras.Model,
    x,
    y,
    temperature: float,
    config: TrainConfig,
    validation_data=None,
    callbacks=(),
    verbose="auto",
) -> keras.callbacks.History:
    """Trains `student` in place on `teacher`'s soft labels at temperature T.

    Args:
        student: the logits model to train.
        teacher: the frozen logits model to learn from.
        x, y: training images and hard labels (the labels feed the Hinton term and the
            accuracy metric).
        temperature: distillation temperature T > 0.
        config: hyperparameters (soft_targets, distil_weight, scale_soft_loss, ...).
        validation_data: optional (x_val, y_val).
        callbacks: Keras callbacks.
        verbose: Keras verbosity.

    Returns:
        The Keras History.
    """
    distiller = DistillerModel(
        student, teacher, temperature, config.distil_weight, config.scale_soft_loss
    )
    distiller.compile(optimizer=make_optimizer(config))
    distiller(x[:1])  # builds it: BackupAndRestore needs a built model to restore into

    def with_targets(xs, ys):
        if config.soft_targets == "live":
            return (xs, ys)
        return (xs, ys, soft_labels(teacher, xs, temperature))

    val = None
    if validation_data is not None:
        val = make_batches(with_targets(*validation_data), 1024, False, 0)
    return distiller.fit(
        make_batches(with_targets(x, y), config.batch_size, True, config.seed),
        epochs=config.epochs,
        validation_data=val,
        callbacks=list(callbacks),
        verbose=verbose,
        shuffle=False,
    )
