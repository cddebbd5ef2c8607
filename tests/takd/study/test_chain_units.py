"""Unit tests of keras_takd.takd.study.chain_units that train nothing: which stage a chain
resumes at, and the scratch folders of killed units."""

import os
import subprocess
import sys

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


def test_the_scratch_folders_of_killed_units_are_removed_and_no_other(tmp_path):
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    dead = int(ended.stdout)
    stale = tmp_path / f"keras_takd_stage_pid{dead}_x1y2"
    (stale / "mnist").mkdir(parents=True)
    (stale / "mnist" / "model.keras").write_bytes(b"weights")
    alive = tmp_path / f"keras_takd_stage_pid{os.getpid()}_a_b"
    alive.mkdir()
    other = tmp_path / "keras_takd_chain_abc"  # not a unit's scratch folder: kept
    other.mkdir()
    assert chain_units.remove_stale_scratch(tmp_path) == [stale]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([alive.name, other.name])
