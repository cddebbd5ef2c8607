"""Attack statistics and the results CSV: sufficient statistics, final and shard columns,
column order, integer counts, and the upsert that refuses another configuration."""

import math
import types

import numpy as np
import pandas as pd
import pytest

from keras_takd.core.results import ConfigMismatchError
from keras_takd.takd.evaluation import tables
from keras_takd.takd.schema import CHAIN_COLUMNS


def _result(success, l2):
    """A duck-typed attack result over the correctly classified images."""
    l2 = np.asarray(l2, np.float64)
    return types.SimpleNamespace(success=np.asarray(success, bool), l0=l2, l2=l2, linf=l2)


def test_attack_statistics_are_sums_and_counts_of_the_successful_images():
    correct = np.array([True, False, True, True, True])
    result = _result([True, False, True, True], [0.5, 9.0, 1.5, 0.25])
    stats = tables.attack_statistics(result, "l2", correct, budget=1.0)
    assert stats == {
        "attacked": 4,
        "excluded": 1,
        "successes": 3,
        "sum": 2.25,
        "max": 1.5,
        "budget": 1.0,
        "within": 2,  # 0.5 and 0.25
    }
    assert "budget" not in tables.attack_statistics(result, "l2", correct)


def test_empty_statistics_count_the_excluded_images_and_keep_the_budget():
    stats = tables.empty_statistics(3, None)
    assert math.isnan(stats.pop("max"))
    assert stats == {"attacked": 0, "excluded": 3, "successes": 0, "sum": 0.0}
    assert tables.empty_statistics(3, 0.1) | {"max": 0} == stats | {
        "max": 0,
        "budget": 0.1,
        "within": 0,
    }


def test_final_columns_of_a_minimal_norm_attack():
    stats = {"attacked": 4, "excluded": 1, "successes": 3, "sum": 2.25, "max": 1.5}
    row = tables.final_columns("l2", stats | {"budget": 1.0, "within": 2})
    assert row == {
        "l2_mean": 0.75,
        "l2_max": 1.5,
        "l2_success_rate": 0.75,
        "l2_attacked": 4,
        "l2_excluded": 1,
        "l2_budget": 1.0,
        "l2_budget_success_rate": 0.5,
    }
    none = tables.final_columns("l0", stats | {"attacked": 0, "successes": 0})
    assert math.isnan(none["l0_mean"]) and math.isnan(none["l0_success_rate"])


def test_final_columns_of_apgd_give_robust_accuracy_at_its_radius():
    stats = {"attacked": 8, "excluded": 2, "successes": 6, "sum": 1.8, "max": 0.3, "eps": 0.3}
    row = tables.final_columns("apgd_ce", stats)
    assert row == {
        "apgd_ce_eps": 0.3,
        "apgd_ce_robust_accuracy": 0.2,  # (8 - 6) of the 10 images
        "apgd_ce_success_rate": 0.75,
        "apgd_ce_attacked": 8,
        "apgd_ce_excluded": 2,
    }


def test_shard_columns_keep_the_sufficient_statistics():
    stats = {"attacked": 4, "excluded": 1, "successes": 3, "sum": 2.25, "max": 1.5}
    assert tables.shard_columns("linf", stats | {"budget": 0.1, "within": 1}) == {
        "linf_attacked": 4,
        "linf_excluded": 1,
        "linf_successes": 3,
        "linf_sum": 2.25,
        "linf_max": 1.5,
        "linf_budget": 0.1,
        "linf_budget_within": 1,
    }


def _rows(config="abc123abc123", **columns):
    base = {"dataset": "mnist", "temperature": 5.0, "role": "teacher", "eval_config": config}
    return [base | {"stage": stage, **columns} for stage in (2, 1)]


def test_write_results_orders_columns_counts_as_integers_and_upserts(tmp_path):
    path = tmp_path / "results.csv"
    written = tables.write_results(
        path, _rows(l2_attacked=4.0, l2_mean=0.5, stages=2), "abc123abc123"
    )
    chain = ["dataset", "temperature", "stage", "role", "stages"]
    assert chain == [c for c in CHAIN_COLUMNS if c in written.columns]
    assert list(written.columns) == [*chain, "l2_mean", "l2_attacked", "eval_config"]
    assert list(written["stage"]) == [1, 2]  # sorted by key
    assert str(written["l2_attacked"].dtype) == "Int64"
    pd.testing.assert_frame_equal(pd.read_csv(path), written, check_dtype=False)
    again = tables.write_results(
        path, _rows(l2_attacked=5, l2_mean=0.5, stages=2)[:1], "abc123abc123"
    )
    assert list(again.set_index("stage")["l2_attacked"]) == [4, 5]  # stage 2 replaced


def test_write_results_refuses_rows_of_another_configuration(tmp_path):
    path = tmp_path / "results.csv"
    tables.write_results(path, _rows(l2_attacked=4), "abc123abc123")
    before = path.read_text()
    with pytest.raises(ConfigMismatchError, match="configuration abc123abc123"):
        tables.write_results(path, _rows("def456def456", l2_attacked=4), "def456def456")
    assert path.read_text() == before


def test_tidy_puts_shard_columns_after_the_training_columns():
    table = pd.DataFrame(
        [{"l2_sum": 1.0, "num_shards": 2, "dataset": "mnist", "shard_index": 0, "stage": 1}]
    )
    assert list(tables.tidy(table, sharded=True).columns) == [
        "dataset", "stage", "shard_index", "num_shards", "l2_sum",
    ]  # fmt: skip
