"""`merge_shards` beyond the counts of tests/takd/test_merge.py: indicator counts, APGD's
radius, and the refusals of a shard set that is not one evaluation's."""

import math

import pandas as pd
import pytest

from keras_takd.takd.evaluation import shards


def _shard(index, num_shards, stages=(1, 2), **columns):
    """One shard's rows: an APGD attack's statistics and its indicator counts per model."""
    rows = []
    for stage in stages:
        row = {
            "dataset": "mnist",
            "temperature": 20.0,
            "stage": stage,
            "role": "teacher" if stage == 1 else "student",
            "shard_index": index,
            "num_shards": num_shards,
            "apgd_ce_attacked": 4,
            "apgd_ce_excluded": 1,
            "apgd_ce_successes": 1,
            "apgd_ce_sum": 0.3,
            "apgd_ce_max": 0.3,
            "apgd_ce_eps": 0.3,
            "apgd_ce_silent_success": 1,
            "eval_config": "abc123abc123",
            "weights_sha256": str(stage) * 64,
        }
        rows.append(row | columns)
    return pd.DataFrame(rows)


def _write(tmp_path, frames):
    paths = [tmp_path / f"results_shard{i}of{len(frames)}.csv" for i in range(len(frames))]
    for path, frame in zip(paths, frames, strict=True):
        frame.to_csv(path, index=False)
    return paths


def test_apgd_keeps_its_radius_and_indicator_counts_add_up(tmp_path):
    merged = shards.merge_shards(_write(tmp_path, [_shard(0, 2), _shard(1, 2)]))
    assert list(merged["apgd_ce_eps"]) == [0.3, 0.3]
    assert list(merged["apgd_ce_robust_accuracy"]) == [0.6, 0.6]  # (8 - 2) of 10 images
    assert list(merged["apgd_ce_silent_success"]) == [2, 2]
    assert not {"shard_index", "apgd_ce_sum", "apgd_ce_successes"} & set(merged.columns)


def test_an_indicator_one_shard_did_not_check_is_unknown_not_zero(tmp_path):
    unchecked = _shard(1, 2, apgd_ce_silent_success=math.nan)
    merged = shards.merge_shards(_write(tmp_path, [_shard(0, 2), unchecked]))
    assert merged["apgd_ce_silent_success"].isna().all()


def test_no_indicator_columns_when_no_shard_checked_them(tmp_path):
    frames = [_shard(i, 2).drop(columns="apgd_ce_silent_success") for i in (0, 1)]
    merged = shards.merge_shards(_write(tmp_path, frames))
    assert "apgd_ce_silent_success" not in merged.columns


@pytest.mark.parametrize(
    "frames, error, message",
    [
        ([], ValueError, "no shard CSV given"),
        ([_shard(0, 2), _shard(1, 2, stages=(1, 3))], ValueError, "holds other models"),
        (
            [pd.concat([_shard(0, 2), _shard(1, 2)]), _shard(1, 2)],
            ValueError,
            "mixes several values of shard_index",
        ),
    ],
)
def test_a_set_that_is_not_one_evaluations_shards_is_refused(tmp_path, frames, error, message):
    with pytest.raises(error, match=message):
        shards.merge_shards(_write(tmp_path, frames))


def test_a_missing_shard_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="results_shard0of2.csv not found"):
        shards.merge_shards([tmp_path / "results_shard0of2.csv"])
