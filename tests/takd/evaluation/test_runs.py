"""A run as evaluation reads it: checked key columns, paths confined to the run folder, no
foreign columns, corrupt models named, and one process per evaluation shard."""

import json
import os
import shutil
import sqlite3

import pandas as pd
import pytest

from keras_takd.core import record
from keras_takd.core.locking import FolderInUseError, lock_run_folder
from keras_takd.takd import evaluation


def _fake_run(root, rows: str):
    """A folder that passes as a run of MNIST, with `rows` after results.csv's header."""
    run = root / "run"
    run.mkdir()
    configuration = {"data": {"dataset": "mnist", "test_images": 64}}
    (run / "run.json").write_text(json.dumps({"configuration": configuration}))
    (run / "results.csv").write_text(f"dataset,temperature,stage,role\n{rows}\n")
    return run


@pytest.mark.parametrize(
    "row, problem",
    [
        ("{elsewhere},5,1,teacher", "row 1 has dataset '{elsewhere}', expected this run's 'mnist'"),
        ("../elsewhere,5,1,teacher", "row 1 has dataset '../elsewhere', expected"),
        ("mnist,-1,1,teacher", "row 1 has temperature -1, expected a finite number > 0"),
        ("mnist,nan,1,teacher", "has temperature nan, expected a finite number > 0"),
        ("mnist,inf,1,teacher", "has temperature inf, expected a finite number > 0"),
        ("mnist,hot,1,teacher", "has temperature 'hot', expected a finite number > 0"),
        ("mnist,5,0,teacher", "row 1 has stage 0, expected an integer >= 1"),
        ("mnist,5,1.5,teacher", "has stage 1.5, expected an integer >= 1"),
        ("mnist,5,1,teacher\nmnist,5,x,student", "row 2 has stage 'x', expected an integer >= 1"),
    ],
)
def test_key_columns_are_checked_before_any_path_is_built(tmp_path, row, problem):
    elsewhere = str(tmp_path / "elsewhere")
    run = _fake_run(tmp_path, row.format(elsewhere=elsewhere))
    with pytest.raises(ValueError) as refused:
        evaluation.read_run(run)
    assert str(refused.value).startswith(f"{run}/results.csv ")
    assert problem.format(elsewhere=elsewhere) in str(refused.value)


def test_foreign_columns_in_the_runs_own_results_are_refused(tmp_path):
    run = _fake_run(tmp_path, "mnist,5,1,teacher")
    table = pd.read_csv(run / "results.csv").assign(loss=0.3)
    table.to_csv(run / "results.csv", index=False)
    with pytest.raises(ValueError, match=r"results.csv has foreign columns \['loss'\]: not a"):
        evaluation.read_run(run)


@pytest.mark.parametrize("name", ["run.json", "results.csv"])
def test_a_run_file_that_is_a_fifo_is_refused_at_once(tmp_path, name, no_hang):
    run = _fake_run(tmp_path, "mnist,5,1,teacher")
    (run / name).unlink()
    os.mkfifo(run / name)
    with no_hang(), pytest.raises(OSError, match=f"^{run / name} is a FIFO, expected a regular"):
        evaluation.read_run(run)


def _metrics_only(run_dir, data):
    """An evaluation without attacks: the attack-free metrics are a unit, stored in the record."""
    config = evaluation.EvaluationConfig(attacks=(), num_images=4, gradient_masking=False)
    return evaluation.evaluate_run(run_dir, data, config)


@pytest.mark.parametrize("where", ["absolute", "relative"])
def test_a_forged_dataset_value_cannot_read_or_write_outside_the_run(tiny_run, where):
    run_dir, data = tiny_run
    elsewhere = run_dir.parent / "elsewhere"
    shutil.copytree(run_dir / "mnist", elsewhere)  # models a forged row would point at
    before = sorted(elsewhere.rglob("*"))
    forged = str(elsewhere) if where == "absolute" else "../elsewhere"
    with sqlite3.connect(run_dir / record.RECORD) as connection:  # the run's models
        connection.execute("UPDATE models SET dataset = ?", (forged,))
    with pytest.raises(ValueError, match="row 1 has dataset .*, expected this run's 'mnist'"):
        _metrics_only(run_dir, data)
    assert sorted(elsewhere.rglob("*")) == before
    assert not (run_dir / "eval").exists()


def test_a_model_folder_linked_outside_the_run_is_refused(tiny_run):
    run_dir, data = tiny_run
    elsewhere = run_dir.parent / "elsewhere"
    shutil.move(run_dir / "mnist", elsewhere)
    (run_dir / "mnist").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(ValueError, match=f"resolves to {elsewhere}/T5/stage1/model.keras, outside"):
        _metrics_only(run_dir, data)


def test_a_unit_cache_linked_outside_the_run_is_refused(tiny_run):
    run_dir, data = tiny_run
    elsewhere = run_dir.parent / "elsewhere"
    elsewhere.mkdir()
    (run_dir / "eval").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(ValueError, match=f"resolves to {elsewhere}, outside the run folder"):
        _metrics_only(run_dir, data)
    assert not list(elsewhere.rglob("*"))


def test_an_evaluation_folder_linked_outside_the_run_is_refused(tiny_run):
    """eval/ itself in the run, but eval/<id> a link out of it: its config.json is not written."""
    run_dir, data = tiny_run
    elsewhere = run_dir.parent / "elsewhere"
    elsewhere.mkdir()
    _metrics_only(run_dir, data)
    (cache,) = (run_dir / "eval").iterdir()
    shutil.rmtree(cache)
    cache.symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(ValueError, match=f"resolves to {elsewhere}, outside the run folder"):
        _metrics_only(run_dir, data)
    assert not list(elsewhere.rglob("*"))


def test_a_corrupt_model_file_is_named_as_corrupt(tiny_run):
    run_dir, data = tiny_run
    model = run_dir / "mnist/T5/stage2/model.keras"
    model.write_bytes(model.read_bytes()[:1000])
    with pytest.raises(ValueError, match=f"model file {model} is corrupt"):
        _metrics_only(run_dir, data)


def test_shards_run_side_by_side_but_not_twice_nor_beside_a_training(tmp_path):
    from keras_takd.takd.evaluation.runs import lock_evaluation

    run = evaluation.read_run(_fake_run(tmp_path, "mnist,5,1,teacher"))
    with lock_evaluation(run, 0, 2), lock_evaluation(run, 1, 2):
        with pytest.raises(FolderInUseError, match="evaluate_shard1of2.lock is locked"):
            with lock_evaluation(run, 1, 2):
                pass
        with pytest.raises(FolderInUseError, match="run.lock is locked"):
            with lock_run_folder(run.output_dir):
                pass
    with lock_run_folder(run.output_dir):
        with pytest.raises(FolderInUseError, match="run.lock is locked"):
            with lock_evaluation(run):
                pass


def test_the_cli_refuses_a_folder_in_use_at_once_naming_the_holder(
    cli, tmp_path, held_by_another_process
):
    run = _fake_run(tmp_path, "mnist,5,1,teacher")
    with held_by_another_process(run, "evaluate.lock") as pid:
        done = cli("keras_takd.takd.evaluate", f"--output_dir={run}")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"keras-takd-evaluate: error: {run} is in use by process {pid} (evaluate.lock is "
        "locked): wait for it to finish, or use another output_dir"
    ]
