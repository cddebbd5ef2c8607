"""The unit cache: each finished unit in the run's record, reused only on its full identity.

A finished unit is a row of the record's `units` table (`keras_takd.core.record`), keyed by its
evaluation, its model (dataset, temperature, seed, stage), its kind and its images [start,
stop), and stored with what it was computed for (`unit_identity`):

    weights_sha256        the model's weights (`units.weights_sha256`)
    architecture_sha256   the model's architecture (`core.identity.architecture_sha256`)
    test_set_sha256       the images and labels it computed on (`core.identity.array_sha256`)
    code_sha256           the source of its module and what it imports (the attack's module,
                          `core.metrics` or `indicator_units`; `core.identity.source_sha256`)
    settings              the attack's options, budget and fixed arguments; the metrics' or
                          the indicators' settings

A stored unit is reused only when every identity matches; otherwise `cached_units` names the
unit and what differs (`core.identity.differences`) in one line, and it is recomputed. Its
payload also carries its schema version and a checksum of its content; one that fails either,
or lacks what its kind holds, is named and recomputed, never trusted. Only the evaluation loop,
in the calling process, stores units (`store_unit`, one transaction per unit); the units'
compute functions write nothing.

Units that earlier versions stored as JSON files under `<run>/eval/<config id>/` are not read:
they record the weights only, not the architecture, the test set or the code, so they are
recomputed (and left where they are).
"""

from __future__ import annotations

import functools
import hashlib
import json
import pathlib
from collections.abc import Callable, Mapping

from keras_takd.core import identity, metrics, record
from keras_takd.takd.evaluation.config import (
    FIXED_ARGUMENTS,
    EvaluationConfig,
    attack_function,
)
from keras_takd.takd.evaluation.indicator_units import (
    indicated_attack,
    indicator_settings,
    indicator_unit,
    same_indicators,
)
from keras_takd.takd.schema import ATTACK_PREFIXES, ATTACKS, MASKED_L2_PREFIX

# Version of the stored units' payload: a unit of another version is recomputed, never read.
# 2: units are tied to the model's weights (not its file) and carry a checksum of their content.
# 3: units live in the run's record with every identity they were computed for.
UNIT_SCHEMA = 3

StoredUnits = dict[tuple, dict]
"""An evaluation's stored units by `record.UNIT_KEY` (as `stored_units` returns them)."""


