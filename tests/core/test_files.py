"""Reading and writing a run's files: atomic, regular files only, confined, umask, named errors."""

import errno
import json
import os
import stat
import zipfile

import pytest

from keras_takd.core import files
from keras_takd.core.results import prepare_run_dir


def _not_regular(tmp_path, kind):
    path = tmp_path / "run.json"
    if kind == "FIFO":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    else:
        path.symlink_to("/dev/null")  # a character device, reached through a link
    return path


@pytest.mark.parametrize("kind", ["FIFO", "folder", "character device"])
def test_only_regular_files_are_read(tmp_path, kind, no_hang):
    path = _not_regular(tmp_path, kind)
    with no_hang(), pytest.raises(files.NotRegularFileError, match=f"^{path} is a {kind}, exp"):
        files.read_json(path)


@pytest.mark.parametrize("kind", ["FIFO", "folder"])
def test_training_refuses_a_run_json_that_is_not_a_regular_file_at_once(tmp_path, kind, no_hang):
    path = _not_regular(tmp_path, kind)
    with no_hang(), pytest.raises(OSError, match=f"{path} is a {kind}, expected a regular file"):
        prepare_run_dir(tmp_path, {"data": {"dataset": "mnist"}})


def test_training_refuses_a_run_json_linked_out_of_the_run_folder(tmp_path, no_hang):
    path = _not_regular(tmp_path, "character device")
    with no_hang(), pytest.raises(ValueError, match=f"{path} resolves to /dev/null, outside"):
        prepare_run_dir(tmp_path, {"data": {"dataset": "mnist"}})


def test_inside_confines_a_path_to_the_run_folder_after_links(tmp_path):
    run, elsewhere = tmp_path / "run", tmp_path / "elsewhere"
    run.mkdir(), elsewhere.mkdir()
    assert files.inside(run, run / "a" / "b.json") == run / "a" / "b.json"
    (run / "shard0of2").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(ValueError, match=f"resolves to {elsewhere}/u.json, outside the run"):
        files.inside(run, run / "shard0of2" / "u.json")
    with pytest.raises(ValueError, match="outside the run folder"):
        files.inside(run, run / ".." / "elsewhere")


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_written_files_honour_the_umask(tmp_path, umask):
    previous = os.umask(umask)
    try:
        files.write_json_atomic(tmp_path / "a.json", {"a": 1})
        files.write_text_atomic(tmp_path / "b.txt", "b")
        folder = files.temporary_sibling(tmp_path / "saved_model", directory=True)
    finally:
        os.umask(previous)
    for name in ("a.json", "b.txt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask
    assert stat.S_IMODE(folder.stat().st_mode) == 0o777 & ~umask  # a SavedModel's folder


def test_a_failed_write_names_the_path_and_leaves_no_temporary(tmp_path):
    def disk_full(tmp):
        raise OSError(errno.ENOSPC, "No space left on device")

    target = tmp_path / "results.csv"
    with pytest.raises(OSError, match=f"cannot write {target}: No space left on device") as e:
        files.write_atomic(target, disk_full)
    assert e.value.errno == errno.ENOSPC
    assert not list(tmp_path.iterdir())


def test_a_model_file_that_is_a_folder_says_so(tmp_path):
    model = tmp_path / "model.keras"
    model.mkdir()
    with pytest.raises(files.NotRegularFileError, match=f"model file {model} is a folder"):
        files.check_keras_file(model)
    with pytest.raises(FileNotFoundError, match="is missing: retrain it"):
        files.check_keras_file(tmp_path / "other.keras")


def test_a_model_file_that_is_a_fifo_is_refused_at_once(tmp_path, no_hang):
    model = tmp_path / "model.keras"
    os.mkfifo(model)
    with no_hang(), pytest.raises(files.NotRegularFileError, match=f"{model} is a FIFO"):
        files.check_keras_file(model)


def test_a_model_file_with_a_broken_config_is_named(tmp_path):
    model = tmp_path / "model.keras"
    with zipfile.ZipFile(model, "w") as archive:
        archive.writestr("config.json", json.dumps({"class_name": "Sequential"})[:-3])
        archive.writestr("model.weights.h5", b"")
    with pytest.raises(ValueError, match=f"model file {model} is corrupt .its config.json is no"):
        files.check_keras_file(model)


def test_a_figure_saved_twice_as_pdf_gives_the_same_bytes(tmp_path):
    import time

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    first = files.save_figure_atomic(fig, tmp_path / "a.pdf").read_bytes()
    time.sleep(1.1)  # a creation date would now differ
    second = files.save_figure_atomic(fig, tmp_path / "b.pdf").read_bytes()
    plt.close(fig)
    assert first == second
