"""A chain run's results.csv and per_image.csv, exported from its record (`core.record`).

Training and evaluation write the record, then call `export_run`; neither reads the CSVs
back. The results table holds every model's training columns and the columns of the latest
evaluation written to the record; the per-image table that evaluation's rows. TensorFlow-free.
"""

from __future__ import annotations

import json
import pathlib
import sqlite3

import pandas as pd

from keras_takd.core import files, record
from keras_takd.takd.analysis.tables import per_image_path
from keras_takd.takd.analysis.tables import tidy as tidy_per_image
from keras_takd.takd.evaluation.tables import tidy as tidy_results

RESULTS = "results.csv"
_KEY = ", ".join(record.MODEL_KEY)


def export_run(folder: str | pathlib.Path) -> pd.DataFrame:
    """Rewrites `<folder>/results.csv` and its per-image table from the record, atomically.

    Args:
        folder: a run folder with a record.

    Returns:
        The results table written.
    """
    folder = pathlib.Path(folder)
    with record.reading(folder) as connection:
        if connection is None:
            raise FileNotFoundError(f"{record.record_path(folder)} is missing: train first")
        evaluation = record.latest_evaluation(connection)
        rows = _results_rows(connection, evaluation)
        per_image = _per_image_rows(connection, evaluation)
    seeds = {row["seed"] for row in rows}
    if len(seeds) == 1:  # one seed: results.csv keeps its layout without the column
        rows = [{k: v for k, v in row.items() if k != "seed"} for row in rows]
    table = tidy_results(pd.DataFrame(rows), sharded=False)
    files.write_csv_atomic(folder / RESULTS, table)
    if evaluation is not None:
        files.write_csv_atomic(per_image_path(folder / RESULTS), tidy_per_image(per_image))
    return table


def _results_rows(connection: sqlite3.Connection, evaluation: str | None) -> list[dict]:
    models = connection.execute(f"SELECT * FROM models ORDER BY {_KEY}").fetchall()
    columns = {}
    if evaluation is not None:
        query = f"SELECT {_KEY}, columns FROM model_evaluation WHERE evaluation = ?"
        for *key, value in connection.execute(query, (evaluation,)):
            columns[tuple(key)] = json.loads(value)
    rows = []
    for model in models:
        row = dict(model)
        key = tuple(row[c] for c in record.MODEL_KEY)
        rows.append(row | columns.get(key, {}))
    return rows


def _per_image_rows(connection: sqlite3.Connection, evaluation: str | None) -> list[dict]:
    if evaluation is None:
        return []
    query = (
        "SELECT p.*, m.role, m.stages FROM per_image AS p JOIN models AS m "
        "USING (dataset, temperature, seed, stage) WHERE evaluation = ?"
    )
    rows = []
    for found in connection.execute(query, (evaluation,)):
        row = dict(found)
        flags = json.loads(row.pop("flags"))
        for name in ("evaluation", "seed"):
            row.pop(name)
        row["correct"], row["success"] = bool(row["correct"]), bool(row["success"])
        rows.append(row | flags)
    return rows
