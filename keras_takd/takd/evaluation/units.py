"""Units of work of an evaluation: what one unit is, and the function that computes it.

A unit is one model's attack-free metrics (Mandal & Guo, section V), one attack on one model's
block of images (Carlini & Wagner, arXiv:1608.04644, and the optional FMN, APGD and JSMA), or one
attack's indicator unit (`indicator_units`). `compute_unit` is a function of the unit alone:
it loads the model from its path, computes, and RETURNS the result; it writes nothing, so it
may run in this process or elsewhere (see `executors`). The evaluation loop stores what it
returns (`cache.store_unit`).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import pathlib
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from keras_takd.core import files, metrics
from keras_takd.takd.evaluation.config import FIXED_ARGUMENTS, EvaluationConfig, attack_function
from keras_takd.takd.evaluation.indicator_units import indicated_attack, indicator_flags
from keras_takd.takd.evaluation.tables import attack_statistics, empty_statistics
from keras_takd.takd.schema import (
    APGD_ATTACKS,
    ATTACKS,
    JSMA_ATTACK,
    MASKED_L2_PREFIX,
    attack_norm,
)

# Models kept loaded in a process, so the units of one model load it once.
_LOADED_MODELS = 8


@dataclasses.dataclass(frozen=True)
class Unit:
    """One unit of work: which model, which attack (or metrics), which images, the settings.

    Two units are equal (and hash alike) when they name the same work: kind, model, weights,
    temperature, images and verbosity; the arrays and settings they carry do not enter.

    Attributes:
        kind: "metrics", an attack prefix (`schema.ATTACK_PREFIXES`, e.g. "l2" or
            "l2_softmax_T") or an indicator unit ("<attack>_indicators").
        model_path: the model's `.keras` file.
        weights_sha256: the weights the unit is computed for (`weights_sha256`); a model file
            holding others is refused.
        temperature: the chain's training temperature (the gradient-masking attack's T).
        images: the test images [start, stop) of the unit.
        x: those images, float32.
        y: their labels.
        config: the evaluation's settings (attack options, budgets).
        verbose: show the attack's progress bars.
        attack_unit: for an indicator unit, the attack unit it checks (as cached).
    """

    kind: str
    model_path: pathlib.Path
    weights_sha256: str
    temperature: float
    images: tuple[int, int]
    x: np.ndarray = dataclasses.field(compare=False, repr=False)
    y: np.ndarray = dataclasses.field(compare=False, repr=False)
    config: EvaluationConfig = dataclasses.field(compare=False, repr=False)
    verbose: bool = False
    attack_unit: Mapping[str, Any] | None = dataclasses.field(
        default=None, compare=False, repr=False
    )


def weights_sha256(model) -> str:
    """A sha256 of a model's weights: their order, dtypes, shapes and values.

    Unlike the hash of the saved file (which holds the save date), it is the same for two
    trainings that gave the same weights, e.g. the same run retrained with op determinism on
    another day, so cached units stay valid for it. Layer names are left out: they depend on
    how many layers the process built before.
    """
    import keras  # TensorFlow: only when a model is loaded

    digest = hashlib.sha256()
    for k, weight in enumerate(model.weights):
        array = np.ascontiguousarray(keras.ops.convert_to_numpy(weight))
        digest.update(f"{k}:{array.dtype.str}:{array.shape};".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def load_model(path: str | pathlib.Path, expected_sha256: str | None = None) -> tuple[Any, str]:
    """The Keras model saved at `path` and its `weights_sha256`.

    The last few models loaded are kept while their files stay unchanged, so the units of one
    model load it once per process.

    Args:
        path: a `.keras` file.
        expected_sha256: if given, the weights the file must hold.

    Returns:
        (model, weights_sha256).

    Raises:
        FileNotFoundError: there is no file at `path`.
        files.NotRegularFileError: `path` is a folder, a FIFO or a device.
        ValueError: the file is corrupt or Keras cannot load it (the message names it), or it
            holds other weights than `expected_sha256`.
    """
    stat = os.stat(files.check_regular(path))  # a folder or a FIFO is named, not loaded
    model, sha = _load(str(path), (stat.st_mtime_ns, stat.st_size, stat.st_ino))
    if expected_sha256 is not None and sha != expected_sha256:
        raise ValueError(
            f"{path} holds weights {sha[:12]}, expected {expected_sha256[:12]}: the model "
            "changed during the evaluation; evaluate again"
        )
    return model, sha


@functools.lru_cache(maxsize=_LOADED_MODELS)
def _load(path: str, stamp: tuple[int, int, int]) -> tuple[Any, str]:
    import keras

    model_file = files.check_keras_file(path)
    try:
        model = keras.saving.load_model(model_file)
    except (ValueError, TypeError, KeyError, AttributeError) as e:  # a config it cannot rebuild
        raise ValueError(f"model file {path} cannot be loaded by Keras: {e}") from None
    return model, weights_sha256(model)


def compute_unit(unit: Unit) -> dict:
    """Computes one unit; returns its result and writes nothing.

    Args:
        unit: the unit.

    Returns:
        The unit's content ("metrics", the sensitivities' "settings" and the "predictions",
        each image's predicted class; "statistics" and
        "per_image"; or the indicator unit's "index", "flags", "settings",
        "attack_checksum"), its "images" [start, stop) and its "seconds".

    Raises:
        ValueError: the model file holds other weights than the unit's.
    """
    model, _ = load_model(unit.model_path, unit.weights_sha256)
    began = time.perf_counter()
    attack = indicated_attack(unit.kind)
    if unit.kind == "metrics":
        content = _metrics_unit(unit, model)
    elif attack is not None:
        target = _target(attack, model, unit.temperature)
        content = indicator_flags(attack, target, unit.x, unit.y, unit.attack_unit)
    else:
        content = _attack_unit(unit, model)
    return content | {"images": list(unit.images), "seconds": time.perf_counter() - began}


def _metrics_unit(unit: Unit, model) -> dict:
    """The attack-free metrics and each test image's predicted class (for paired accuracy)."""
    values = metrics.model_metrics(model, unit.x, unit.y)
    predictions = metrics.predict_logits(model, unit.x).argmax(axis=-1)
    return {
        "metrics": {"metric_images": len(unit.x), **values},
        "settings": metrics.SENSITIVITY_SETTINGS,
        "predictions": predictions.astype(np.int64).tolist(),
    }


