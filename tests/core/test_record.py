"""The run record: typed, keyed, one writer at a time, read-only readers."""

import sqlite3
import subprocess
import sys
import textwrap

import pytest

from keras_takd.core import locking, record

ROW = {
    "dataset": "mnist",
    "temperature": 5.0,
    "seed": 0,
    "stage": 1,
    "role": "teacher",
    "stages": 2,
    "test_accuracy": 0.9,
    "val_accuracy": 0.8,
    "train_seconds": 1.0,
    "epochs": 1,
    "saved_model": "m/saved_model",
    "keras_model": "m/model.keras",
}


def _per_image(**changes):
    row = dict(
        evaluation="e",
        dataset="mnist",
        temperature=5.0,
        seed=0,
        stage=1,
        attack="l2",
        image=0,
        correct=1,
        success=1,
        distance=0.5,
        const=None,
        iterations=None,
        flags="{}",
    )
    return row | changes


def _put_per_image(connection, row):
    names = ", ".join(row)
    marks = ", ".join("?" for _ in row)
    connection.execute(f"INSERT INTO per_image ({names}) VALUES ({marks})", tuple(row.values()))


def test_models_upsert_by_key_and_read_back_typed(tmp_path):
    with record.writing(tmp_path) as connection:
        record.put_models(connection, [ROW, ROW | {"stage": 2, "role": "student"}])
    with record.writing(tmp_path) as connection:
        record.put_models(connection, [ROW | {"test_accuracy": 0.5}])
    rows = record.models(tmp_path)
    assert [(r["stage"], r["test_accuracy"]) for r in rows] == [(1, 0.5), (2, 0.9)]
    assert isinstance(rows[0]["stage"], int) and isinstance(rows[0]["temperature"], float)


@pytest.mark.parametrize(
    "changes", [{"stage": 0}, {"stages": 0}, {"test_accuracy": 1.5}, {"temperature": "five"}]
)
def test_impossible_model_rows_are_refused_and_nothing_is_written(tmp_path, changes):
    with pytest.raises(sqlite3.IntegrityError), record.writing(tmp_path) as connection:
        record.put_models(connection, [ROW | {"stage": 3, "stages": 3}, ROW | changes])
    assert record.models(tmp_path) == []  # the transaction wrote neither row


@pytest.mark.parametrize(
    "changes", [{"success": 2}, {"distance": -1.0}, {"correct": 0, "success": 1}, {"image": -1}]
)
def test_impossible_per_image_rows_are_refused(tmp_path, changes):
    with pytest.raises(sqlite3.IntegrityError), record.writing(tmp_path) as connection:
        record.put_evaluation(connection, "e", {})
        _put_per_image(connection, _per_image(**changes))


def test_a_duplicate_per_image_key_is_impossible(tmp_path):
    with pytest.raises(sqlite3.IntegrityError), record.writing(tmp_path) as connection:
        record.put_evaluation(connection, "e", {})
        _put_per_image(connection, _per_image())
        _put_per_image(connection, _per_image(distance=0.25))


def test_a_targeted_attack_has_a_row_per_image_and_target(tmp_path):
    rows = [
        {
            k: v
            for k, v in _per_image(attack=a, target=t).items()
            if k not in ("evaluation", "flags")
        }
        for a, t in (("jsma", 3), ("jsma", 7), ("l2", None))
    ]
    rows[-1].pop("target")  # an untargeted attack's row: target -1
    with record.writing(tmp_path) as connection:
        record.put_evaluation(connection, "e", {})
        record.put_evaluation_rows(connection, "e", [], rows)
    with pytest.raises(sqlite3.IntegrityError), record.writing(tmp_path) as connection:
        _put_per_image(connection, _per_image(attack="jsma", target=-2))
    with record.reading(tmp_path) as connection:
        found = connection.execute("SELECT attack, target FROM per_image ORDER BY attack, target")
        assert [tuple(r) for r in found] == [("jsma", 3), ("jsma", 7), ("l2", -1)]


