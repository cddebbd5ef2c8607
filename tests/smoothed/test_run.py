"""End-to-end tests of `python -m keras_takd.smoothed.run` at toy size, as a subprocess."""

import json
import pathlib

import numpy as np
import pandas as pd
import pytest

from keras_takd.smoothed import pipeline, transfer

REPO = pathlib.Path(__file__).resolve().parents[2]
COMMAND = "keras_takd.smoothed.run"
PIPELINE_RESULT_COLUMNS = [
    "dataset",
    "model",
    "aggregation",
    "clean_accuracy",
    "pgd_accuracy",
    "eps_255",
    "pgd_steps",
    "num_images",
]
EXPECTED_FILES = {
    "run.json",
    "run.lock",
    "results.csv",
    "transfer.csv",
    "soft_targets.npz",
    "teacher/model.keras",
    "teacher/metadata.json",
    "student/model.keras",
    "student/metadata.json",
    "student/saved_model/saved_model.pb",
    "student/saved_model/fingerprint.pb",
    "student/saved_model/variables/variables.index",
    "student/saved_model/variables/variables.data-00000-of-00001",
    "figures/transfer_cni.png",
    "figures/transfer_kd_student.png",
    "figures/transfer_smoothed_cni.png",
}


def _toy_flags(data_dir, out):
    return [
        f"--data_dir={data_dir}",
        f"--output_dir={out}",
        "--train_size=96",
        "--test_size=24",
        "--architecture=carlini_cnn",
        "--teacher_epochs=1",
        "--student_epochs=1",
        "--batch_size=48",
        "--lr_milestones=1",
        "--train_pgd_steps=1",
        "--pgd_steps=2",
        "--num_samples=2",
        "--attack_samples=1",
        "--chunk_size=2",
        "--eval_size=12",
        "--transfer_eps_255=2,30",
        "--temperature=2",
    ]


