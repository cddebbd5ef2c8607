"""A run's record: one SQLite file, `<run>/record.sqlite`, written by one process at a time.

The record is the run's source of truth; results.csv and per_image.csv are exports of it,
regenerated after each write and never read back by training or evaluation. Its tables:

    models            one trained model per (dataset, temperature, seed, stage): training's columns
    evaluations       an evaluation's id and identity (JSON) and when it last wrote
    units             one finished unit of an evaluation (a model's metrics, or an attack on a
                      block of its images), with the identities it was computed for (weights,
                      architecture, test set, code, settings) and its payload (JSON); written
                      one transaction per unit by the process that runs the evaluation
    model_evaluation  an evaluation's columns of one model's results row (JSON)
    per_image         typed per-image rows of an evaluation (success, distance, ...), one per
                      (model, attack, image, target), target -1 but for targeted attacks

Columns are typed, keys are primary keys (a duplicate key is impossible) and CHECK constraints
refuse impossible values (a stage below 1, a negative distance, a success that is not 0 or 1).
Writing takes `<run>/record.lock` (`keras_takd.core.locking`, waiting while another writer holds
it) and is one transaction; readers open the file read-only. TensorFlow-free.
"""

from __future__ import annotations

import contextlib
import json
import pathlib
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence

from keras_takd.core import locking

RECORD = "record.sqlite"
RECORD_LOCK = "record.lock"
MODEL_KEY: tuple[str, ...] = ("dataset", "temperature", "seed", "stage")
"""The columns that identify a model in the record."""
MODEL_COLUMNS: tuple[str, ...] = MODEL_KEY + (
    "role",
    "stages",
    "test_accuracy",
    "val_accuracy",
    "train_seconds",
    "epochs",
    "saved_model",
    "keras_model",
)
"""The record's columns of a trained model (training's columns of results.csv, and its seed)."""
PER_IMAGE_COLUMNS: tuple[str, ...] = (
    "correct",
    "success",
    "distance",
    "const",
    "iterations",
)
"""The typed per-image columns besides the key (model, attack, image) and the flags."""
UNIT_IDENTITIES: tuple[str, ...] = (
    "weights_sha256",
    "architecture_sha256",
    "test_set_sha256",
    "code_sha256",
    "settings",
)
"""What a stored unit was computed for; it is reused only when all of them match."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS models (
    dataset TEXT NOT NULL CHECK (dataset <> ''),
    temperature REAL NOT NULL CHECK (temperature > 0),
    seed INTEGER NOT NULL,
    stage INTEGER NOT NULL CHECK (stage >= 1),
    role TEXT NOT NULL,
    stages INTEGER NOT NULL CHECK (stages >= stage),
    test_accuracy REAL CHECK (test_accuracy BETWEEN 0 AND 1),
    val_accuracy REAL CHECK (val_accuracy BETWEEN 0 AND 1 OR val_accuracy IS NULL),
    train_seconds REAL CHECK (train_seconds >= 0),
    epochs INTEGER CHECK (epochs >= 0),
    saved_model TEXT,
    keras_model TEXT NOT NULL,
    PRIMARY KEY (dataset, temperature, seed, stage)
) STRICT;
CREATE TABLE IF NOT EXISTS evaluations (
    evaluation TEXT PRIMARY KEY,
    identity TEXT NOT NULL CHECK (json_valid(identity)),
    written REAL NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS units (
    evaluation TEXT NOT NULL REFERENCES evaluations (evaluation),
    dataset TEXT NOT NULL,
    temperature REAL NOT NULL,
    seed INTEGER NOT NULL,
    stage INTEGER NOT NULL,
    kind TEXT NOT NULL,
    first_image INTEGER NOT NULL CHECK (first_image >= 0),
    stop_image INTEGER NOT NULL CHECK (stop_image >= first_image),
    weights_sha256 TEXT NOT NULL,
    architecture_sha256 TEXT NOT NULL,
    test_set_sha256 TEXT NOT NULL,
    code_sha256 TEXT NOT NULL,
    settings TEXT NOT NULL CHECK (json_valid(settings)),
    payload TEXT NOT NULL,  -- Python's JSON: a statistic may be NaN
    PRIMARY KEY (evaluation, dataset, temperature, seed, stage, kind, first_image, stop_image)
) STRICT;
CREATE TABLE IF NOT EXISTS model_evaluation (
    evaluation TEXT NOT NULL REFERENCES evaluations (evaluation),
    dataset TEXT NOT NULL,
    temperature REAL NOT NULL,
    seed INTEGER NOT NULL,
    stage INTEGER NOT NULL,
    columns TEXT NOT NULL CHECK (json_valid(columns)),
    PRIMARY KEY (evaluation, dataset, temperature, seed, stage)
) STRICT;
"""
# The target of a targeted attack's row (JSMA: a row per image and wrong class), -1 otherwise.
_PER_IMAGE_TABLE = """
CREATE TABLE IF NOT EXISTS per_image (
    evaluation TEXT NOT NULL REFERENCES evaluations (evaluation),
    dataset TEXT NOT NULL,
    temperature REAL NOT NULL,
    seed INTEGER NOT NULL,
    stage INTEGER NOT NULL,
    attack TEXT NOT NULL,
    image INTEGER NOT NULL CHECK (image >= 0),
    target INTEGER NOT NULL DEFAULT -1 CHECK (target >= -1),
    correct INTEGER NOT NULL CHECK (correct IN (0, 1)),
    success INTEGER NOT NULL CHECK (success IN (0, 1) AND success <= correct),
    distance REAL CHECK (distance >= 0 OR distance IS NULL),
    const REAL,
    iterations INTEGER CHECK (iterations >= 0 OR iterations IS NULL),
    flags TEXT NOT NULL CHECK (json_valid(flags)),
    PRIMARY KEY (evaluation, dataset, temperature, seed, stage, attack, image, target)
) STRICT
"""
UNTARGETED = -1


