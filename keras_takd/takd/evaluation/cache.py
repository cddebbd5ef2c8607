"""The unit cache: where each finished unit lies, how it is checked on reading, how it is stored.

Each finished unit is a JSON file under `<output_dir>/eval/<config id>/` (see
`keras_takd.takd.evaluation`):

    <dataset>/T<T>/stage<k>/metrics.json
    <dataset>/T<T>/stage<k>/shard<i>of<n>/<attack>.json           and <attack>_indicators.json

A unit is keyed by its model's weights (`units.weights_sha256`) and its images [start, stop);
it carries its schema version and a checksum of its content. A metrics or indicator unit also
records the settings it was computed with (`unit_settings`); one computed with others (e.g. by
the float32 gradients of earlier versions) is named in a note and recomputed. Only the
evaluation loop, in the calling process, stores units (`store_unit`); the units' compute
functions write nothing.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
from collections.abc import Callable, Mapping, Sequence

from keras_takd.core import files, metrics
from keras_takd.takd.evaluation.config import EvaluationConfig
from keras_takd.takd.evaluation.indicator_units import (
    indicated_attack,
    indicator_settings,
    indicator_unit,
    same_indicators,
)
from keras_takd.takd.schema import ATTACK_PREFIXES

# Version of the cached units' layout: a unit of another version is recomputed, never read.
# 2: units are tied to the model's weights (not its file) and carry a checksum of their content.
UNIT_SCHEMA = 2


def unit_checksum(unit: Mapping) -> str:
    """The sha256 of a unit's content (every key but "checksum"), canonical JSON."""
    body = {k: v for k, v in unit.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def unit_path(unit_dir: pathlib.Path, kind: str, config: EvaluationConfig) -> pathlib.Path:
    """The cache file of unit `kind` of the model whose cache folder is `unit_dir`.

    The attack-free metrics are not split over shards; attack and indicator units are.
    """
    if kind == "metrics":
        return unit_dir / "metrics.json"
    return unit_dir / config.shard_dir / f"{kind}.json"


def load_unit(
    path: pathlib.Path,
    weights_sha256: str,
    images: Sequence[int],
    kind: str,
    note: Callable[[str], None],
) -> dict | None:
    """The cached unit if it is intact and was computed for these weights and images.

    A unit that is not intact (unreadable, of another schema version, not matching its
    checksum, computed with other settings, or lacking what its kind needs) is never trusted:
    `note` gets one line saying why, and the unit is recomputed. A unit of another model or
    other images is silently recomputed: that is what a cache is for.

    Args:
        path: the unit's JSON file (`unit_path`).
        weights_sha256: the weights the unit must have been computed for.
        images: the images [start, stop) it must cover.
        kind: "metrics", an attack prefix, or an indicator unit's name.
        note: called with one line for a unit that is not intact.

    Returns:
        The unit, or None if it is to be computed.
    """
    if not path.is_file():
        return None
    cached = _read(path)
    problem = _problem(cached, kind)
    if problem:
        note(f"{path}: {problem}; recomputing it")
        return None
    if cached.get("weights_sha256") != weights_sha256 or cached["images"] != list(images):
        return None
    return cached


def _read(path: pathlib.Path) -> object:
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError):
        return None


def _problem(cached: object, kind: str) -> str | None:
    """Why a cached unit is not intact, or None."""
    if not isinstance(cached, dict):
        return "not a unit (unreadable JSON)"
    if cached.get("schema") != UNIT_SCHEMA:
        return f"unit schema {cached.get('schema', 1)!r}, this version reads {UNIT_SCHEMA}"
    if cached.get("checksum") != unit_checksum(cached):
        return "its content does not match its checksum (edited or damaged)"
    expected = unit_settings(kind)
    if expected is not None and cached.get("settings") != expected:
        return f"computed with settings {cached.get('settings')!r}, this version uses {expected!r}"
    if not _valid_content(cached, kind):
        return f"lacks what a {kind} unit holds"
    return None


def unit_settings(kind: str) -> dict | None:
    """The settings a unit of `kind` records, and must match to be read.

    Args:
        kind: "metrics", an attack prefix, or an indicator unit's name.

    Returns:
        `metrics.SENSITIVITY_SETTINGS` for "metrics", `indicator_settings` for an indicator
        unit, None for an attack unit (its settings are the evaluation's configuration, which
        names its folder).
    """
    if kind == "metrics":
        return metrics.SENSITIVITY_SETTINGS
    attack = indicated_attack(kind)
    return None if attack is None else indicator_settings(attack)


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


def cached_units(
    unit_dir: pathlib.Path,
    weights_sha256: str,
    config: EvaluationConfig,
    metric_images: int,
    note: Callable[[str], None],
) -> dict[str, dict]:
    """Every intact unit of one model in the cache, {kind: unit}.

    An indicator unit counts only beside the attack unit it was computed from.

    Args:
        unit_dir: the model's cache folder.
        weights_sha256: the model's weights.
        config: the evaluation (its shard and each attack's images).
        metric_images: the attack-free metrics' images [0, metric_images).
        note: called with one line for each unit that is not intact (see `load_unit`).
    """
    done = {}
    path = unit_path(unit_dir, "metrics", config)
    cached = load_unit(path, weights_sha256, [0, metric_images], "metrics", note)
    if cached is not None:
        done["metrics"] = cached
    for attack in ATTACK_PREFIXES:
        for kind in (attack, indicator_unit(attack)):
            path = unit_path(unit_dir, kind, config)
            cached = load_unit(path, weights_sha256, config.block(attack), kind, note)
            if cached is not None and (kind == attack or same_indicators(cached, done, attack)):
                done[kind] = cached
    return done


def store_unit(path: pathlib.Path, result: Mapping, weights_sha256: str) -> dict:
    """Stores a computed unit: its result, schema version, weights and checksum, atomically.

    Args:
        path: the unit's JSON file (`unit_path`).
        result: what the unit's compute function returned (with "images" and "seconds").
        weights_sha256: the weights it was computed for.

    Returns:
        The unit as stored.
    """
    unit = dict(result) | {"schema": UNIT_SCHEMA, "weights_sha256": weights_sha256}
    unit["checksum"] = unit_checksum(unit)
    files.write_json_atomic(path, unit)
    return unit