def test_a_record_from_before_targets_gets_the_column_and_keeps_its_rows(tmp_path):
    with record.writing(tmp_path) as connection:
        record.put_evaluation(connection, "e", {})
    with sqlite3.connect(record.record_path(tmp_path)) as connection:  # as records were
        connection.execute("DROP TABLE per_image")
        connection.execute(
            "CREATE TABLE per_image (evaluation TEXT NOT NULL, dataset TEXT NOT NULL, "
            "temperature REAL NOT NULL, seed INTEGER NOT NULL, stage INTEGER NOT NULL, "
            "attack TEXT NOT NULL, image INTEGER NOT NULL, correct INTEGER NOT NULL, "
            "success INTEGER NOT NULL, distance REAL, const REAL, iterations INTEGER, "
            "flags TEXT NOT NULL, PRIMARY KEY (evaluation, dataset, temperature, seed, stage, "
            "attack, image)) STRICT"
        )
        _put_per_image(connection, _per_image())
    with record.writing(tmp_path) as connection:
        _put_per_image(connection, _per_image(attack="jsma", target=4))
    with record.reading(tmp_path) as connection:
        found = connection.execute("SELECT attack, image, target, distance FROM per_image")
        assert sorted(tuple(r) for r in found) == [("jsma", 0, 4, 0.5), ("l2", 0, -1, 0.5)]


def test_readers_cannot_write(tmp_path):
    with record.writing(tmp_path) as connection:
        record.put_models(connection, [ROW])
    with record.reading(tmp_path) as connection, pytest.raises(sqlite3.OperationalError):
        connection.execute("DELETE FROM models")


def test_a_writer_killed_mid_transaction_leaves_the_record_as_before(tmp_path):
    with record.writing(tmp_path) as connection:
        record.put_models(connection, [ROW])
    killed_writer = textwrap.dedent(f"""
        import os, signal
        from keras_takd.core import record
        row = {ROW!r}
        with record.writing({str(tmp_path)!r}) as connection:
            connection.execute("PRAGMA cache_size = 1")  # spill pages into the file
            record.put_models(connection, [
                dict(row, stage=stage, stages=4000, keras_model="x" * 200)
                for stage in range(2, 4000)
            ])
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    subprocess.run([sys.executable, "-c", killed_writer], check=False)
    assert (tmp_path / f"{record.RECORD}-journal").exists()  # a hot journal was left
    assert record.models(tmp_path) == [ROW]


def test_a_run_without_record_has_no_models(tmp_path):
    assert record.models(tmp_path) == []
    assert not record.record_path(tmp_path).exists()  # reading creates nothing


def test_writing_waits_for_the_other_writer_then_gives_up(tmp_path, held_by_another_process):
    with held_by_another_process(tmp_path, record.RECORD_LOCK):
        with pytest.raises(locking.FolderInUseError), record.writing(tmp_path, timeout=0.2):
            pass


UNIT = {
    "dataset": "mnist",
    "temperature": 5.0,
    "seed": 0,
    "stage": 1,
    "kind": "l2",
    "first_image": 0,
    "stop_image": 4,
    "weights_sha256": "a" * 64,
    "architecture_sha256": "b" * 64,
    "test_set_sha256": "c" * 64,
    "code_sha256": "d" * 64,
    "settings": {"options": {"max_iterations": 10}},
}


def test_a_unit_is_stored_with_its_identities_and_a_nan_payload(tmp_path):
    with record.writing(tmp_path) as connection:
        record.put_unit(connection, "e", {"n": 4}, UNIT, {"max": float("nan")})
        record.put_unit(connection, "e", {"n": 4}, UNIT | {"stop_image": 2}, {"max": 1.0})
    units = sorted(record.units(tmp_path, "e"), key=lambda u: u["stop_image"])
    assert [u["stop_image"] for u in units] == [2, 4]  # a shard's block beside the whole
    assert units[1] | {"payload": None} == UNIT | {"evaluation": "e", "payload": None}
    assert units[1]["payload"]["max"] != units[1]["payload"]["max"]  # NaN
    assert record.units(tmp_path, "other") == []
    assert record.evaluations(tmp_path) == {"e": {"n": 4}}


def test_an_evaluation_that_stored_only_units_is_not_the_latest(tmp_path):
    with record.writing(tmp_path) as connection:
        record.put_evaluation(connection, "whole", {})
        record.put_unit(connection, "shard", {}, UNIT, {})  # e.g. a shard's evaluation
    with record.reading(tmp_path) as connection:
        assert record.latest_evaluation(connection) == "whole"


def test_an_empty_units_table_of_the_first_schema_is_made_anew(tmp_path):
    with sqlite3.connect(record.record_path(tmp_path)) as connection:
        connection.execute(
            "CREATE TABLE units (evaluation TEXT, dataset TEXT, temperature REAL, seed INTEGER, "
            "stage INTEGER, kind TEXT, first_image INTEGER, stop_image INTEGER, "
            "PRIMARY KEY (evaluation, dataset, temperature, seed, stage, kind, first_image))"
        )
    with record.writing(tmp_path) as connection:
        record.put_unit(connection, "e", {}, UNIT, {})
        record.put_unit(connection, "e", {}, UNIT | {"stop_image": 2}, {})
    assert len(record.units(tmp_path, "e")) == 2
