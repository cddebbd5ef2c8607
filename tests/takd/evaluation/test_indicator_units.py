"""The indicator units' warnings: each indicator explained once, then one short line each."""

from keras_takd.takd.evaluation.indicator_units import IndicatorWarnings
from keras_takd.takd.schema import INDICATORS


def _row(temperature):
    return {"dataset": "mnist", "temperature": temperature, "stage": 1}


def _unit(silent, vanishing):
    return {"flags": {"silent_success": silent, "vanishing_gradients": vanishing}, "index": [0, 1]}


def test_each_indicator_is_explained_once_then_named_in_a_short_line():
    warnings = IndicatorWarnings()
    first = warnings(_row(1.0), "l0_indicators", _unit([True, True], [False, False]))
    assert len(first) == 2
    assert INDICATORS["silent_success"] in first[0] and "mnist T=1" not in first[0]
    assert first[1] == (
        "warning: mnist T=1 stage 1 l0: 'silent_success' tripped on 2 of 2 attacked images"
    )
    again = warnings(_row(20.0), "l0_indicators", _unit([True, False], [True, False]))
    assert again[0] == (
        "warning: mnist T=20 stage 1 l0: 'silent_success' tripped on 1 of 2 attacked images"
    )
    assert INDICATORS["vanishing_gradients"] in again[1] and len(again) == 3
    assert all(line.startswith("warning: ") for line in first + again)


def test_units_that_flag_nothing_or_are_no_indicators_give_no_line():
    warnings = IndicatorWarnings()
    assert warnings(_row(1.0), "l0_indicators", _unit([False, False], None)) == []
    assert warnings(_row(1.0), "l0", {"statistics": {}}) == []
