"""End-to-end tests of `python -m keras_takd.takd.evaluate`, run as a subprocess on a tiny chain."""

import contextlib
import json
import pathlib
import re
import sqlite3

import pandas as pd
import pytest

from keras_takd.takd import schema
from keras_takd.takd.schema import CHAIN_COLUMNS

REPO = pathlib.Path(__file__).resolve().parents[2]
COMMAND = "keras_takd.takd.evaluate"


@pytest.fixture
def fake_run(tmp_path):
    """A folder that passes as a run (run.json, results.csv) but holds no model."""
    run = tmp_path / "run"
    run.mkdir()
    configuration = {"data": {"dataset": "mnist", "test_images": 64}}
    (run / "run.json").write_text(json.dumps({"configuration": configuration}))
    (run / "results.csv").write_text("dataset,temperature,stage,role\nmnist,5,1,teacher\n")
    (run / "foreign.csv").write_text("dataset,temperature,stage,loss\nmnist,5,1,0.3\n")
    return run


@pytest.mark.parametrize(
    "args, message",
    [
        (["--attacks=l2,l3"], "--attacks must be"),
        (["--shard_index=2", "--num_shards=2"], "--shard_index must be smaller"),
        (["--num_shards=0"], "num_shards"),
        (["--num_images=0"], "num_images"),
        (["--apgd_eps=inf"], "--apgd_eps must be > 0 and finite"),
        (["--apgd_eps=0"], "--apgd_eps must be > 0 and finite"),
        (["--attack_images=l3=5"], "--attack_images must be"),
        (["--attack_images=l0=0"], "--attack_images must be"),
        (["--attack_images=l0=5,l0=6"], "--attack_images must be"),
        (["--output_dir=nowhere"], "does not exist"),
        (["--output_dir=."], "is not a keras_takd run: no run.json"),
        (["--output=run/foreign.csv"], "foreign columns ['loss']"),
        (["--l2_steps=3"], "Unknown command line flag"),
        (["--epochs=7"], "Unknown command line flag 'epochs'"),  # training's, not evaluation's
        (["--flagfile=flags/none.cfg"], "none.cfg"),
        (["--executor=dask"], "--executor=dask: value should be one of <serial|ray>"),
        (["--cpus_per_unit=0"], "cpus_per_unit"),
        (["--gpus_per_unit=-1"], "gpus_per_unit"),
        (["--max_retries=-1"], "max_retries"),
        (["--models=teacher"], "--models must be a comma-separated list of T<temperature>"),
        (["positional"], "unexpected arguments"),
    ],
)
def test_bad_flags_fail_with_one_line_before_any_work(cli, fake_run, args, message):
    done = cli(COMMAND, "--output_dir=run", *args, cwd=fake_run.parent)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr
    assert not (fake_run / "eval").exists()


def test_a_recorded_data_dir_that_is_not_a_folder_from_here_is_one_line(cli, fake_run):
    record = json.loads((fake_run / "run.json").read_text())
    record["run_info"] = {"flags": {"data_dir": "../shared/data"}}  # as old runs recorded it
    (fake_run / "run.json").write_text(json.dumps(record))
    done = cli(COMMAND, f"--output_dir={fake_run}", cwd=fake_run)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "run.json records the training's data_dir ../shared/data" in lines[0]
    assert lines[0].endswith("pass --data_dir=<folder holding mnist.npz>")


