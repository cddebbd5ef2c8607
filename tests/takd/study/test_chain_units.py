"""Unit tests of keras_takd.takd.study.chain_units that train nothing: which stage a chain
resumes at, and the scratch folders of killed units."""

import os
import time

from keras_takd.core import locking
from keras_takd.takd import layout
from keras_takd.takd.study import chain_units


def _finished(*stages, seed=None):
    """`resumed_files`' keys for these finished stages of mnist T = 40."""
    return {
        str(layout.model_folder("mnist", 40, stage, seed) / "metadata.json"): b"{}"
        for stage in stages
    }


def test_a_chain_resumes_at_its_first_unfinished_stage():
    assert chain_units.next_stage({}, "mnist", 40, 3) == 1
    assert chain_units.next_stage(_finished(1), "mnist", 40, 3) == 2
    assert chain_units.next_stage(_finished(1, 3), "mnist", 40, 3) == 2
    assert chain_units.next_stage(_finished(1, 2, seed=4), "mnist", 40, 3, seed=4) == 3
    assert chain_units.next_stage(_finished(1, 2, seed=4), "mnist", 40, 3) == 1  # other folders
    # every stage written, the rows not yet recorded (killed between the two): the last stage,
    # whose run finds every stage written and only records the rows
    assert chain_units.next_stage(_finished(1, 2, 3), "mnist", 40, 3) == 3


def _scratch(root, name, age):
    """A unit's scratch folder whose lock was taken `age` seconds ago."""
    folder = root / f"keras_takd_stage_{name}"
    (folder / "mnist").mkdir(parents=True)
    (folder / "mnist" / "model.keras").write_bytes(b"weights")
    lock = folder / "scratch.lock"
    lock.write_bytes(b"")
    os.utime(lock, (time.time() - age, time.time() - age))
    return folder


def test_the_scratch_folders_of_killed_units_are_removed_and_no_other(tmp_path):
    killed = _scratch(tmp_path, "killed", age=600)
    running = _scratch(tmp_path, "running", age=600)
    starting = _scratch(tmp_path, "starting", age=1)  # its unit may be taking the lock
    other = tmp_path / "keras_takd_stage_unlocked"  # no lock: not a unit's folder
    other.mkdir()
    lock = running / "scratch.lock"
    with locking.hold_lock(lock):  # another open file: a lock of its own
        os.utime(lock, (time.time() - 600, time.time() - 600))  # held, and old
        assert chain_units.remove_stale_scratch(tmp_path) == [killed]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in (running, starting, other)
    )
