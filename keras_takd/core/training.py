"""Training that never saves a diverged model and never trusts a half-written backup.

Every training of the package (chain stages and their warm start, the smoothed-KD teacher
and students) runs through `guarded_fit`, which adds two Keras callbacks to its `fit`:

- `StopOnNonFinite`: stops at the first batch whose loss is NaN or infinite, or at the end of
  an epoch whose weights are not finite (`keras.callbacks.TerminateOnNaN` does the first, but
  neither names the epoch nor checks the weights), and `guarded_fit` then raises
  `NonFiniteError` naming the training and the epoch, before anything is saved;
- `CheckedBackupAndRestore`: `keras.callbacks.BackupAndRestore` (resume from the last finished
  epoch) that restores a backup only if it is complete. Keras writes `latest.weights.h5` and
  `training_metadata.json` in place, so a disk-full error or a kill while writing leaves a
  truncated file; such a backup is deleted with a one-line note and the training starts over.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable

import keras
import numpy as np


class NonFiniteError(ValueError):
    """A training diverged: its loss or its weights became NaN or infinite."""


def _weights_finite(model: keras.Model) -> bool:
    return all(np.isfinite(keras.ops.convert_to_numpy(w)).all() for w in model.weights)


class StopOnNonFinite(keras.callbacks.Callback):
    """Stops training at the first non-finite loss, or after an epoch with non-finite weights.

    Attributes:
        problem: what went wrong, e.g. "the training loss became nan in epoch 2 of 5"; None
            while training is sound.
    """

    def __init__(self):
        super().__init__()
        self.problem = None
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch + 1

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if self.problem is None and loss is not None and not np.isfinite(float(loss)):
            self._stop(f"the training loss became {float(loss)}")

    def on_epoch_end(self, epoch, logs=None):
        if self.problem is None and not _weights_finite(self.model):
            self._stop("the weights became NaN or infinite")

    def _stop(self, what: str) -> None:
        self.problem = f"{what} in epoch {self._epoch} of {self.params.get('epochs', '?')}"
        self.model.stop_training = True


class CheckedBackupAndRestore(keras.callbacks.BackupAndRestore):
    """`keras.callbacks.BackupAndRestore` that discards an incomplete or unreadable backup.

    A backup is restored only if both its files exist and load (the weights, and the epoch
    in `training_metadata.json`). Otherwise the model keeps the weights it started with, the
    backup folder is deleted, `note` gets one line, and training starts from epoch 0.

    Args:
        backup_dir: the backup folder (as for BackupAndRestore).
        note: called with the one line saying a backup was discarded.
    """

    def __init__(self, backup_dir: str | os.PathLike, note: Callable[[str], None] = print):
        super().__init__(str(backup_dir))
        self._note = note

    def on_train_begin(self, logs=None):
        found = [os.path.exists(p) for p in (self._weights_path, self._training_metadata_path)]
        if not any(found):
            return
        optimizer = self.model.optimizer
        if optimizer is not None and not optimizer.built:
            optimizer.build(self.model.trainable_variables)
        variables = list(self.model.weights) + list(optimizer.variables if optimizer else [])
        start = [keras.ops.convert_to_numpy(v) for v in variables]
        try:
            if not all(found):
                raise ValueError("one of its two files is missing")
            super().on_train_begin(logs)
            epoch = self.model._initial_epoch
            if not (isinstance(epoch, int) and epoch >= 0):
                raise ValueError(f"its epoch is {epoch!r}")
        except (OSError, ValueError, KeyError, TypeError) as error:
            for variable, value in zip(variables, start, strict=True):
                variable.assign(value)
            self.model._initial_epoch = None
            shutil.rmtree(self.backup_dir, ignore_errors=True)
            reason = " ".join(str(error).split())[:200] or type(error).__name__
            self._note(
                f"{self.backup_dir}: incomplete or damaged backup ({reason}); deleted, "
                "training this model from its first epoch"
            )


def guarded_fit(
    fit: Callable[[list], keras.callbacks.History],
    model: keras.Model,
    what: str,
    backup_dir: str | os.PathLike | None = None,
    note: Callable[[str], None] = print,
) -> keras.callbacks.History:
    """Runs `fit(callbacks)` with `StopOnNonFinite` and a checked backup; raises if it diverged.

    Args:
        fit: trains `model`; it must pass the callbacks it is given to `Model.fit`.
        model: the model being trained, whose weights are checked at the end.
        what: names the training in the error, e.g. "mnist T=20 stage 2 student".
        backup_dir: the `CheckedBackupAndRestore` folder; None: no backup.
        note: called with one line when a damaged backup is discarded.

    Returns:
        `fit`'s History.

    Raises:
        NonFiniteError: the loss or the weights became NaN or infinite; names `what` and the
            epoch. Nothing is saved by this function, so the caller saves nothing either.
    """
    stop = StopOnNonFinite()
    backup = [] if backup_dir is None else [CheckedBackupAndRestore(backup_dir, note)]
    history = fit([stop, *backup])
    if stop.problem is None and not _weights_finite(model):
        stop.problem = "the weights are NaN or infinite at the end of training"
    if stop.problem is not None:
        raise NonFiniteError(
            f"{what}: {stop.problem}; not saved. Try a higher --temperature or a lower "
            "--learning_rate"
        )
    return history