def record_path(folder: str | pathlib.Path) -> pathlib.Path:
    """The record file of the run folder `folder`."""
    return pathlib.Path(folder) / RECORD


@contextlib.contextmanager
def writing(folder: str | pathlib.Path, timeout: float = 600.0) -> Iterator[sqlite3.Connection]:
    """One write transaction on the run's record, holding its lock.

    Creates the record (and its schema) if missing. Waits up to `timeout` seconds while
    another process writes; everything written in the block commits together or not at all.

    Args:
        folder: the run folder (it must exist).
        timeout: seconds to wait for another writer.

    Yields:
        The connection, inside its transaction.

    Raises:
        FolderInUseError: another process held the record's lock for `timeout` seconds.
        sqlite3.IntegrityError: a row breaks a key or a CHECK constraint (nothing is written).
    """
    folder = pathlib.Path(folder)
    with _record_lock(folder, timeout):
        connection = sqlite3.connect(record_path(folder), isolation_level="DEFERRED")
        try:
            _migrate(connection)
            connection.executescript(_SCHEMA)
            _per_image_table(connection)
            with connection:
                yield connection
        finally:
            connection.close()


def _migrate(connection: sqlite3.Connection) -> None:
    """Drops a `units` table of the first schema (keyed without `stop_image`), which no
    release wrote a row to, so the schema creates it anew."""
    columns = connection.execute("SELECT name, pk FROM pragma_table_info('units')").fetchall()
    if columns and dict(columns).get("stop_image") == 0:
        if connection.execute("SELECT count(*) FROM units").fetchone()[0]:
            raise ValueError(
                "record.sqlite holds units keyed without their last image: written by an "
                "unreleased version; delete its units table"
            )
        connection.execute("DROP TABLE units")