def test_cli_evaluates_a_run_and_a_rerun_computes_nothing(cli, tiny_run, shared_data_dir):
    tmp_path = tiny_run[0].parent
    args = [
        "--output_dir=run",
        f"--data_dir={shared_data_dir}",
        "--attacks=l2",
        "--num_images=4",
        "--metric_images=16",
        "--l2_max_iterations=10",
        "--l2_binary_search_steps=1",
        "--noindicators",  # the unit counts below; the indicators have tests of their own
    ]
    done = cli(COMMAND, *args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "2 models x 3 units (metrics, l2, l2_softmax_T), 6 to compute, 0 cached" in lines[0]
    started = [line for line in lines if re.match(r"\[\d/6\] mnist T=5 .*: started, ", line)]
    finished = [line for line in lines if re.match(r"\[\d/6\] mnist T=5 .* s\); ", line)]
    assert len(finished) == 2 * 3  # metrics, l2, l2_softmax_T of both models
    # A start line for each unit without an estimate (the first of its kind), and afterwards
    # only for a unit expected to take more than progress.SHORT_UNIT_SECONDS.
    first = "stage 1 metrics on test images 0-16: started, first of its kind, no estimate yet"
    assert started[0].endswith(first)
    assert all("first of its kind" in line for line in started[:3])
    for line in started[3:]:
        assert line.endswith("(mean of 1 finished)") and "stage 2" in line
        assert re.search(r"about (\d+ s|\d+ min)", line) and "about 1 s" not in line
    about = r"(about \d+ (s|min)|under 1 s)"
    assert re.search(f"; 5 units left, {about} plus the l2, l2_softmax_T units$", finished[0])
    assert re.search(f"; 2 units left, {about}$", finished[3])
    assert finished[-1].endswith("; evaluation complete")
    table = pd.read_csv(tmp_path / "run" / "results.csv")
    prefixes = (
        "l2_",
        "l2_budget",
        "l2_softmax_T_",
        "sensitivity_",
        "confidence",
        "test_",
        "metric_",
    )
    expected = [c for c in schema.METRIC_COLUMNS if c.startswith(prefixes)]
    expected = [c for c in expected if not c.endswith(tuple(schema.INDICATORS))]  # not run
    assert list(table.columns) == list(dict.fromkeys([*CHAIN_COLUMNS, *expected, "eval_config"]))
    assert (table["l2_attacked"] + table["l2_excluded"] == 4).all()
    per_image = pd.read_csv(tmp_path / "run" / "per_image.csv")
    assert list(per_image.columns) == list(schema.PER_IMAGE_COLUMNS)
    assert len(per_image) == 2 * 2 * 4  # models x (l2, l2_softmax_T) x images
    assert set(per_image["attack"]) == {"l2", "l2_softmax_T"}
    config = table["eval_config"][0]
    files = [p.name for p in (tmp_path / "run" / "eval" / config).rglob("*")]
    assert files == ["config.json"]  # the units are in the record
    with contextlib.closing(sqlite3.connect(tmp_path / "run" / "record.sqlite")) as connection:
        units = connection.execute("SELECT stage, kind FROM units WHERE evaluation = ?", (config,))
        assert sorted(units) == [
            (k, kind) for k in (1, 2) for kind in sorted(("metrics", "l2", "l2_softmax_T"))
        ]

    again = cli(COMMAND, *args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "3 units (metrics, l2, l2_softmax_T), 0 to compute, 6 cached" in again.stdout
    assert not [line for line in again.stdout.splitlines() if line.startswith("[")]
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "run" / "results.csv"), table)

    changed = cli(COMMAND, *args, "--l2_max_iterations=11", cwd=tmp_path)
    assert changed.returncode == 1
    assert "holds evaluation results of configuration" in changed.stderr.strip().splitlines()[-1]


def test_models_selects_the_units_to_compute_and_the_tables_keep_every_model(
    cli, tiny_run, shared_data_dir
):
    tmp_path = tiny_run[0].parent
    args = [
        "--output_dir=run",
        f"--data_dir={shared_data_dir}",
        "--attacks=l2",
        "--num_images=4",
        "--metric_images=16",
        "--l2_max_iterations=10",
        "--l2_binary_search_steps=1",
        "--nogradient_masking",
        "--noindicators",
    ]
    unknown = cli(COMMAND, *args, "--models=T5/stage3", cwd=tmp_path)
    assert unknown.returncode == 1
    assert (
        unknown.stderr.strip()
        .splitlines()[-1]
        .endswith("models T5/stage3: the run has no such model (it has T5/stage1,T5/stage2)")
    )
    assert not (tmp_path / "run" / "per_image.csv").exists()

    done = cli(COMMAND, *args, "--models=T5/stage2", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "2 models (1 selected) x 2 units (metrics, l2), 2 to compute, 0 cached" in done.stdout
    table = pd.read_csv(tmp_path / "run" / "results.csv").set_index("stage")
    assert list(table.index) == [1, 2]
    assert table["l2_attacked"].isna().tolist() == [True, False]
    per_image = pd.read_csv(tmp_path / "run" / "per_image.csv")
    assert set(per_image["stage"]) == {2}

    rest = cli(COMMAND, *args, cwd=tmp_path)
    assert rest.returncode == 0, rest.stderr
    assert "2 models x 2 units (metrics, l2), 2 to compute, 2 cached" in rest.stdout
    assert "mnist T=5 stage 2" not in rest.stdout
    assert pd.read_csv(tmp_path / "run" / "results.csv")["l2_attacked"].notna().all()
