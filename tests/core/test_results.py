"""Run folders (keras_takd.core.results): files read only if regular, no link out of the run,
and what run.json records is kept."""

import json
import os
import sys

import pandas as pd
import pytest

from keras_takd.core import record, results
from keras_takd.core.files import NotRegularFileError
from keras_takd.core.results import prepare_run_dir, update_results

CONFIGURATION = {"data": {"dataset": "mnist"}}


def test_a_results_csv_that_is_a_fifo_is_refused_at_once(tmp_path, no_hang):
    os.mkfifo(tmp_path / "results.csv")
    rows = [{"dataset": "mnist", "temperature": 5.0, "stage": 1}]
    with no_hang(), pytest.raises(NotRegularFileError, match="results.csv is a FIFO, expected"):
        update_results(tmp_path / "results.csv", rows, key=("dataset", "temperature", "stage"))


def test_a_run_folder_with_a_link_out_of_it_is_refused_before_anything_is_written(tmp_path):
    run, elsewhere = tmp_path / "run", tmp_path / "elsewhere"
    run.mkdir(), elsewhere.mkdir()
    (run / "mnist").symlink_to(elsewhere, target_is_directory=True)  # a stage would land there
    with pytest.raises(ValueError, match=f"mnist resolves to {elsewhere}, outside the run folder"):
        prepare_run_dir(run, CONFIGURATION)
    assert not (run / "run.json").exists()


def test_links_that_stay_inside_the_run_folder_are_kept(tmp_path):
    run = tmp_path / "run"
    (run / "mnist" / "T5").mkdir(parents=True)
    (run / "latest").symlink_to(run / "mnist" / "T5", target_is_directory=True)
    prepare_run_dir(run, CONFIGURATION)
    pd.testing.assert_frame_equal(
        update_results(run / "results.csv", [{"dataset": "mnist", "stage": 1}], key=["stage"]),
        pd.DataFrame({"dataset": ["mnist"], "stage": [1]}),
    )


CONFIG = {"train": {"epochs": 1}, "data": {"dataset": "mnist"}}
COMMAND_INFO = {"flags": {"data_dir": "/data", "epochs": 1}, "data_source": "mnist.npz"}


def _run_json(folder):
    return json.loads((folder / "run.json").read_text())


def test_a_call_without_run_info_keeps_what_a_command_recorded(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["keras-takd-train", "--epochs=1"])
    results.prepare_run_dir(tmp_path, CONFIG, COMMAND_INFO)
    monkeypatch.setattr(sys, "argv", ["python", "-c"])
    results.prepare_run_dir(tmp_path, CONFIG)
    recorded = _run_json(tmp_path)
    assert recorded["run_info"] == COMMAND_INFO
    assert recorded["argv"] == ["keras-takd-train", "--epochs=1"]


def test_a_call_with_run_info_records_its_own_over_the_old(tmp_path, monkeypatch):
    results.prepare_run_dir(tmp_path, CONFIG, COMMAND_INFO)
    monkeypatch.setattr(sys, "argv", ["keras-takd-train", "--epochs=1", "--data_dir=/other"])
    results.prepare_run_dir(tmp_path, CONFIG, {"flags": {"data_dir": "/other"}})
    recorded = _run_json(tmp_path)
    assert recorded["run_info"] == {"flags": {"data_dir": "/other"}, "data_source": "mnist.npz"}
    assert recorded["argv"][-1] == "--data_dir=/other"


def test_a_new_folder_records_the_call(tmp_path):
    results.prepare_run_dir(tmp_path, CONFIG)
    recorded = _run_json(tmp_path)
    assert recorded["run_info"] == {}
    assert recorded["configuration"] == CONFIG
    assert recorded["argv"] == sys.argv


@pytest.mark.parametrize("text", ["not json", "[1, 2]", '{"run_info": {}}'])
def test_a_foreign_run_json_is_refused(tmp_path, text):
    (tmp_path / "run.json").write_text(text)
    with pytest.raises(results.ConfigMismatchError, match="not a keras_takd run.json"):
        results.prepare_run_dir(tmp_path, CONFIG)


def test_another_configuration_is_refused(tmp_path):
    results.prepare_run_dir(tmp_path, CONFIG)
    with pytest.raises(results.ConfigMismatchError, match="epochs=1"):
        results.prepare_run_dir(tmp_path, {**CONFIG, "train": {"epochs": 2}})


