"""Run folders (keras_takd.core.results): files read only if regular, no link out of the run."""

import os

import pandas as pd
import pytest

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
