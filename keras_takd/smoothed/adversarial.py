"""PGD adversarial training of noise-injection teachers and adversarial distillation.

Two training loops of the smoothed-KD study of Katz & Reches ("Knowledge Distillation via
Smoothed Models and Adversarial Robustness", 2022), whose teacher is the adversarially trained
colored-noise-injection (CNI) network of Nemcovsky et al. 2020 (arXiv:1911.07198):

* `PGDTrainingModel`: PGD adversarial training (Madry et al., arXiv:1706.06083) of any logits
  model, e.g. a `cni_model`: every batch is attacked with L-inf PGD-k against the model being
  trained, and the loss is (1 - a) * CE(y, z(x)) + a * CE(y, z(x_adv)). a = 0.5 is the mix of
  PNI / CNI (Rakin et al. 2019, arXiv:1811.09310, which Nemcovsky et al. follow); a = 1 is
  Madry's adversarial-only objective. The gradient reaches the mean weights and the learned
  noise parameters alike.
* `AdversarialDistillerModel`: adversarial distillation. Each batch trains the student on the
  clean images and on PGD-k perturbations of them crafted against the student itself:

      L = (1 - p) * L_w(x, y, p_t) + p * L_w(x_adv, y, p_t),
      L_w(x, y, p_t) = (1 - w) * CE(y, z_s(x)) + w * k * CE(p_t, softmax(z_s(x) / T)),

  with w = `distil_weight` (the Hinton mix of `DistillerModel`, k = T^2 if `scale_soft_loss`)
  and p = `perturb_distil_weight`. The paper's wording ("we controlled the weight for each
  ... with the distil weight and the perturb distil weight", best 0.75 / 0.25) does not fix
  the formula; this reading keeps `distil_weight` the teacher-vs-label weight of Table 1 and
  makes `perturb_distil_weight` the share of the perturbed term, so p = 0 is exactly
  `DistillerModel`. The teacher target of a perturbed image is the smoothed teacher's cached
  soft target of its CLEAN image (as ARD, Goldblum et al. 2020, arXiv:1905.09747, does): the
  student learns to keep the teacher's clean answer inside the eps-ball, and the M-pass
  smoothed teacher never runs inside the training loop. PGD maximises the student's
  cross-entropy with the true label (Madry), with a random start in the ball.

Both loops call `keras_takd.attacks.pgd_perturb`, the attacks package's PGD loop in plain
TensorFlow ops, inside their compiled `train_step`; only the random start is drawn here, in
graph, from a Keras `SeedGenerator` (the package's `random_start_points` is NumPy).

`make_adam_optimizer` is the paper's optimiser: Adam (beta_1 = 0.9, the paper's "momentum"),
lr 1e-4, weight decay 1e-4, and a multi-step ("MultiStepLR") schedule.
"""

from __future__ import annotations

import dataclasses
import pathlib

import keras
import numpy as np
import tensorflow as tf

from keras_takd.attacks import pgd_perturb
from keras_takd.attacks.preparation import check_positive_finite
from keras_takd.core import files
from keras_takd.core.distillation import DistillerModel, make_batches

DEFAULT_EPS = 8.0 / 255.0
DEFAULT_STEP_SIZE = 2.0 / 255.0
DEFAULT_STEPS = 10


def _check_pgd(eps: float, step_size: float, steps: int) -> tuple[float, float, int]:
    check_positive_finite("eps", float(eps))
    check_positive_finite("step_size", float(step_size))
    if isinstance(steps, bool) or int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    return float(eps), float(step_size), int(steps)


def _check_weight(value: float, name: str) -> float:
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    return float(value)


def linf_pgd(
    model,
    images: tf.Tensor,
    labels: tf.Tensor,
    eps: float,
    step_size: float,
    steps: int,
    seed_generator: keras.random.SeedGenerator | None = None,
) -> tf.Tensor:
    """L-inf PGD with a uniform random start, in TensorFlow ops (for a `train_step`).

    Args:
        model: maps float32 images in [0, 1] to logits (run with `training=False`).
        images: clean images [B, H, W, C] in [0, 1].
        labels: int labels [B]; PGD ascends their cross-entropy.
        eps: L-inf radius.
        step_size: size of each signed-gradient step.
        steps: number of steps.
        seed_generator: source of the random start; None starts at `images`.

    Returns:
        The perturbed images [B, H, W, C], without a gradient path to `images`.
    """
    images = tf.convert_to_tensor(images, tf.float32)
    start = images
    if seed_generator is not None:
        start = images + keras.random.uniform(
            tf.shape(images), minval=-eps, maxval=eps, seed=seed_generator
        )
    x_adv = pgd_perturb(
        model,
        images,
        tf.cast(labels, tf.int64),
        start,
        eps,
        step_size,
        steps,
        norm="linf",
    )
    return tf.stop_gradient(x_adv)


