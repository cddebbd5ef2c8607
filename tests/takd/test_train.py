"""The command line end to end at toy size, and every bad input: one line, non-zero exit,
nothing already written touched."""

import json
import os
import pathlib

import numpy as np
import pandas as pd
import pytest

from keras_takd.takd.schema import CHAIN_COLUMNS

REPO = pathlib.Path(__file__).resolve().parents[2]
COMMAND = "keras_takd.main"
TOY = [
    "--dataset=mnist",
    "--validation_size=64",
    "--train_size=256",
    "--test_size=128",
    "--epochs=1",
    "--batch_size=64",
]


def _snapshot(root: pathlib.Path) -> dict:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def finished_run(cli, shared_data_dir, tmp_path_factory):
    """A finished 2 x 2 run, trained with --data_dir relative to the command's folder."""
    out = tmp_path_factory.mktemp("cli") / "out"
    proc = cli(
        COMMAND,
        *TOY,
        f"--data_dir={os.path.relpath(shared_data_dir, REPO)}",
        "--stages=2",
        "--temperature=5,10",
        f"--output_dir={out}",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out, proc


def test_cli_writes_exactly_the_promised_files(finished_run):
    out, proc = finished_run
    files = sorted(
        str(p.relative_to(out))
        for p in out.rglob("*")
        if p.is_file() and "saved_model/" not in str(p.relative_to(out))
    )
    stages = [
        f"mnist/T{t}/stage{k}/{f}"
        for t in (5, 10)
        for k in (1, 2)
        for f in ("metadata.json", "model.keras")
    ]
    assert files == sorted(
        [
            "record.lock",
            "record.sqlite",
            "results.csv",
            "run.json",
            "run.lock",
            "mnist/init/metadata.json",
            "mnist/init/model.keras",
            *stages,
        ]
    )
    for t in (5, 10):
        for k in (1, 2):
            assert (out / f"mnist/T{t}/stage{k}/saved_model/saved_model.pb").is_file()
    csv = pd.read_csv(out / "results.csv")
    assert list(csv.columns) == list(CHAIN_COLUMNS)
    assert list(zip(csv.temperature, csv.stage, csv.role, strict=True)) == [
        (5.0, 1, "teacher"),
        (5.0, 2, "student"),
        (10.0, 1, "teacher"),
        (10.0, 2, "student"),
    ]
    assert all(pathlib.Path(p).is_dir() for p in csv.saved_model)
    summaries = [line for line in proc.stdout.splitlines() if " test accuracy " in line]
    assert len(summaries) == 4 and summaries[0].startswith("mnist T=5 stage 1 teacher ")
    lines = proc.stdout.splitlines()
    # Every training is named before its Keras progress line, the warm start first.
    warm = "mnist warm start: 1 epoch at T = 1 on hard labels, shared by every stage"
    assert lines[0] == warm and not lines[1].startswith("mnist")
    assert "mnist T=10 stage 2 student: training, 1 epoch" in lines
    # TensorFlow's import notices are filtered out of stderr (keras_takd.core.cli).
    assert "oneDNN custom operations" not in proc.stderr
    assert "absl::InitializeLog()" not in proc.stderr


def test_run_json_records_the_data_by_absolute_path(finished_run, shared_data_dir):
    out, _ = finished_run
    run_info = json.loads((out / "run.json").read_text())["run_info"]
    assert run_info["flags"]["data_dir"] == str(shared_data_dir.resolve())  # typed relative
    assert run_info["data_source"] == str(shared_data_dir.resolve() / "mnist.npz")


def test_rerun_skips_everything(cli, finished_run, shared_data_dir):
    out, _ = finished_run
    models = {p: p.stat().st_mtime_ns for p in out.rglob("model.keras")}
    proc = cli(
        COMMAND,
        *TOY,
        f"--data_dir={shared_data_dir}",
        "--stages=2",
        "--temperature=5,10",
        f"--output_dir={out}",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("[already complete]") == 4
    assert {p: p.stat().st_mtime_ns for p in out.rglob("model.keras")} == models


def _bad_npz(folder: pathlib.Path, **overrides) -> pathlib.Path:
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "x_train": np.zeros((300, 28, 28), "uint8"),
        "y_train": np.zeros(300, "int64"),
        "x_test": np.zeros((50, 28, 28), "uint8"),
        "y_test": np.zeros(50, "int64"),
    }
    arrays.update(overrides)
    np.savez(folder / "mnist.npz", **arrays)
    return folder


BAD_INPUTS = {
    "unknown dataset": (["--dataset=svhn"], "--dataset=svhn"),
    "zero temperature": (["--temperature=0"], "--temperature"),
    "negative temperature in a list": (["--temperature=1,-2"], "--temperature"),
    "text temperature": (["--temperature=hot"], "--temperature"),
    "no stages": (["--stages=0"], "--stages=0"),
    "no epochs": (["--epochs=0"], "--epochs=0"),
    "missing flagfile": (["--flagfile=flags/no_such.cfg"], "no_such.cfg"),
    "stray argument": (["mnist"], "unexpected arguments: mnist"),
    "data_dir missing": (["--data_dir={tmp}/nowhere"], "is not a directory"),
    "corrupt npz": (["--data_dir={corrupt}"], "cannot read"),
    "wrong shape": (["--data_dir={shape}"], "has shape (300, 32, 32)"),
    "wrong dtype": (["--data_dir={dtype}"], "dtype int16"),
    "NaN pixels": (["--data_dir={nan}"], "NaN"),
    "unwritable output_dir": (["--output_dir={tmp}/file/out"], "cannot write to output_dir"),
    "multi_worker strategy": (["--strategy=multi_worker"], "keras-team/keras#20585"),
    "no seeds": (["--num_seeds=0"], "--num_seeds=0: 0 is not a positive integer"),
    "bad primary comparison": (["--primary_comparison=student@40"], "student-teacher@40"),
    "primary comparison at an untrained T": (
        ["--primary_comparison=student-teacher@40"],
        "is at T = 40, which --temperature=20 does not train",
    ),
    "a 3-model comparison declared for a long chain": (
        ["--stages=7", "--primary_comparison=student-teacher@20"],
        "does not fit --stages=7: expected last-teacher@20",
    ),
    "the multi-step test declared for a 3-model chain": (
        ["--primary_comparison=last-teacher@20"],
        "does not fit --stages=3: expected --stages=4 or more for last-teacher, or "
        "student-assistant@20",
    ),
    "a declaration after the models are trained": (
        ["--stages=2", "--temperature=5,10", "--primary_comparison=student-teacher@5"],
        "holds models trained without a declaration",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_one_line_nonzero_exit_nothing_touched(
    cli, case, finished_run, shared_data_dir, tmp_path
):
    out, _ = finished_run
    before = _snapshot(out)
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "mnist.npz").write_bytes(b"PK\x03\x04 truncated")
    (tmp_path / "file").write_text("a file, not a folder")
    folders = {
        "tmp": tmp_path,
        "corrupt": tmp_path / "corrupt",
        "shape": _bad_npz(tmp_path / "shape", x_train=np.zeros((300, 32, 32), "uint8")),
        "dtype": _bad_npz(tmp_path / "dtype", x_test=np.zeros((50, 28, 28), "int16")),
        "nan": _bad_npz(tmp_path / "nan", x_test=np.full((50, 28, 28), np.nan, "float32")),
    }
    args, expected = BAD_INPUTS[case]
    args = [a.format(**folders) for a in args]
    defaults = [f"--data_dir={shared_data_dir}", f"--output_dir={out}"]
    proc = cli(COMMAND, *TOY, *defaults, *args)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("keras-takd-train: error:") and expected in lines[0], lines[0]
    assert _snapshot(out) == before


def test_other_settings_in_the_same_output_dir_are_refused(cli, finished_run, shared_data_dir):
    out, _ = finished_run
    before = _snapshot(out)
    args = [a for a in TOY if a != "--epochs=1"]
    proc = cli(
        COMMAND,
        *args,
        "--epochs=2",
        f"--data_dir={shared_data_dir}",
        "--stages=2",
        "--temperature=5",
        f"--output_dir={out}",
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert (
        proc.stderr.strip()
        .splitlines()[-1]
        .startswith(
            f"keras-takd-train: error: {out} holds results made with epochs=1, "
            "this run asks epochs=2"
        )
    )
    assert _snapshot(out) == before


def test_several_seeds_on_a_run_of_one_are_refused(cli, finished_run, shared_data_dir):
    out, _ = finished_run
    before = _snapshot(out)
    proc = cli(
        COMMAND,
        *TOY,
        f"--data_dir={shared_data_dir}",
        "--stages=2",
        "--temperature=5,10",
        "--num_seeds=2",
        f"--output_dir={out}",
    )
    assert _error_line(proc) == (
        f"keras-takd-train: error: {out} holds a run of one seed (<dataset>/T<T>/stage<k>), "
        "this run asks several seeds: train them in another output_dir (one seed a run: "
        "--num_seeds=1)"
    )
    assert _snapshot(out) == before


def test_help_lists_the_flags(cli):
    proc = cli(COMMAND, "--helpshort")
    assert proc.returncode == 1  # absl's convention: help exits before main with status 1
    flags = ("--stages", "--temperature", "--data_dir", "--output_dir", "--seed", "--num_seeds")
    for flag in flags:
        assert flag in proc.stdout


def _error_line(proc) -> str:
    """The one error line of a failed run (TensorFlow may log lines before it)."""
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    errors = [
        line for line in proc.stderr.splitlines() if line.startswith("keras-takd-train: error:")
    ]
    assert len(errors) == 1 and proc.stderr.strip().endswith(errors[0]), proc.stderr[-2000:]
    return errors[0]


def test_a_diverging_stage_fails_with_one_line_and_is_not_saved(cli, shared_data_dir, tmp_path):
    out = tmp_path / "out"
    args = [f"--data_dir={shared_data_dir}", f"--output_dir={out}", "--stages=2"]
    proc = cli(COMMAND, *TOY, *args, "--temperature=1e-6")
    line = _error_line(proc)
    assert line.startswith("keras-takd-train: error: mnist T=1e-06 stage 1 teacher: "), line
    assert "in epoch 1 of 1; not saved" in line
    assert not (out / "results.csv").exists()
    assert not list(out.rglob("T1e-06/**/metadata.json"))


def test_a_second_process_on_the_output_dir_is_refused(
    cli, shared_data_dir, tmp_path, held_by_another_process
):
    out = tmp_path / "out"
    out.mkdir()
    args = [f"--data_dir={shared_data_dir}", f"--output_dir={out}", "--stages=1"]
    with held_by_another_process(out) as pid:
        proc = cli(COMMAND, *TOY, *args, "--temperature=5")
    assert _error_line(proc) == (
        f"keras-takd-train: error: {out} is in use by process {pid} (run.lock is locked): "
        "wait for it to finish, or use another output_dir"
    )
    assert sorted(p.name for p in out.iterdir()) == ["run.lock"]


def test_a_run_lock_that_is_a_symbolic_link_is_one_line_and_its_target_kept(
    cli, shared_data_dir, tmp_path
):
    out, precious = tmp_path / "out", tmp_path / "precious.txt"
    out.mkdir()
    precious.write_text("keep me\n")
    (out / "run.lock").symlink_to(precious)
    args = [f"--data_dir={shared_data_dir}", f"--output_dir={out}", "--stages=1"]
    proc = cli(COMMAND, *TOY, *args, "--temperature=5")
    assert proc.returncode != 0
    assert _error_line(proc) == (
        f"keras-takd-train: error: {out / 'run.lock'} is a symbolic link, expected a regular file"
    )
    assert precious.read_text() == "keep me\n"


def test_num_seeds_trains_a_chain_per_seed_from_seed_and_records_the_primary_comparison(
    cli, shared_data_dir, tmp_path
):
    proc = cli(
        COMMAND,
        *TOY,
        f"--data_dir={shared_data_dir}",
        "--stages=2",  # a comparison needs a distilled model
        "--temperature=5",
        "--seed=5",
        "--num_seeds=2",
        "--primary_comparison=student-teacher@5",
        f"--output_dir={tmp_path}",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    for seed in (5, 6):
        assert (tmp_path / f"mnist/init/seed{seed}/model.keras").is_file()
        assert (tmp_path / f"mnist/T5/seed{seed}/stage1/model.keras").is_file()
    assert not (tmp_path / "mnist/T5/stage1").exists()
    csv = pd.read_csv(tmp_path / "results.csv")
    assert list(csv["seed"]) == [5, 5, 6, 6]
    run_json = json.loads((tmp_path / "run.json").read_text())
    assert run_json["run_info"]["flags"]["primary_comparison"] == "student-teacher@5"
    declared = {"primary_comparison": "student-teacher@5", "num_seeds": 2}
    assert run_json["run_info"]["declared"] == declared
