"""The study's progress lines: units done / running / left, and the time left."""

import dataclasses

from keras_takd.takd.study.progress import StudyProgress


@dataclasses.dataclass(frozen=True)
class _Chain:
    name: str


def _progress(lines, chains=(2, 0)):
    return StudyProgress(lines.append, chains, 2, ["metrics", "l2"], workers=1)


def test_a_finished_unit_is_done_and_the_others_left():
    lines = []
    study = _progress(lines)
    assert study.total == 2 + 2 * 2 * 2
    assert "0 of 10 units done, 0 running, 10 left, no estimate" in study.line("start")
    study.taken(_Chain("training a"))
    study.finished(_Chain("training a"), {"seconds": 60.0})
    assert lines == [
        "study: training a done (60.0 s); 1 of 10 units done, 0 running, 9 left, about 60 s "
        "plus the l2, metrics units left"
    ]


def test_running_units_are_neither_done_nor_left():
    lines = []
    study = _progress(lines)
    for name in ("training a", "training b"):  # taken together, as by a Ray executor with room
        study.taken(_Chain(name))
    study.finished(_Chain("training a"), {"seconds": 1.0})
    assert "1 of 10 units done, 1 running, 8 left" in lines[0]


def test_stored_units_count_as_done_and_the_last_line_says_complete():
    lines = []
    study = _progress(lines, chains=(0, 2))
    study.evaluated({"metrics": 4, "l2": 3})
    assert "9 of 10 units done, 0 running, 1 left" in study.line("planned")
    study.evaluated({"metrics": 4, "l2": 4})
    assert study.line("tables written").endswith(
        "10 of 10 units done, 0 running, 0 left, study complete"
    )