def _hard_loss(labels, logits):
    return tf.reduce_mean(
        keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
    )


@keras.saving.register_keras_serializable(package="keras_takd")
class PGDTrainingModel(keras.Model):
    """PGD adversarial training of a logits model (Madry et al.; PNI / CNI mix).

    Batches are `(images, labels)`. The loss is (1 - a) * CE(y, z(x)) + a * CE(y, z(x_adv))
    with x_adv from L-inf PGD-`steps` against the model (random start, `training=False`).
    Every trainable variable of `model` is updated, including the noise parameters of noisy
    layers. Calling this model returns `model`'s logits.

    Args:
        model: the logits model to train in place.
        eps: L-inf radius of the training attack (8/255).
        step_size: PGD step size (2/255).
        steps: PGD steps k (10).
        adversarial_weight: a in [0, 1], the weight of the adversarial term (0.5 as PNI/CNI).
        seed: seed of the random starts.
        **kwargs: `keras.Model` arguments.

    Raises:
        ValueError: for a bad eps, step size, number of steps or weight.
    """

    def __init__(
        self,
        model: keras.Model,
        eps: float = DEFAULT_EPS,
        step_size: float = DEFAULT_STEP_SIZE,
        steps: int = DEFAULT_STEPS,
        adversarial_weight: float = 0.5,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.model = model
        self.eps, self.step_size, self.steps = _check_pgd(eps, step_size, steps)
        self.adversarial_weight = _check_weight(adversarial_weight, "adversarial_weight")
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.accuracy_tracker = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        self.adv_accuracy_tracker = keras.metrics.SparseCategoricalAccuracy(name="adv_accuracy")

    @property
    def metrics(self):
        return [self.loss_tracker, self.accuracy_tracker, self.adv_accuracy_tracker]

    def call(self, images, training=False):
        return self.model(images, training=training)

    def train_step(self, data):
        images, labels = data[0], data[1]
        x_adv = linf_pgd(
            self.model, images, labels, self.eps, self.step_size, self.steps, self.seed_generator
        )
        a = self.adversarial_weight
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            logits = self.model(images, training=True)
            adv_logits = self.model(x_adv, training=True)
            loss = (1.0 - a) * _hard_loss(labels, logits) + a * _hard_loss(labels, adv_logits)
            scaled_loss = loss / replicas  # gradients are summed over replicas
        variables = self.model.trainable_variables
        self.optimizer.apply(tape.gradient(scaled_loss, variables), variables)
        self.loss_tracker.update_state(loss)
        self.accuracy_tracker.update_state(labels, logits)
        self.adv_accuracy_tracker.update_state(labels, adv_logits)
        return {m.name: m.result() for m in self.metrics}

    def test_step(self, data):
        images, labels = data[0], data[1]
        logits = self.model(images, training=False)
        self.loss_tracker.update_state(_hard_loss(labels, logits))
        self.accuracy_tracker.update_state(labels, logits)
        return {m.name: m.result() for m in (self.loss_tracker, self.accuracy_tracker)}

    def get_config(self):
        return {
            **super().get_config(),
            "model": keras.saving.serialize_keras_object(self.model),
            "eps": self.eps,
            "step_size": self.step_size,
            "steps": self.steps,
            "adversarial_weight": self.adversarial_weight,
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["model"] = keras.saving.deserialize_keras_object(config["model"])
        return cls(**config)


@keras.saving.register_keras_serializable(package="keras_takd")
class AdversarialDistillerModel(DistillerModel):
    """Adversarial distillation from cached (smoothed) teacher soft targets.

    Batches are `(images, labels, soft_targets)`. The loss (module docstring) is
    (1 - p) * L_w(x) + p * L_w(x_adv), both terms `DistillerModel`'s Hinton mix against the
    soft targets of the clean images; x_adv is L-inf PGD-`steps` against the student.

    Args:
        student: the (deterministic) logits model to train.
        teacher: optional frozen teacher, only for batches without soft targets.
        temperature: distillation temperature T.
        distil_weight: w, the teacher-vs-label weight inside both terms (paper: 0.75).
        scale_soft_loss: multiply the soft terms by T^2 (Hinton, as Katz & Reches).
        perturb_distil_weight: p in [0, 1], the weight of the perturbed term (paper: 0.25).
        eps: L-inf radius of the training attack (8/255).
        step_size: PGD step size (2/255).
        steps: PGD steps k (10).
        seed: seed of the random starts.
        **kwargs: `keras.Model` arguments.

    Raises:
        ValueError: for a weight outside [0, 1] or bad PGD settings.
    """

    def __init__(
        self,
        student: keras.Model,
        teacher: keras.Model | None = None,
        temperature: float = 1.0,
        distil_weight: float = 0.75,
        scale_soft_loss: bool = True,
        perturb_distil_weight: float = 0.25,
        eps: float = DEFAULT_EPS,
        step_size: float = DEFAULT_STEP_SIZE,
        steps: int = DEFAULT_STEPS,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(student, teacher, temperature, distil_weight, scale_soft_loss, **kwargs)
        self.perturb_distil_weight = _check_weight(perturb_distil_weight, "perturb_distil_weight")
        self.eps, self.step_size, self.steps = _check_pgd(eps, step_size, steps)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.perturbed_loss_tracker = keras.metrics.Mean(name="perturbed_loss")
        self.adv_accuracy_tracker = keras.metrics.SparseCategoricalAccuracy(name="adv_accuracy")

    @property
    def metrics(self):
        # With p = 0 no perturbed image is made: report no perturbed metrics rather than 0.
        if self.perturb_distil_weight == 0:
            return super().metrics
        return [*super().metrics, self.perturbed_loss_tracker, self.adv_accuracy_tracker]

    def combined_loss(self, images, labels, soft_targets, x_adv):
        """The loss of one batch and its parts, for given perturbed images.

        Returns:
            `(loss, clean_losses, perturbed_losses, logits, adv_logits)`, where each of
            `clean_losses` / `perturbed_losses` is DistillerModel's (total, soft, hard);
            with `perturb_distil_weight == 0` the perturbed branch is not run and
            `perturbed_losses` and `adv_logits` are None.
        """
        logits = self.student(images, training=True)
        clean = self._distillation_losses(labels, soft_targets, logits)
        p = self.perturb_distil_weight
        if p == 0:  # the perturbed branch is not even run: it cannot touch the gradient
            return clean[0], clean, None, logits, None
        adv_logits = self.student(x_adv, training=True)
        perturbed = self._distillation_losses(labels, soft_targets, adv_logits)
        return (1.0 - p) * clean[0] + p * perturbed[0], clean, perturbed, logits, adv_logits

    def train_step(self, data):
        images, labels, soft_targets = self._unpack(data)
        x_adv = images
        if self.perturb_distil_weight > 0:
            x_adv = linf_pgd(
                self.student,
                images,
                labels,
                self.eps,
                self.step_size,
                self.steps,
                self.seed_generator,
            )
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            loss, clean, perturbed, logits, adv_logits = self.combined_loss(
                images, labels, soft_targets, x_adv
            )
            scaled_loss = loss / replicas  # gradients are summed over replicas
        variables = self.student.trainable_variables
        self.optimizer.apply(tape.gradient(scaled_loss, variables), variables)
        if perturbed is not None:
            self.perturbed_loss_tracker.update_state(perturbed[0])
            self.adv_accuracy_tracker.update_state(labels, adv_logits)
        return self._update_metrics(labels, logits, (loss, clean[1], clean[2]))

    def test_step(self, data):
        """Clean validation only (the parent's losses); PGD evaluation is done separately."""
        results = super().test_step(data)
        return {name: results[name] for name in ("loss", "soft_loss", "hard_loss", "accuracy")}

    def get_config(self):
        return {
            **super().get_config(),
            "perturb_distil_weight": self.perturb_distil_weight,
            "eps": self.eps,
            "step_size": self.step_size,
            "steps": self.steps,
            "seed": self.seed,
        }


@dataclasses.dataclass(frozen=True)
class AdversarialConfig:
    """Hyperparameters of PGD adversarial training / adversarial distillation (Katz & Reches).

    Attributes:
        epochs: passes over the training set (100 in the paper).
        batch_size: images per step.
        learning_rate: Adam's initial learning rate (1e-4).
        weight_decay: Adam's weight decay (1e-4).
        lr_milestones: epochs after which the learning rate is multiplied by `lr_gamma`
            (PyTorch MultiStepLR; the paper does not state them).
        lr_gamma: the multiplicative factor at each milestone.
        eps: L-inf radius of the training attack (8/255).
        step_size: PGD step size (2/255).
        steps: PGD steps k (10).
        seed: seed of shuffling and random starts.
    """

    epochs: int = 100
    batch_size: int = 128
    learning_rate: float = 1e-4
    weight_decay: float = 1e-4
    lr_milestones: tuple[int, ...] = (50, 75)
    lr_gamma: float = 0.1
    eps: float = DEFAULT_EPS
    step_size: float = DEFAULT_STEP_SIZE
    steps: int = DEFAULT_STEPS
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "lr_milestones", tuple(int(m) for m in self.lr_milestones))
        checks = (
            ("epochs", self.epochs >= 1, ">= 1"),
            ("batch_size", self.batch_size >= 1, ">= 1"),
            ("learning_rate", self.learning_rate > 0, "> 0"),
            ("weight_decay", self.weight_decay >= 0, ">= 0"),
            ("lr_gamma", 0 < self.lr_gamma <= 1, "in (0, 1]"),
            (
                "lr_milestones",
                all(m >= 1 for m in self.lr_milestones)
                and list(self.lr_milestones) == sorted(set(self.lr_milestones)),
                "increasing epochs >= 1",
            ),
        )
        for name, ok, expected in checks:
            if not ok:
                raise ValueError(f"{name} must be {expected}, got {getattr(self, name)!r}")
        _check_pgd(self.eps, self.step_size, self.steps)


def make_adam_optimizer(
    config: AdversarialConfig, steps_per_epoch: int
) -> keras.optimizers.Optimizer:
    """Adam with weight decay and a multi-step learning-rate schedule (PyTorch MultiStepLR).

    Keras applies `weight_decay` decoupled from the gradient (AdamW style, w -= lr * wd * w),
    whereas PyTorch's `Adam(weight_decay=...)`, presumably what the paper used, adds wd * w to
    the gradient before the adaptive scaling.

    Args:
        config: the hyperparameters.
        steps_per_epoch: optimiser steps per epoch, to turn epoch milestones into steps.

    Returns:
        A compiled-ready `keras.optimizers.Adam`.
    """
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
    boundaries = [m * steps_per_epoch for m in config.lr_milestones]
    values = [config.learning_rate * config.lr_gamma**i for i in range(len(boundaries) + 1)]
    schedule = (
        keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)
        if boundaries
        else config.learning_rate
    )
    return keras.optimizers.Adam(schedule, beta_1=0.9, weight_decay=config.weight_decay or None)


def _steps_per_epoch(n: int, batch_size: int) -> int:
    return max(1, -(-n // batch_size))


def adversarial_train(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    config: AdversarialConfig,
    adversarial_weight: float = 0.5,
    validation_data=None,
    callbacks=(),
    verbose="auto",
) -> keras.callbacks.History:
    """Trains `model` in place with PGD adversarial training (e.g. a CNI teacher).

    Args:
        model: the logits model.
        x, y: training images in [0, 1] and int labels.
        config: hyperparameters (epochs, Adam, schedule, PGD).
        adversarial_weight: weight of the adversarial term (0.5 PNI/CNI, 1.0 Madry).
        validation_data: optional (x_val, y_val), evaluated clean.
        callbacks: Keras callbacks (e.g. BackupAndRestore).
        verbose: Keras verbosity.

    Returns:
        The Keras History.
    """
    trainer = PGDTrainingModel(
        model, config.eps, config.step_size, config.steps, adversarial_weight, seed=config.seed
    )
    trainer.compile(
        optimizer=make_adam_optimizer(config, _steps_per_epoch(len(x), config.batch_size))
    )
    trainer(x[:1])
    val = None if validation_data is None else make_batches(validation_data, 256, False, 0)
    return trainer.fit(
        make_batches((x, y), config.batch_size, True, config.seed),
        epochs=config.epochs,
        validation_data=val,
        callbacks=list(callbacks),
        verbose=verbose,
        shuffle=False,
    )


def adversarial_distil(
    student: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    soft_targets: np.ndarray,
    config: AdversarialConfig,
    temperature: float = 1.0,
    distil_weight: float = 0.75,
    perturb_distil_weight: float = 0.25,
    scale_soft_loss: bool = True,
    validation_data=None,
    callbacks=(),
    verbose="auto",
) -> keras.callbacks.History:
    """Distils cached teacher soft targets into `student` in place, with PGD-perturbed copies.

    `perturb_distil_weight=0` is plain (clean) Hinton distillation with the same optimiser.

    Args:
        student: the logits model to train.
        x, y: training images and int labels.
        soft_targets: the teacher's probabilities p_t for `x` [N, classes].
        config: hyperparameters (epochs, Adam, schedule, PGD).
        temperature: T of the soft term.
        distil_weight: w, teacher-vs-label weight.
        perturb_distil_weight: p, weight of the perturbed term.
        scale_soft_loss: the T^2 factor of Hinton et al.
        validation_data: optional (x_val, y_val, soft_targets_val), evaluated clean.
        callbacks: Keras callbacks.
        verbose: Keras verbosity.

    Returns:
        The Keras History.

    Raises:
        ValueError: if `soft_targets` does not hold one row per image.
    """
    if len(soft_targets) != len(x):
        raise ValueError(f"soft_targets has {len(soft_targets)} rows for {len(x)} images")
    distiller = AdversarialDistillerModel(
        student,
        temperature=temperature,
        distil_weight=distil_weight,
        scale_soft_loss=scale_soft_loss,
        perturb_distil_weight=perturb_distil_weight,
        eps=config.eps,
        step_size=config.step_size,
        steps=config.steps,
        seed=config.seed,
    )
    steps = _steps_per_epoch(len(x), config.batch_size)
    distiller.compile(optimizer=make_adam_optimizer(config, steps))
    distiller(x[:1])
    val = None if validation_data is None else make_batches(validation_data, 256, False, 0)
    return distiller.fit(
        make_batches((x, y, soft_targets.astype(np.float32)), config.batch_size, True, config.seed),
        epochs=config.epochs,
        validation_data=val,
        callbacks=list(callbacks),
        verbose=verbose,
        shuffle=False,
    )


class EpochAccuracyCurves(keras.callbacks.Callback):
    """Clean and PGD accuracy on fixed image sets after every epoch (Katz & Reches, Figs. 1-3).

    The paper plots its distilled student's accuracy against the epoch, on clean and on PGD-10
    (eps 8/255) perturbed images of the training and the validation data. After each epoch
    this callback measures both on fixed subsets, adds `<set>_clean_accuracy` and
    `<set>_pgd_accuracy` to the epoch's logs (so they reach the History and the progress
    line), and, given `path`, writes every epoch's record to a JSON file atomically, keyed by
    epoch, so that a run resumed by `keras.callbacks.BackupAndRestore` keeps the epochs of the
    interrupted run (its History starts at the resumed epoch).

    PGD runs against `network` in inference mode, from the same seeded random starts at every
    epoch, with `keep_failed=True` (the last iterate of every image is scored).
    """

    def __init__(
        self,
        network: keras.Model,
        sets: dict[str, tuple[np.ndarray, np.ndarray]],
        eps: float = DEFAULT_EPS,
        step_size: float = DEFAULT_STEP_SIZE,
        steps: int = DEFAULT_STEPS,
        seed: int = 0,
        path=None,
        batch_size: int = 256,
    ):
        super().__init__()
        if not sets:
            raise ValueError("sets must name at least one (x, y) image set")
        for name, (x, y) in sets.items():
            if len(x) != len(y) or len(x) == 0:
                raise ValueError(f"set {name!r} needs as many labels as images, at least one")
        self.network = network
        self.sets = sets
        self.eps, self.step_size, self.steps = _check_pgd(eps, step_size, steps)
        self.seed, self.batch_size = seed, batch_size
        self.path = None if path is None else pathlib.Path(path)

    def records(self) -> list[dict]:
        """The records written so far (from `path`), in epoch order."""
        if self.path is None or not files.check_regular(self.path).exists():
            return []
        return files.read_json(self.path)["epochs"]

    def measure(self) -> dict[str, float]:
        """Clean and PGD accuracy of `network` on every set, now."""
        from keras_takd.attacks.projected_gradient_descent import projected_gradient_descent

        logs = {}
        for name, (x, y) in self.sets.items():
            clean = np.argmax(self.network.predict(x, batch_size=self.batch_size, verbose=0), -1)
            x_adv = projected_gradient_descent(
                self.network,
                x,
                y,
                self.eps,
                self.step_size,
                self.steps,
                batch_size=self.batch_size,
                seed=self.seed,
                keep_failed=True,
            ).x_adv
            adv = np.argmax(self.network.predict(x_adv, batch_size=self.batch_size, verbose=0), -1)
            logs[f"{name}_clean_accuracy"] = float(np.mean(clean == y))
            logs[f"{name}_pgd_accuracy"] = float(np.mean(adv == y))
        return logs

    def on_epoch_end(self, epoch, logs=None):
        measured = self.measure()
        if logs is not None:
            logs.update(measured)
        if self.path is not None:
            kept = [r for r in self.records() if r["epoch"] < epoch + 1]
            kept.append({"epoch": epoch + 1, **measured})
            settings = {"eps": self.eps, "step_size": self.step_size, "steps": self.steps}
            sizes = {name: len(x) for name, (x, _) in self.sets.items()}
            files.write_json_atomic(
                self.path, {"pgd": settings, "set_sizes": sizes, "epochs": kept}
            )
