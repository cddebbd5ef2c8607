"""A chain run's results.csv and per_image.csv, exported from its record (`core.record`).

Training and evaluation write the record, then call `export_run`; neither reads the CSVs
back. The results table holds every model's training columns and the columns of the latest
evaluation written to the record; the per-image table that evaluation's rows. A run of several
seeds (independent chains, issue 25) gives both tables a `seed` column after `stage`; a run of
one seed keeps them without it. A model whose recorded `keras_model` is gone (a run folder
copied or moved, the original deleted) gets its paths rebuilt in the folder
(`layout.model_paths`). TensorFlow-free.
"""

from __future__ import annotations

import json
import pathlib
import sqlite3

import pandas as pd

from keras_takd.core import files, record
from keras_takd.takd import layout
from keras_takd.takd.analysis.tables import SEED_COLUMN, per_image_path
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
    seeded = _seed_folders(folder, rows)
    rows = _located(folder, rows, seeded)
    table = _tidy_by_seed(tidy_results, rows, seeded, sharded=False)
    files.write_csv_atomic(folder / RESULTS, table)
    if evaluation is not None:
        images = _tidy_by_seed(tidy_per_image, per_image, seeded)
        files.write_csv_atomic(per_image_path(folder / RESULTS), images)
    return table


def _seed_folders(folder: pathlib.Path, rows: list[dict]) -> bool:
    """Whether the run keeps its seeds apart: run.json's `replicates.seed_folders` (a run
    trained with several seeds, even while its record holds one seed's chains), else whether
    the record holds several seeds (a run folder without run.json)."""
    run_json = files.check_regular(folder / "run.json")
    if run_json.is_file():
        return layout.seed_folders(files.read_json(run_json))
    return len({row["seed"] for row in rows}) > 1


def _tidy_by_seed(tidy, rows: list[dict], seeded: bool, **options) -> pd.DataFrame:
    """`tidy(rows without their seed, **options)`; in a run of several seeds (`seeded`),
    tidied seed by seed (in seed order) and given a `seed` column after `stage`, so no two
    seeds' rows mix and every table of the run has the column from its first seed on."""
    if not seeded or not rows:  # one seed: the tables keep their layout without the column
        return tidy(pd.DataFrame(rows).drop(columns=SEED_COLUMN, errors="ignore"), **options)
    frames = []
    for seed, group in pd.DataFrame(rows).groupby(SEED_COLUMN, sort=True):
        frames.append(tidy(group.drop(columns=SEED_COLUMN), **options).assign(seed=seed))
    table = pd.concat(frames, ignore_index=True)
    columns = list(table.columns.drop(SEED_COLUMN))
    columns.insert(columns.index("stage") + 1, SEED_COLUMN)
    return table[columns]


def _located(folder: pathlib.Path, rows: list[dict], seeded: bool) -> list[dict]:
    """The rows, each model whose recorded `keras_model` is gone (the run folder was copied
    or moved, the original deleted) with its paths rebuilt in `folder` (`seeded`: its seeds
    in folders of their own)."""
    return [
        row
        if pathlib.Path(str(row["keras_model"])).exists()
        else row | layout.model_paths(folder, row, seeded)
        for row in rows
    ]


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
        row.pop("evaluation")
        row["correct"], row["success"] = bool(row["correct"]), bool(row["success"])
        rows.append(row | flags)
    return rows
