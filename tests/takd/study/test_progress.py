"""The study's progress lines: units done / running / left, and the time left."""

import dataclasses

from keras_takd.takd.study.progress import StudyProgress


@dataclasses.dataclass(frozen=True)
class _Chain:
    name: str


def _progress(lines, chains=(2, 0)):
    return StudyProgress(lines.append, chains, 2, ["metrics", "l2"], workers=1)


def test_a_finished_unit_is_done_and_the_others_left():
    """2 chains of 2 stages: 4 training units (one per stage) and 2 kinds of 4 models."""
    lines = []
    study = _progress(lines)
    assert study.total == 2 * 2 + 2 * 2 * 2
    assert "0 of 12 units done, 0 running, 12 left, no estimate" in study.line("start")
    study.taken(_Chain("training a stage 1"))
    study.finished(_Chain("training a stage 1"), {"seconds": 60.0})
    assert lines == [
        "study: training a stage 1 done (60.0 s); 1 of 12 units done, 0 running, 11 left, "
        "about 3 min plus the l2, metrics units left"
    ]


def test_the_stages_a_resumed_chain_still_needs_are_the_training_units_left():
    study = _progress([], chains=(1, 1))  # one chain trained (2 stages), one to train
    resumed = StudyProgress([].append, (1, 1), 2, ["metrics", "l2"], stages_left=1)
    assert "2 of 12 units done, 0 running, 10 left" in study.line("start")
    assert "3 of 12 units done, 0 running, 9 left" in resumed.line("start")  # its stage 1 kept


def test_running_units_are_neither_done_nor_left():
    lines = []
    study = _progress(lines)
    for name in ("training a", "training b"):  # taken together, as by a Ray executor with room
        study.taken(_Chain(name))
    study.finished(_Chain("training a"), {"seconds": 1.0})
    assert "1 of 12 units done, 1 running, 10 left" in lines[0]


def test_stored_units_count_as_done_and_the_last_line_says_complete():
    lines = []
    study = _progress(lines, chains=(0, 2))
    study.evaluated({"metrics": 4, "l2": 3})
    assert "11 of 12 units done, 0 running, 1 left" in study.line("planned")
    study.evaluated({"metrics": 4, "l2": 4})
    assert study.line("tables written").endswith(
        "12 of 12 units done, 0 running, 0 left, study complete"
    )