def _per_image_table(connection: sqlite3.Connection) -> None:
    """Creates the per-image table, or adds the target column (-1) to the key of a record
    written before targeted attacks' rows, in one transaction."""
    columns = [row[1] for row in connection.execute("PRAGMA table_info(per_image)")]
    if not columns:
        connection.execute(_PER_IMAGE_TABLE)
    elif "target" not in columns:
        names = ", ".join(columns)
        with connection:
            connection.execute("BEGIN")  # DDL opens no transaction of its own
            connection.execute("ALTER TABLE per_image RENAME TO per_image_untargeted")
            connection.execute(_PER_IMAGE_TABLE)
            connection.execute(
                f"INSERT INTO per_image ({names}) SELECT {names} FROM per_image_untargeted"
            )
            connection.execute("DROP TABLE per_image_untargeted")


@contextlib.contextmanager
def _record_lock(folder: pathlib.Path, timeout: float) -> Iterator[None]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with locking.hold_lock(folder / RECORD_LOCK):
                yield
            return
        except locking.FolderInUseError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@contextlib.contextmanager
def reading(folder: str | pathlib.Path) -> Iterator[sqlite3.Connection | None]:
    """The run's record opened read-only, or None if the run has none yet.

    A writer killed inside its transaction leaves a hot journal that a read-only connection
    cannot roll back; the reader then rolls it back itself, holding the writers' lock (so no
    live writer's journal is touched), and reads the record as it was before that
    transaction.
    """
    folder = pathlib.Path(folder)
    path = record_path(folder)
    if not path.is_file():
        yield None
        return
    if pathlib.Path(f"{path}-journal").exists():
        _roll_back_killed_writer(folder)
    connection = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
    connection.row_factory = sqlite3.Row
    try:
        yield connection
    finally:
        connection.close()


def _roll_back_killed_writer(folder: pathlib.Path, timeout: float = 600.0) -> None:
    with _record_lock(folder, timeout):
        connection = sqlite3.connect(record_path(folder))
        try:
            connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            connection.close()


def put_models(connection: sqlite3.Connection, rows: Sequence[Mapping]) -> None:
    """Inserts or replaces model rows (each with every `MODEL_COLUMNS` key)."""
    names = ", ".join(MODEL_COLUMNS)
    marks = ", ".join("?" for _ in MODEL_COLUMNS)
    connection.executemany(
        f"INSERT OR REPLACE INTO models ({names}) VALUES ({marks})",
        [tuple(plain(row.get(c)) for c in MODEL_COLUMNS) for row in rows],
    )


def plain(value):
    """A value SQLite can hold: NumPy scalars as Python numbers, NaN as NULL."""
    value = value.item() if hasattr(value, "item") else value
    return None if isinstance(value, float) and value != value else value


def models(folder: str | pathlib.Path) -> list[dict]:
    """The run's model rows in key order (none if the run has no record)."""
    with reading(folder) as connection:
        if connection is None:
            return []
        order = ", ".join(MODEL_KEY)
        return [dict(r) for r in connection.execute(f"SELECT * FROM models ORDER BY {order}")]


def put_evaluation(connection: sqlite3.Connection, evaluation: str, identity: Mapping) -> None:
    """Records an evaluation's identity and marks it as the latest written."""
    connection.execute(
        "INSERT INTO evaluations VALUES (?, ?, ?) ON CONFLICT (evaluation) DO UPDATE SET "
        "identity = excluded.identity, written = excluded.written",
        (evaluation, json.dumps(identity, sort_keys=True), time.time()),
    )


def evaluations(folder: str | pathlib.Path) -> dict[str, dict]:
    """{evaluation id: identity} of every evaluation in the run's record (none if no record)."""
    with reading(folder) as connection:
        if connection is None:
            return {}
        found = connection.execute("SELECT evaluation, identity FROM evaluations")
        return {evaluation: json.loads(value) for evaluation, value in found}


def latest_evaluation(connection: sqlite3.Connection) -> str | None:
    """The id of the evaluation that wrote its rows last, or None (one that has stored only
    units so far, e.g. a shard's, does not count)."""
    row = connection.execute(
        "SELECT evaluation FROM evaluations WHERE written > 0 ORDER BY written DESC LIMIT 1"
    ).fetchone()
    return None if row is None else row[0]