def test_a_run_that_holds_results_is_not_given_a_declaration_after_the_fact(tmp_path):
    """A comparison declared once models are trained (and perhaps looked at) is no declaration:
    a folder with results.csv and no recorded declaration refuses one, and keeps its run.json;
    a folder without results (a study that stopped before its first model) may declare."""
    declared = {"primary_comparison": "student-teacher@40", "num_seeds": 10}
    results.prepare_run_dir(tmp_path, CONFIG, {"flags": {"num_seeds": 10}})
    results.prepare_run_dir(tmp_path / "fresh", CONFIG, {"flags": {}})
    results.prepare_run_dir(tmp_path / "fresh", CONFIG, {"flags": {}, "declared": declared})
    assert _run_json(tmp_path / "fresh")["run_info"]["declared"] == declared
    (tmp_path / "results.csv").write_text("dataset,temperature,stage\nmnist,40,1\n")
    before = (tmp_path / "run.json").read_bytes()
    with pytest.raises(results.ConfigMismatchError) as refused:
        results.prepare_run_dir(tmp_path, CONFIG, {"flags": {}, "declared": declared})
    assert "\n" not in str(refused.value)
    assert "holds models trained without a declaration" in str(refused.value)
    assert "primary_comparison='student-teacher@40'" in str(refused.value)
    assert (tmp_path / "run.json").read_bytes() == before


def test_a_run_that_declared_in_its_flags_only_keeps_that_declaration(tmp_path):
    """Runs made before `declared` was kept apart record the declaration in their flags: it
    counts as declared (a resume with the same is accepted and recorded apart; another is
    refused), not as a run without one."""
    flags = {"primary_comparison": "student-teacher@40", "num_seeds": 10}
    results.prepare_run_dir(tmp_path, CONFIG, {"flags": flags})
    (tmp_path / "results.csv").write_text("dataset,temperature,stage\nmnist,40,1\n")
    declared = dict(flags)
    results.check_declaration(tmp_path, {"flags": flags, "declared": declared})
    results.prepare_run_dir(tmp_path, CONFIG, {"flags": flags, "declared": declared})
    assert _run_json(tmp_path)["run_info"]["declared"] == declared
    other = {**declared, "primary_comparison": "student-assistant@40"}
    for call in (results.check_declaration, results.prepare_run_dir):
        args = (
            (tmp_path, {"declared": other})
            if call is results.check_declaration
            else (tmp_path, CONFIG, {"declared": other})
        )
        with pytest.raises(results.ConfigMismatchError, match="records the declaration"):
            call(*args)


def test_a_run_whose_record_holds_models_refuses_a_late_declaration_without_its_export(
    tmp_path,
):
    """The record, not its results.csv export, says a run has trained: a folder whose
    record.sqlite holds a model refuses a first declaration though results.csv is gone."""
    results.prepare_run_dir(tmp_path, CONFIG, {"flags": {}})
    model = {"dataset": "mnist", "temperature": 40.0, "seed": 0, "stage": 1, "stages": 3}
    model |= {"role": "teacher", "keras_model": "mnist/T40/stage1/model.keras"}
    with record.writing(tmp_path) as connection:
        record.put_models(connection, [model])
    assert not (tmp_path / "results.csv").exists()
    declared = {"primary_comparison": "student-teacher@40", "num_seeds": 2}
    with pytest.raises(results.ConfigMismatchError, match="trained without a declaration"):
        results.check_declaration(tmp_path, {"declared": declared})


def test_a_declaration_is_written_once_and_a_different_one_refused(tmp_path):
    """What a study declared before it ran (its primary comparison, for so many seeds) stays
    as declared: later runs may repeat it or bring none, not change it."""
    declared = {"primary_comparison": "student-teacher@40", "num_seeds": 10}
    results.prepare_run_dir(tmp_path, CONFIG, {"flags": {"num_seeds": 10}, "declared": declared})
    results.prepare_run_dir(tmp_path, CONFIG, {"flags": {"num_seeds": 10}, "declared": declared})
    results.prepare_run_dir(tmp_path, CONFIG, {"flags": {"num_seeds": 12}})
    recorded = _run_json(tmp_path)["run_info"]
    assert recorded["declared"] == declared and recorded["flags"] == {"num_seeds": 12}
    fewer = {**declared, "num_seeds": 7}  # looked at after 7, as if 7 had been declared
    with pytest.raises(results.ConfigMismatchError) as refused:
        results.prepare_run_dir(tmp_path, CONFIG, {"flags": {}, "declared": fewer})
    assert "\n" not in str(refused.value)
    assert (
        "records the declaration num_seeds=10, primary_comparison='student-teacher@40', made "
        "before its study ran; this run declares num_seeds=7, primary_comparison="
    ) in str(refused.value)
    assert _run_json(tmp_path)["run_info"]["declared"] == declared