def _files(root: pathlib.Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_toy_run_writes_exactly_its_files_then_resumes_and_refuses_other_settings(
    cli, tmp_path, cifar10_data_dir
):
    out = tmp_path / "run"
    done = cli(COMMAND, *_toy_flags(cifar10_data_dir, out))
    assert done.returncode == 0, done.stderr[-3000:]
    assert _files(out) == EXPECTED_FILES

    results = pd.read_csv(out / "results.csv")
    assert list(results.columns) == PIPELINE_RESULT_COLUMNS
    assert set(results["dataset"]) == {"cifar10-synthetic"}  # the data file's own label
    warnings = [line for line in done.stderr.splitlines() if " warning: " in line]
    assert all(line.startswith("keras-takd-smoothed: warning: ") for line in warnings)
    assert sorted(zip(results.model, results.aggregation, strict=True)) == [
        ("cni", "none"),
        ("kd_student", "none"),
        ("smoothed_cni", "prediction"),
        ("smoothed_cni", "soft_prediction"),
    ]
    matrix = pd.read_csv(out / "transfer.csv")
    assert tuple(matrix.columns) == transfer.COLUMNS
    assert len(matrix) == 3 * 3 * 2 * 2
    with np.load(out / "soft_targets.npz") as targets:
        assert sorted(targets.files) == ["prediction", "soft_prediction"]
        np.testing.assert_allclose(targets["soft_prediction"].sum(axis=1), 1.0, atol=1e-5)
        assert targets["prediction"].shape == (96, 10)
    run = json.loads((out / "run.json").read_text())
    assert run["configuration"]["smoothed_kd"]["temperature"] == 2.0
    assert run["configuration"]["data"]["dataset"] == "cifar10"
    assert run["run_info"]["dataset_label"] == "cifar10-synthetic"
    assert "transfer at eps" in done.stdout

    # The SavedModel serves the student's logits.
    import keras
    import tensorflow as tf

    student = keras.saving.load_model(out / "student" / "model.keras")
    served = tf.saved_model.load(str(out / "student" / "saved_model"))
    images = np.random.default_rng(0).uniform(size=(3, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(
        served.serve(tf.constant(images)).numpy(), student(images).numpy(), rtol=1e-4, atol=1e-5
    )

    # A rerun finds every step complete and leaves the files alone.
    stamps = {name: (out / name).stat().st_mtime_ns for name in EXPECTED_FILES if "fig" not in name}
    again = cli(COMMAND, *_toy_flags(cifar10_data_dir, out))
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Epoch" not in again.stdout
    for name, stamp in stamps.items():
        if name not in ("run.json", "run.lock"):
            assert (out / name).stat().st_mtime_ns == stamp, name

    # A run killed after the teacher and soft targets redoes only the later steps.
    for name in ("student/metadata.json", "results.csv", "transfer.csv"):
        (out / name).unlink()
    resumed = cli(COMMAND, *_toy_flags(cifar10_data_dir, out))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _files(out) == EXPECTED_FILES  # no backup folder or temporary file left behind
    for name in ("teacher/model.keras", "teacher/metadata.json", "soft_targets.npz"):
        assert (out / name).stat().st_mtime_ns == stamps[name], name
    assert (out / "student/model.keras").stat().st_mtime_ns != stamps["student/model.keras"]

    # Other settings in the same folder: an error line naming the setting (after TensorFlow's
    # own start-up lines), no traceback, nothing overwritten.
    before = (out / "run.json").read_text()
    other = cli(COMMAND, *_toy_flags(cifar10_data_dir, out), "--distil_weight=0.5")
    assert other.returncode == 1
    assert "Traceback" not in other.stderr
    last = other.stderr.strip().splitlines()[-1]
    assert last.startswith("keras-takd-smoothed: error:") and "distil_weight=0.75" in last, last
    assert (out / "run.json").read_text() == before


def test_a_diverging_teacher_fails_with_one_line_and_is_not_saved(cli, tmp_path, cifar10_data_dir):
    out = tmp_path / "run"
    done = cli(COMMAND, *_toy_flags(cifar10_data_dir, out), "--learning_rate=1e30")
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "keras-takd-smoothed: error: cifar10-synthetic CNI teacher: the training loss became "
    ), last
    assert "in epoch 1 of 1; not saved" in last
    assert _files(out) == {"run.json", "run.lock"}


@pytest.mark.parametrize(
    "flag, problem",
    [
        ("--perturb_distil_weight=1.5", "perturb_distil_weight"),
        ("--distil_weight=-0.1", "distil_weight"),
        ("--lr_milestones=50,20", "lr_milestones"),
        ("--transfer_eps_255=2,0", "transfer_eps_255"),
        ("--depth=12", "depth"),
        ("--aggregation=median", "aggregation"),
        ("--num_samples=0", "num_samples"),
        ("--temperature=0", "temperature"),
        ("--train_eps_255=inf", "--train_eps_255 must be > 0 and finite"),
        ("--train_step_size_255=nan", "--train_step_size_255 must be > 0 and finite"),
        ("--no_such_flag=1", "no_such_flag"),
    ],
)
def test_bad_flags_fail_with_one_line(cli, tmp_path, flag, problem):
    done = cli(COMMAND, f"--output_dir={tmp_path / 'out'}", flag)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("keras-takd-smoothed: error:"), done.stderr
    assert problem in lines[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "args, problem",
    [
        (["--data_dir=/nonexistent/data"], "not a directory"),
        (["--train_size=96", "--test_size=10", "--eval_size=20"], "eval_size=20"),
        (
            ["--train_size=96", "--test_size=50", "--eval_size=20", "--curve_size=60"],
            "curve_size=60",
        ),
    ],
)
def test_bad_input_fails_with_one_line(cli, tmp_path, cifar10_data_dir, args, problem):
    done = cli(COMMAND, f"--data_dir={cifar10_data_dir}", f"--output_dir={tmp_path / 'out'}", *args)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and problem in lines[0], done.stderr


def test_per_epoch_curves_and_a_second_student(cli, tmp_path, cifar10_data_dir):
    out = tmp_path / "run"
    flags = [*_toy_flags(cifar10_data_dir, out), "--student_epochs=2", "--curve_size=8"]
    done = cli(COMMAND, *flags, "--compare_aggregations", "--aggregation=soft_prediction")
    assert done.returncode == 0, done.stderr[-3000:]
    second = {
        "student_from_prediction/model.keras",
        "student_from_prediction/metadata.json",
        "student_from_prediction/curves.json",
    }
    assert _files(out) == EXPECTED_FILES | second | {
        "student/curves.json",
        "student_epochs.csv",
        "figures/student_epochs.png",
    }
    curves = pd.read_csv(out / "student_epochs.csv")
    assert list(curves.columns) == [
        "aggregation",
        "epoch",
        "train_clean_accuracy",
        "train_pgd_accuracy",
        "test_clean_accuracy",
        "test_pgd_accuracy",
    ]
    assert sorted(zip(curves.aggregation, curves.epoch, strict=True)) == [
        ("prediction", 1),
        ("prediction", 2),
        ("soft_prediction", 1),
        ("soft_prediction", 2),
    ]
    results = pd.read_csv(out / "results.csv")
    assert ("kd_student_from_prediction", "none") in set(
        zip(results.model, results.aggregation, strict=True)
    )
    for folder, aggregation in (
        ("student", "soft_prediction"),
        ("student_from_prediction", "prediction"),
    ):
        metadata = json.loads((out / folder / "metadata.json").read_text())
        assert metadata["aggregation"] == aggregation
        assert [r["epoch"] for r in metadata["curves"]] == [1, 2]
        for record in metadata["curves"]:
            for key in ("train_clean_accuracy", "train_pgd_accuracy", "test_pgd_accuracy"):
                assert 0.0 <= record[key] <= 1.0
    # The two students learned from different targets.
    import keras

    a = keras.saving.load_model(out / "student" / "model.keras")
    b = keras.saving.load_model(out / "student_from_prediction" / "model.keras")
    assert not np.allclose(a.get_weights()[0], b.get_weights()[0])


def test_learning_warnings_name_models_near_chance_and_a_flat_soft_loss():
    results = pd.DataFrame(
        {
            "dataset": ["cifar10-jpeg-standin"] * 3,
            "model": ["cni", "kd_student", "smoothed_cni"],
            "aggregation": ["none", "none", "prediction"],
            "clean_accuracy": [0.45, 0.09, 0.2],
            "num_images": [500] * 3,
        }
    )
    flat = [4 * np.log(10) + 1e-4, 4 * np.log(10) - 2e-3]  # T = 2: ln(10) T^2, tolerance 4e-3
    lines = pipeline.learning_warnings(results, {"student": flat, "other": [9.0, 5.0]}, 2.0)
    assert lines == [
        "cifar10-jpeg-standin kd_student did not learn: clean accuracy 9.0% on 500 test images "
        "(chance 10%); saved anyway. Try more --teacher_epochs / --student_epochs or a lower "
        "--temperature",
        "cifar10-jpeg-standin smoothed_cni (prediction) did not learn: clean accuracy 20.0% on "
        "500 test images (chance 10%); saved anyway. Try more --teacher_epochs / "
        "--student_epochs or a lower --temperature",
        "student did not learn from its teacher: its soft loss never left ln(10) T^2 = 9.2103; "
        "saved anyway. Try more --teacher_epochs / --student_epochs or a lower --temperature",
    ]
    assert pipeline.learning_warnings(results.iloc[:1], {"student": [9.0, 5.0]}, 2.0) == []
