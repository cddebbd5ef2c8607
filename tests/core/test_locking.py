"""One process per run folder: flock locks that refuse a second holder at once, naming its PID."""

import os
import time

import pytest

from keras_takd.core.locking import RUN_LOCK, FolderInUseError, hold_lock, lock_run_folder


def test_a_second_exclusive_lock_is_refused_naming_the_holder(tmp_path):
    # flock locks belong to an open file description: a second open in one process conflicts.
    with lock_run_folder(tmp_path):
        assert (tmp_path / RUN_LOCK).read_text().strip() == str(os.getpid())
        with pytest.raises(FolderInUseError, match=f"in use by process {os.getpid()} "):
            with lock_run_folder(tmp_path):
                pass
        with pytest.raises(FolderInUseError):
            with hold_lock(tmp_path / RUN_LOCK, shared=True):
                pass
    assert (tmp_path / RUN_LOCK).read_text().strip() == ""  # released: names no holder
    with lock_run_folder(tmp_path):  # free again
        pass


def test_shared_locks_coexist_and_keep_an_exclusive_one_out(tmp_path):
    with hold_lock(tmp_path / RUN_LOCK, shared=True), hold_lock(tmp_path / RUN_LOCK, shared=True):
        with hold_lock(tmp_path / "evaluate_shard0of2.lock"):
            with pytest.raises(FolderInUseError, match=f"process {os.getpid()} "):
                with lock_run_folder(tmp_path):
                    pass


def test_another_process_is_refused_at_once_and_named(tmp_path, held_by_another_process):
    with held_by_another_process(tmp_path) as pid:
        start = time.perf_counter()
        with pytest.raises(FolderInUseError) as refused:
            with lock_run_folder(tmp_path):
                pass
        assert time.perf_counter() - start < 1
        expected = f"{tmp_path} is in use by process {pid} (run.lock is locked)"
        assert expected in str(refused.value)
    with lock_run_folder(tmp_path):  # the holder exited: its lock went with it
        pass


def test_a_lock_file_that_is_a_symbolic_link_is_refused_and_its_target_kept(tmp_path):
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me\n")
    run = tmp_path / "run"
    run.mkdir()
    (run / "evaluate.lock").symlink_to(precious)
    with pytest.raises(OSError, match=r"evaluate\.lock is a symbolic link, expected a regular"):
        with hold_lock(run / "evaluate.lock"):
            pass
    (run / RUN_LOCK).symlink_to(tmp_path / "missing.txt")  # a dangling link is not created
    with pytest.raises(OSError, match=r"run\.lock is a symbolic link"):
        with lock_run_folder(run):
            pass
    assert precious.read_text() == "keep me\n" and not (tmp_path / "missing.txt").exists()


def test_a_lock_file_that_is_a_folder_or_a_fifo_is_refused(tmp_path):
    (tmp_path / RUN_LOCK).mkdir()
    with pytest.raises(OSError, match=r"run\.lock is a folder, expected a regular file"):
        with lock_run_folder(tmp_path):
            pass
    os.mkfifo(tmp_path / "evaluate.lock")
    with pytest.raises(OSError, match=r"evaluate\.lock is a FIFO, expected a regular file"):
        with hold_lock(tmp_path / "evaluate.lock"):
            pass


def test_a_lock_file_is_never_truncated(tmp_path):
    # A hard link to a file elsewhere is a regular file: writing the PID must not empty it.
    precious = tmp_path / "precious.txt"
    precious.write_text("x" * 100)
    run = tmp_path / "run"
    run.mkdir()
    os.link(precious, run / RUN_LOCK)
    with pytest.raises(OSError, match=r"run\.lock has 2 hard links, expected 1"):
        with lock_run_folder(run):
            pass
    assert precious.read_text() == "x" * 100
    (run / RUN_LOCK).unlink()
    with lock_run_folder(run):
        size = (run / RUN_LOCK).stat().st_size
    assert (run / RUN_LOCK).stat().st_size == size  # released by overwriting, not truncating
