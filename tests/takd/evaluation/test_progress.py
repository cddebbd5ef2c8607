"""The progress lines: durations in words, expected times from the finished units, time left."""

import time

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


def test_no_line_says_about_under_or_nan():
    assert progress.about(0.2) == "under 1 s"
    assert progress.about(12.4) == "about 12 s"
    assert progress.time_left(["l2"], {"l2": [0.1]}) == "; 1 unit left, under 1 s"
    none_fooled = {"attacked": 2, "excluded": 0, "successes": 0, "sum": 0.0, "max": float("nan")}
    line = progress.unit_line(ROW, "l0", {"statistics": none_fooled, "seconds": 1.0})
    assert line.endswith("l0: success 0.00 of 2, no image fooled (1.0 s)")
    none_attacked = {"attacked": 0, "excluded": 2, "successes": 0, "sum": 0.0, "max": float("nan")}
    line = progress.unit_line(ROW, "l2", {"statistics": none_attacked, "seconds": 0.0})
    assert "no image attacked" in line
    assert "nan" not in line


def test_a_long_evaluation_says_its_cost_first():
    assert progress.reference_seconds("l2", 100, default_settings=True) == pytest.approx(2180)
    assert progress.reference_seconds("l2_softmax_T", 10, default_settings=True) == 218
    assert progress.reference_seconds("l2", 100, default_settings=False) is None
    assert progress.reference_seconds("apgd_ce", 100, default_settings=True) is None
    assert progress.cost_line({"l2": 60.0}, "flags/smoke_eval.cfg") == ""
    line = progress.cost_line({"l2": 7200.0, "l0": 3600.0}, "flags/smoke_eval.cfg")
    assert line.startswith("expected cost: up to about 3.0 h (l0 60 min, l2 2.0 h;")
    assert line.endswith("use --flagfile=flags/smoke_eval.cfg or fewer --num_images")


def test_a_long_unit_says_it_is_still_running():
    lines = []
    heartbeat = progress.Heartbeat(lines.append, interval=0.05)
    heartbeat.started("key", "mnist T=1 stage 1 l0", expected=600.0)
    deadline = time.monotonic() + 30  # a loaded machine may run the heartbeat's thread late
    while len(lines) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    heartbeat.ended("key")
    count = len(lines)
    time.sleep(0.2)
    heartbeat.stop()
    assert count >= 2
    assert len(lines) == count  # nothing after the unit ended
    assert lines[0].startswith("mnist T=1 stage 1 l0: still running, ")  # under 1 s, if on time
    assert lines[0].endswith(" of about 10 min expected")


def test_an_indicator_is_explained_once_per_evaluation():
    from keras_takd.takd.evaluation.indicator_units import indicator_warnings

    unit = {"flags": {"silent_success": [True, True]}, "index": [0, 1]}
    explained = set()
    first = indicator_warnings(ROW, "l0_indicators", unit, explained)
    again = indicator_warnings(ROW | {"stage": 2}, "l0_indicators", unit, explained)
    assert len(first) == len(again) == 1
    assert "overstate" in first[0]
    assert again[0] == (
        "warning: mnist T=20 stage 2 l0: indicator of attack failure 'silent_success' tripped "
        "on 2 of 2 attacked images"
    )