def _target(attack: str, model, temperature: float):
    """What `attack` attacks: the model's logits, or softmax(logits / T) for the masked L2."""
    if attack != MASKED_L2_PREFIX:
        return model
    from keras_takd.core.models import with_temperature  # TensorFlow: only when attacking

    return with_temperature(model, float(temperature))


def _attack_unit(unit: Unit, model) -> dict:
    """Attacks the correctly classified images of the unit's block."""
    correct = metrics.correctly_classified(model, unit.x, unit.y)
    name, config = unit.kind, unit.config
    budget = config.budgets.get(name) if name in ATTACKS else None
    # APGD's statistics carry its radius: robust accuracy means nothing without it.
    eps = {"eps": float(config.attack_options[name]["eps"])} if name in APGD_ATTACKS else {}
    if not correct.any():
        return {
            "statistics": empty_statistics(int((~correct).sum()), budget) | eps,
            "per_image": {},
        }
    if name == JSMA_ATTACK:
        return _jsma_unit(unit, model, correct)
    attack = "l2" if name == MASKED_L2_PREFIX else name
    kwargs = dict(config.attack_options[attack], verbose=unit.verbose)
    kwargs |= FIXED_ARGUMENTS.get(attack, {})
    if name == MASKED_L2_PREFIX:
        kwargs["allow_probabilities"] = True
    target = _target(name, model, unit.temperature)
    result = attack_function(attack)(target, unit.x[correct], unit.y[correct], **kwargs)
    stats = attack_statistics(result, name, correct, budget) | eps
    return {"statistics": stats, "per_image": _per_image(result, attack, correct)}


def _jsma_unit(unit: Unit, model, correct: np.ndarray) -> dict:
    """JSMA towards every wrong class of each correctly classified image of the block.

    Papernot et al.'s protocol (arXiv:1511.04508, section V): one targeted attack per (image,
    target) pair, on the model as deployed (F the softmax at T = 1, or the logits with the
    option `gradients`). Its statistics count pairs; its distance is the fraction of the
    image's pixels changed; its per-image record holds a row per pair, with its "target".
    """
    from keras_takd.attacks import all_targets  # TensorFlow: only when attacking

    kwargs = dict(unit.config.attack_options[JSMA_ATTACK], verbose=unit.verbose)
    x, y = unit.x[correct], np.asarray(unit.y)[correct]
    found = all_targets(attack_function(JSMA_ATTACK), model, x, y, **kwargs)
    wrong = found.num_classes - 1
    pixels = int(np.prod(unit.x.shape[1:3]))  # AttackResult.l0 counts pixels
    result = dataclasses.replace(found.result, l0=np.asarray(found.result.l0) / pixels)
    pairs = np.repeat(correct, wrong)  # image-major, as `all_targets` orders them
    per_image = _per_image(result, JSMA_ATTACK, np.ones(len(result), bool))
    classes = np.arange(found.num_classes)
    per_image["index"] = np.repeat(np.flatnonzero(correct), wrong).tolist()
    per_image["target"] = [int(c) for label in y for c in classes[classes != label]]
    return {
        "statistics": attack_statistics(result, JSMA_ATTACK, pairs),
        "per_image": per_image,
    }


def _per_image(result, attack: str, correct: np.ndarray) -> dict:
    """The per-image record of an attack result (for `per_image.unit_rows` and indicators)."""
    per_image = {
        "index": np.flatnonzero(correct).tolist(),
        "success": np.asarray(result.success, bool).tolist(),
        "distance": np.asarray(getattr(result, attack_norm(attack)), np.float64).tolist(),
        "const": np.asarray(result.const, np.float64).tolist(),
    }
    if result.found is not None:  # for the silent-success indicator, afterwards
        per_image["found"] = np.asarray(result.found, bool).tolist()
    if result.iterations is not None:
        per_image["iterations"] = np.asarray(result.iterations, np.int64).tolist()
    if result.incomplete is not None:  # for the incomplete-optimisation indicator
        per_image["incomplete"] = np.asarray(result.incomplete, bool).tolist()
    return per_image