def put_evaluation_rows(
    connection: sqlite3.Connection,
    evaluation: str,
    columns: Sequence[Mapping],
    per_image: Sequence[Mapping],
) -> None:
    """Replaces an evaluation's columns of each model and its per-image rows.

    Args:
        connection: a connection of `writing`, the evaluation already recorded
            (`put_evaluation`).
        evaluation: the evaluation's id.
        columns: per model, its `MODEL_KEY` and the evaluation's columns of its results row.
        per_image: per model, attack and image, its `MODEL_KEY`, "attack", "image", the
            "target" of a targeted attack's row (absent: -1), the `PER_IMAGE_COLUMNS` and any
            indicator flags (name -> bool or None).
    """
    for table in ("model_evaluation", "per_image"):
        connection.execute(f"DELETE FROM {table} WHERE evaluation = ?", (evaluation,))
    key = len(MODEL_KEY)
    connection.executemany(
        f"INSERT INTO model_evaluation VALUES (?, {', '.join('?' * key)}, ?)",
        [
            (evaluation, *(plain(row[c]) for c in MODEL_KEY), _json(row, MODEL_KEY))
            for row in columns
        ],
    )
    typed = (*MODEL_KEY, "attack", "image", "target", *PER_IMAGE_COLUMNS)
    names = ", ".join(("evaluation", *typed, "flags"))
    connection.executemany(
        f"INSERT INTO per_image ({names}) VALUES (?, {', '.join('?' * len(typed))}, ?)",
        [
            (evaluation, *(plain(row.get(c)) for c in typed), _json(row, typed))
            for row in ({"target": UNTARGETED} | dict(r) for r in per_image)
        ],
    )


def _json(row: Mapping, without: Sequence[str]) -> str:
    return json.dumps({k: plain(v) for k, v in row.items() if k not in without}, sort_keys=True)


UNIT_KEY: tuple[str, ...] = (*MODEL_KEY, "kind", "first_image", "stop_image")
"""The columns that identify a unit within an evaluation."""


def put_unit(
    connection: sqlite3.Connection,
    evaluation: str,
    identity: Mapping,
    unit: Mapping,
    payload: Mapping,
) -> None:
    """Inserts or replaces one finished unit of an evaluation.

    Args:
        connection: a connection of `writing`.
        evaluation: the evaluation's id; recorded (with `identity`) if it is not yet, without
            making it the latest written (`latest_evaluation`).
        identity: the evaluation's identity.
        unit: its `UNIT_KEY` and `UNIT_IDENTITIES` (settings as a mapping).
        payload: what the unit computed.
    """
    connection.execute(
        "INSERT INTO evaluations VALUES (?, ?, 0) ON CONFLICT (evaluation) DO NOTHING",
        (evaluation, json.dumps(identity, sort_keys=True)),
    )
    names = (*UNIT_KEY, *UNIT_IDENTITIES)
    values = [plain(unit[c]) for c in names[:-1]] + [json.dumps(unit["settings"], sort_keys=True)]
    connection.execute(
        f"INSERT OR REPLACE INTO units (evaluation, {', '.join(names)}, payload) "
        f"VALUES (?, {', '.join('?' * len(names))}, ?)",
        (evaluation, *values, json.dumps(payload, sort_keys=True)),
    )


def units(folder: str | pathlib.Path, evaluation: str) -> list[dict]:
    """The stored units of an evaluation (none if the run has no record).

    Returns:
        One dict per unit: its `UNIT_KEY`, `UNIT_IDENTITIES` (settings decoded) and "payload"
        (decoded).
    """
    with reading(folder) as connection:
        if connection is None:
            return []
        found = connection.execute("SELECT * FROM units WHERE evaluation = ?", (evaluation,))
        rows = [dict(row) for row in found]
    for row in rows:
        row["settings"], row["payload"] = json.loads(row["settings"]), json.loads(row["payload"])
    return rows
