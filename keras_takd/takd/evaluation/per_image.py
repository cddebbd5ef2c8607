"""The per-image table: every attacked image of every model, the data behind every verdict.

Each attack unit caches, per image of its block, whether the model classified it correctly,
whether the attack succeeded, the distance found and the trade-off constant c. This module
turns those caches into one tidy table (`schema.PER_IMAGE_COLUMNS`), written beside the
results CSV as `per_image.csv` (a shard's as `per_image_shard<i>of<N>.csv`, which `merge`
concatenates), so that every comparison is made image by image on the same images
(`keras_takd.core.statistics`) and can be traced back to its data. Each metrics unit's
predicted class per test image goes to `predictions.csv` beside it (`prediction_rows`,
`write_predictions`), for the paired accuracy comparisons.
"""

from __future__ import annotations

import math
import pathlib
from collections.abc import Mapping, Sequence

import pandas as pd

from keras_takd.core import files
from keras_takd.takd.analysis.tables import (
    SEED_COLUMN,
    UNTARGETED,
    per_image_path,
    predictions_csv_path,
    predictions_path,
    read_per_image,
    read_predictions,
    tidy,
    tidy_predictions,
)
from keras_takd.takd.schema import CHAIN_LENGTH_COLUMN, KEY_COLUMNS

_MODEL_COLUMNS = (*KEY_COLUMNS, "role", CHAIN_LENGTH_COLUMN)


def _model(row: Mapping) -> dict:
    """The model's columns of a per-image or prediction row: its key, role and chain length,
    and its `seed` if the row has one (a run of several seeds)."""
    model = {c: row.get(c) for c in _MODEL_COLUMNS}
    return model | ({SEED_COLUMN: row[SEED_COLUMN]} if SEED_COLUMN in row else {})


def unit_rows(
    row: Mapping, attack: str, unit: Mapping, indicators: Mapping | None = None
) -> list[dict]:
    """The per-image rows of one cached attack unit of the model whose results row is `row`.

    Args:
        row: the model's results row (its key, role and chain length are copied).
        attack: the unit's attack ("l0", "l2", "linf", "l2_softmax_T", an optional one).
        unit: the cached unit: "images" [start, stop) and "per_image" with the block-relative
            "index" of the attacked (correctly classified) images and, per attacked image,
            "success", "distance" and (units written since per-image tables exist) "const".
        indicators: the attack's indicator unit ("index" as above, "flags": indicator name ->
            per attacked image bool, or None if not checked), if computed.

    A targeted attack's unit (JSMA) lists an attacked image once per target, with a "target"
    list beside "index": it gives a row per (image, target) pair (`targeted_rows`).
    """
    start, stop = unit["images"]
    per = unit.get("per_image") or {}
    if "target" in per:
        return targeted_rows(row, attack, unit)
    attacked = {int(i): k for k, i in enumerate(per.get("index", []))}
    constants = per.get("const")
    steps = per.get("iterations")
    model = _model(row)
    flags = {}
    if indicators is not None:
        position = {int(i): k for k, i in enumerate(indicators["index"])}
        for name, values in indicators["flags"].items():
            if values is not None:
                flags[name] = {i: bool(values[k]) for i, k in position.items()}
    rows = []
    for offset in range(stop - start):
        k = attacked.get(offset)
        success = k is not None and bool(per["success"][k])
        rows.append(
            {
                **model,
                "attack": attack,
                "image": start + offset,
                "target": UNTARGETED,
                "correct": k is not None,
                "success": success,
                "distance": float(per["distance"][k]) if success else math.nan,
                "const": float(constants[k]) if k is not None and constants else math.nan,
                "iterations": steps[k] if k is not None and steps else None,
                **{name: flag.get(offset) for name, flag in flags.items()},
            }
        )
    return rows


def targeted_rows(row: Mapping, attack: str, unit: Mapping) -> list[dict]:
    """The per-image rows of a targeted attack's unit: one per (attacked image, target) pair,
    in the unit's order, and one (target -1, not correct) per image of the block not attacked.

    Args:
        row: the model's results row.
        attack: the unit's attack ("jsma").
        unit: the cached unit: "images" [start, stop) and "per_image" with, per pair, the
            block-relative "index" of its image, its "target", "success", "distance", "const"
            and (if recorded) "iterations".
    """
    start, stop = unit["images"]
    per = unit["per_image"]
    model = _model(row) | {"attack": attack}
    steps = per.get("iterations")
    rows = [
        model
        | {"image": start + int(i), "target": int(target), "correct": True}
        | {"success": bool(success), "const": float(per["const"][k])}
        | {"distance": float(per["distance"][k]) if success else math.nan}
        | {"iterations": steps[k] if steps else None}
        for k, (i, target, success) in enumerate(
            zip(per["index"], per["target"], per["success"], strict=True)
        )
    ]
    attacked = {int(i) for i in per["index"]}
    rows += [
        model
        | {"image": start + offset, "target": UNTARGETED, "correct": False, "success": False}
        | {"distance": math.nan, "const": math.nan, "iterations": None}
        for offset in range(stop - start)
        if offset not in attacked
    ]
    return rows


def write_per_image(results_path: str | pathlib.Path, rows: Sequence[dict]) -> pd.DataFrame:
    """Writes the per-image table of a results CSV beside it, atomically."""
    table = tidy(rows)
    files.write_csv_atomic(per_image_path(results_path), table)
    return table


def prediction_rows(row: Mapping, unit: Mapping, labels: Sequence[int]) -> list[dict]:
    """The prediction rows of one model's metrics unit (`schema.PREDICTION_COLUMNS`).

    Args:
        row: the model's results row (its key, role and chain length are copied).
        unit: its cached metrics unit: "images" [0, stop) and "predictions" (one class per
            image).
        labels: the true classes of the test images (at least `stop` of them).
    """
    start, stop = unit["images"]
    model = _model(row)
    return [
        model | {"image": image, "label": int(labels[image]), "prediction": int(prediction)}
        for image, prediction in zip(range(start, stop), unit["predictions"], strict=True)
    ]


def write_predictions(results_path: str | pathlib.Path, rows: Sequence[dict]) -> None:
    """Writes the predictions of a results CSV beside it as plain CSV (`predictions_csv_path`),
    atomically; nothing when there are none (no metrics unit finished yet, or a shard other
    than 0)."""
    if rows:
        files.write_csv_atomic(predictions_csv_path(results_path), tidy_predictions(rows))


def merge_per_image(results_paths: Sequence[str | pathlib.Path]) -> pd.DataFrame | None:
    """The per-image tables beside the shard CSVs, concatenated; None if any is missing."""
    paths = [per_image_path(p) for p in results_paths]
    if not all(p.is_file() for p in paths):
        return None
    return tidy(pd.concat([read_per_image(p) for p in paths], ignore_index=True))


def merge_predictions(
    results_paths: Sequence[str | pathlib.Path], output: str | pathlib.Path
) -> pathlib.Path | None:
    """Writes the predictions beside the shard CSVs (shard 0's: it computes the metrics)
    beside the merged results CSV `output`; returns where, or None if no shard has any.

    Shards of earlier versions each wrote every model's predictions: identical copies are
    taken once, and copies that differ are refused like any duplicate (`read_predictions`).
    """
    paths = [p for p in map(predictions_path, results_paths) if p.is_file()]
    if not paths:
        return None
    distinct = {p.read_bytes(): p for p in paths}
    write_predictions(output, read_predictions(list(distinct.values())).to_dict("records"))
    return predictions_csv_path(output)
