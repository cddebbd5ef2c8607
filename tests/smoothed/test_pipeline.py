"""`run_smoothed_kd` in process at toy size: a diverging model is never saved as finished, a
damaged backup is never trusted, and a run folder in use is refused."""

import pytest

from keras_takd.core.data import load_dataset
from keras_takd.core.locking import FolderInUseError, lock_run_folder
from keras_takd.core.seeding import set_seed
from keras_takd.core.training import NonFiniteError
from keras_takd.smoothed.adversarial import AdversarialConfig
from keras_takd.smoothed.pipeline import SmoothedKDConfig, run_smoothed_kd

pytestmark = pytest.mark.slow  # every test trains a teacher

TRAINING = dict(epochs=1, batch_size=48, lr_milestones=(1,), steps=1, seed=0)


@pytest.fixture(scope="module")
def data(cifar10_data_dir):
    return load_dataset("cifar10", cifar10_data_dir, validation_size=0, train_size=96, test_size=24)


def _config(student_learning_rate=1e-4):
    return SmoothedKDConfig(
        architecture="carlini_cnn",
        teacher=AdversarialConfig(**TRAINING),
        student=AdversarialConfig(learning_rate=student_learning_rate, **TRAINING),
        temperature=2.0,
        num_samples=2,
        attack_samples=1,
        chunk_size=2,
        eval_size=12,
        pgd_steps=2,
        transfer_eps_255=(2.0,),
    )


def test_a_diverging_student_ends_the_run_and_the_teacher_is_kept(data, tmp_path):
    set_seed(0, deterministic=True)
    with pytest.raises(NonFiniteError) as diverged:
        run_smoothed_kd(data, tmp_path, _config(student_learning_rate=1e30), verbose=0, log=print)
    message = str(diverged.value)
    assert message.startswith("cifar10-synthetic student (from soft_prediction, T=2): ")
    assert "in epoch 1 of 1; not saved" in message
    assert (tmp_path / "teacher/metadata.json").is_file()
    assert not (tmp_path / "student/model.keras").exists()
    assert not (tmp_path / "student/metadata.json").exists()
    assert not (tmp_path / "results.csv").exists()


def test_a_truncated_teacher_backup_is_discarded_with_a_note(data, tmp_path):
    set_seed(0, deterministic=True)
    backup = tmp_path / "teacher/backup"
    backup.mkdir(parents=True)
    (backup / "latest.weights.h5").write_bytes(b"\x89HDF\r\n\x1a\n truncated by a full disk")
    (backup / "training_metadata.json").write_text('{"epoch": 1, "batch": 0}')
    notes = []
    run_smoothed_kd(data, tmp_path, _config(), verbose=0, log=notes.append)
    assert any(line.startswith(f"{backup}: incomplete or damaged backup") for line in notes)
    assert (tmp_path / "transfer.csv").is_file() and not backup.exists()


def test_a_folder_in_use_is_refused_before_anything_is_written(data, tmp_path):
    with lock_run_folder(tmp_path), pytest.raises(FolderInUseError, match="is in use by process"):
        run_smoothed_kd(data, tmp_path, _config(), verbose=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.lock"]


@pytest.mark.parametrize("folder", ["teacher", "student"])
def test_a_stage_metadata_that_is_a_fifo_is_refused_at_once(tmp_path, folder, no_hang):
    import os

    from keras_takd.core.files import NotRegularFileError
    from keras_takd.smoothed import pipeline

    (tmp_path / folder).mkdir()
    os.mkfifo(tmp_path / folder / "metadata.json")
    expected = f"^{tmp_path / folder / 'metadata.json'} is a FIFO, expected a regular file"
    with no_hang(), pytest.raises(NotRegularFileError, match=expected):
        if folder == "teacher":
            pipeline._train_teacher(None, None, tmp_path, 0, print)
        else:
            pipeline._train_student(None, None, tmp_path, {}, 0, "mean", folder, print)
