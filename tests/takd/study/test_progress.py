"""The study's progress lines: units done / running / left, and the time left."""

import dataclasses

from keras_takd.takd.evaluation.executors import SerialExecutor
from keras_takd.takd.study.progress import StudyProgress


@dataclasses.dataclass(frozen=True)
class _Chain:
    name: str


class _AllAtOnce:
    """Takes every unit before the first result comes back, as a Ray executor with room."""

    def map(self, fn, units):
        taken = list(units)
        for unit in taken:
            yield unit, fn(unit)


def _progress(executor, lines, chains=(2, 0)):
    return StudyProgress(executor, lines.append, chains, 2, ["metrics", "l2"], workers=1)


def test_a_finished_unit_is_done_and_the_others_left():
    lines = []
    study = _progress(SerialExecutor(), lines)
    assert study.total == 2 + 2 * 2 * 2
    assert "0 of 10 units done, 0 running, 10 left, no estimate" in study.line("start")
    list(study.map(lambda unit: {"seconds": 60.0}, [_Chain("training a")]))
    assert lines == [
        "study: training a done; 1 of 10 units done, 0 running, 9 left, about 60 s plus the "
        "l2, metrics units left"
    ]


def test_running_units_are_neither_done_nor_left():
    lines = []
    study = _progress(_AllAtOnce(), lines)
    units = [_Chain("training a"), _Chain("training b")]
    for _ in study.map(lambda unit: {"seconds": 1.0}, units):
        break
    assert "1 of 10 units done, 1 running, 8 left" in lines[0]


def test_evaluated_models_count_as_done_and_the_last_line_says_complete():
    lines = []
    study = _progress(SerialExecutor(), lines, chains=(0, 2))
    study.evaluated(4)
    assert study.line("tables written").endswith(
        "10 of 10 units done, 0 running, 0 left, study complete"
    )