def unit_checksum(unit: Mapping) -> str:
    """The sha256 of a unit's content (every key but "checksum"), canonical JSON."""
    body = {k: v for k, v in unit.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def unit_settings(kind: str, config: EvaluationConfig) -> dict:
    """The settings a unit of `kind` is computed with, as stored (JSON types).

    Args:
        kind: "metrics", an attack prefix, or an indicator unit's name.
        config: the evaluation.

    Returns:
        `metrics.SENSITIVITY_SETTINGS` for "metrics", `indicator_settings` for an indicator
        unit; for an attack unit its options, fixed arguments and budget.
    """
    if kind == "metrics":
        settings = metrics.SENSITIVITY_SETTINGS
    elif indicated_attack(kind) is not None:
        settings = indicator_settings(indicated_attack(kind))
    else:
        attack = _attack(kind)
        settings = {
            "options": config.attack_options[attack],
            "fixed": FIXED_ARGUMENTS.get(attack, {}),
            "budget": config.budgets.get(kind) if kind in ATTACKS else None,
        }
    return json.loads(json.dumps(settings, sort_keys=True))


def _attack(kind: str) -> str:
    return "l2" if kind == MASKED_L2_PREFIX else kind


@functools.cache
def code_sha256(kind: str) -> str:
    """The `source_sha256` of the module that computes a unit of `kind`."""
    if kind == "metrics":
        module = metrics.__name__
    elif indicated_attack(kind) is not None:
        module = same_indicators.__module__
    else:
        module = attack_function(_attack(kind)).__module__
    return identity.source_sha256(module)


def unit_identity(
    kind: str,
    config: EvaluationConfig,
    model: Mapping[str, str],
    test_set_sha256: str,
) -> dict:
    """Everything a unit's numbers depend on besides its key (see the module docstring).

    Args:
        kind: "metrics", an attack prefix, or an indicator unit's name.
        config: the evaluation.
        model: the model's "weights_sha256" and "architecture_sha256".
        test_set_sha256: the `array_sha256` of the unit's images and labels.
    """
    return {
        "weights_sha256": model["weights_sha256"],
        "architecture_sha256": model["architecture_sha256"],
        "test_set_sha256": test_set_sha256,
        "code_sha256": code_sha256(kind),
        "settings": unit_settings(kind, config),
    }


def stored_units(folder: str | pathlib.Path, evaluation: str) -> StoredUnits:
    """The units of an evaluation stored in the run's record, by `record.UNIT_KEY`."""
    return {tuple(u[c] for c in record.UNIT_KEY): u for u in record.units(folder, evaluation)}


def cached_units(
    stored: StoredUnits,
    model_key: tuple,
    wanted: Mapping[str, tuple[tuple[int, int], dict]],
    name: Callable[[str], str],
    note: Callable[[str], None],
) -> dict[str, dict]:
    """Every stored unit of one model that may be reused, {kind: payload}.

    An indicator unit counts only beside the attack unit it was computed from.

    Args:
        stored: the evaluation's stored units (`stored_units`).
        model_key: the model's `record.MODEL_KEY` values.
        wanted: {kind: (images [start, stop), `unit_identity`)} of every unit the model may
            have.
        name: the unit's name in a line, from its kind.
        note: called with one line for each stored unit that is not reused: what differs,
            or why it is not intact.
    """
    done = {}
    kinds = ["metrics"] + [k for a in ATTACK_PREFIXES for k in (a, indicator_unit(a))]
    for kind in (k for k in kinds if k in wanted):
        images, wanted_identity = wanted[kind]
        unit = stored.get((*model_key, kind, *images))
        if unit is None:
            continue
        problem = _problem(unit, kind, wanted_identity)
        if problem:
            note(f"{name(kind)}: {problem}; recomputing it")
            continue
        attack = indicated_attack(kind)
        if attack is None or same_indicators(unit["payload"], done, attack):
            done[kind] = unit["payload"]
    return done


def _problem(unit: Mapping, kind: str, wanted: Mapping) -> str | None:
    """Why a stored unit may not be reused, or None."""
    differs = identity.differences({k: unit[k] for k in wanted}, wanted)
    if differs:
        return ", ".join(differs)
    payload = unit["payload"]
    if not isinstance(payload, dict):
        return "not a unit (its payload is not an object)"
    if payload.get("schema") != UNIT_SCHEMA:
        return f"unit schema {payload.get('schema')!r}, this version reads {UNIT_SCHEMA}"
    if payload.get("checksum") != unit_checksum(payload):
        return "its content does not match its checksum (edited or damaged)"
    if not _valid_content(payload, kind):
        return f"lacks what a {kind} unit holds"
    return None


def _valid_content(unit: Mapping, kind: str) -> bool:
    """Whether a unit holds what its kind needs, with the right types and lengths."""
    try:
        start, stop = unit["images"]
        if not (isinstance(start, int) and isinstance(stop, int) and 0 <= start <= stop):
            return False
        if not isinstance(unit.get("seconds"), (int, float)):
            return False
        if kind == "metrics":  # units cached before predictions were kept lack them
            predictions = unit["predictions"]
            return all(isinstance(v, (int, float)) for v in unit["metrics"].values()) and (
                len(predictions) == stop - start and all(isinstance(c, int) for c in predictions)
            )
        attack = indicated_attack(kind)
        if attack is not None:
            n = len(unit["index"])
            return all(flags is None or len(flags) == n for flags in unit["flags"].values())
        return _valid_attack_content(unit, stop - start)
    except (KeyError, TypeError, ValueError, AttributeError):
        return False


def _valid_attack_content(unit: Mapping, block: int) -> bool:
    stats, per = unit["statistics"], unit["per_image"]
    if not isinstance(stats, dict) or not all(isinstance(v, (int, float)) for v in stats.values()):
        return False
    if not per:  # no image classified correctly
        return True
    n = len(per["index"])
    lists = [per[key] for key in ("success", "distance", "const")]
    lists += [per[key] for key in ("found", "iterations", "incomplete", "target") if key in per]
    return all(len(values) == n for values in lists) and all(
        isinstance(i, int) and 0 <= i < block for i in per["index"]
    )


def store_unit(
    folder: pathlib.Path,
    evaluation: tuple[str, Mapping],
    unit_key: tuple,
    unit_identity: Mapping,
    result: Mapping,
) -> dict:
    """Stores a computed unit in the run's record, one transaction.

    Args:
        folder: the run folder.
        evaluation: the evaluation's id and identity.
        unit_key: the unit's `record.UNIT_KEY` values.
        unit_identity: what it was computed for (`unit_identity`).
        result: what the unit's compute function returned (with "images" and "seconds").

    Returns:
        The unit's payload as stored: `result`, its schema version and checksum.
    """
    payload = dict(result) | {"schema": UNIT_SCHEMA}
    payload["checksum"] = unit_checksum(payload)
    unit = dict(zip(record.UNIT_KEY, unit_key, strict=True)) | dict(unit_identity)
    with record.writing(folder) as connection:
        record.put_unit(connection, evaluation[0], evaluation[1], unit, payload)
    return payload
