"""The progress lines: durations in words, expected times from the finished units, time left."""

import pytest

from keras_takd.takd.evaluation import progress

ROW = {"dataset": "mnist", "temperature": 20.0, "stage": 3}


@pytest.mark.parametrize(
    "seconds, words",
    [(0.2, "under 1 s"), (12.4, "12 s"), (89, "89 s"), (420, "7 min"), (5400, "1.5 h")],
)
def test_duration_in_words(seconds, words):
    assert progress.duration(seconds) == words


def test_seconds_are_gathered_by_kind_over_the_models():
    done = [{"l2": {"seconds": 2.0}, "metrics": {"seconds": 1.0}}, {"l2": {"seconds": 4.0}}]
    assert progress.seconds_by_kind(done) == {"l2": [2.0, 4.0], "metrics": [1.0]}


def test_start_line_estimates_from_the_finished_units_of_its_kind():
    line = progress.start_line(ROW, "l2", (0, 10), {"l2": [20.0, 40.0]})
    assert (
        line
        == "mnist T=20 stage 3 l2 on test images 0-10: started, about 30 s (mean of 2 finished)"
    )
    first = progress.start_line(ROW, "l0", (0, 10), {"l2": [20.0]})
    assert first.endswith("started, first of its kind, no estimate yet")


def test_time_left_adds_the_mean_times_and_names_the_unknown_kinds():
    measured = {"l2": [60.0], "metrics": [30.0]}
    assert progress.time_left([], measured) == "; evaluation complete"
    assert progress.time_left(["l2"], measured) == "; 1 unit left, about 60 s"
    assert progress.time_left(["l2", "l2", "metrics", "l0"], measured) == (
        "; 4 units left, about 2 min plus the l0 units"
    )


def test_unit_lines_give_each_kind_its_headline():
    metrics = {"metrics": {"test_accuracy": 0.9812, "confidence": 0.95}, "seconds": 3.0}
    assert progress.unit_line(ROW, "metrics", metrics) == (
        "mnist T=20 stage 3 metrics: accuracy 98.12%, confidence 0.950 (3.0 s)"
    )
    stats = {"attacked": 4, "excluded": 0, "successes": 2, "sum": 3.0, "max": 2.0}
    line = progress.unit_line(ROW, "l2", {"statistics": stats, "seconds": 12.0})
    assert line.endswith("l2: success 0.50 of 4, mean 1.5, max 2 (12.0 s)")
    apgd = {"statistics": stats | {"eps": 0.3}, "seconds": 1.0}
    line = progress.unit_line(ROW, "apgd_ce", apgd)
    assert "robust accuracy 0.50 at eps 0.3, success 0.50 of 4" in line
    flags = {"silent_success": [True, False], "vanishing_gradients": None}
    line = progress.unit_line(ROW, "l2_indicators", {"flags": flags, "index": [0, 1], "seconds": 1})
    assert "silent_success 1, incomplete_optimization -" in line
    assert line.endswith("of 2 attacked images (1.0 s)")


def test_short_estimates_say_under_1_s_without_about():
    assert progress.about(0.2) == "under 1 s"
    assert progress.about(12.4) == "about 12 s"
    assert progress.time_left(["l2"], {"l2": [0.1]}) == "; 1 unit left, under 1 s"


def test_an_attack_that_fooled_no_image_says_so_instead_of_nan():
    none = {"attacked": 2, "excluded": 0, "successes": 0, "sum": 0.0, "max": 0.0}
    line = progress.unit_line(ROW, "l0", {"statistics": none, "seconds": 3.0})
    assert line.endswith("l0: success 0.00 of 2, no image fooled (3.0 s)")
    nothing = dict(none, attacked=0, excluded=2)
    line = progress.unit_line(ROW, "l0", {"statistics": nothing, "seconds": 0.1})
    assert "no image attacked" in line and "nan" not in line


def test_expected_cost_comes_from_finished_units_and_names_the_rest():
    measured = {"l2": [600.0], "metrics": [60.0]}
    line = progress.expected_cost(["metrics", "l2", "l2"], measured, 10)
    assert line == (
        "expected cost: about 21 min on this CPU for 3 of the 3 units (the mean time of the "
        "finished units of their kinds)"
    )
    line = progress.expected_cost(["l2", "l0"], measured, 10)
    assert line.endswith("; no measured time yet for l0 (their first units give one)")
    assert "smoke_eval" not in line
    paper = progress.expected_cost(["metrics", "l0", "l2"], {}, 1000)
    assert paper.startswith("expected cost: no measured time yet for l0, l2, metrics")
    assert "takes hours on a CPU" in paper and "--flagfile=flags/smoke_eval.cfg" in paper
    assert progress.expected_cost([], measured, 1000) == "expected cost: nothing to compute"
