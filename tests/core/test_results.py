"""Tests for keras_takd.core.results: run folders keep what they record."""

import json
import sys

import pytest

from keras_takd.core import results

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
