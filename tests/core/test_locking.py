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
    assert (tmp_path / RUN_LOCK).read_text() == ""  # released: names no holder
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
