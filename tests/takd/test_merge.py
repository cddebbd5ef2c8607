"""Merging shard CSVs: exact sums, maxima and counts; refusal of incomplete or foreign shard sets;
the `python -m keras_takd.takd.merge` command line."""

import math
import pathlib

import pandas as pd
import pytest

from keras_takd.takd import evaluation

REPO = pathlib.Path(__file__).resolve().parents[2]
COMMAND = "keras_takd.takd.merge"


def _shard(index, num_shards, l2, config="abc123abc123", with_metrics=None):
    """One shard's CSV rows for two models; l2 = [(attacked, excluded, successes, sum, max)]."""
    rows = []
    for stage, (attacked, excluded, successes, total, largest) in zip((1, 2), l2, strict=True):
        row = {
            "dataset": "mnist",
            "temperature": 20.0,
            "stage": stage,
            "role": ["teacher", "student"][stage - 1],
            "test_accuracy": 0.9,
            "stages": 2,
            "shard_index": index,
            "num_shards": num_shards,
            "l2_attacked": attacked,
            "l2_excluded": excluded,
            "l2_successes": successes,
            "l2_sum": total,
            "l2_max": largest,
            "l2_budget": 1.0,
            "l2_budget_within": successes // 2,
            "eval_config": config,
        }
        if with_metrics is not None:
            row["confidence"] = with_metrics[stage - 1]
        rows.append(row)
    return pd.DataFrame(rows)


def _write(tmp_path, frames):
    paths = []
    for i, frame in enumerate(frames):
        paths.append(tmp_path / f"shard{i}.csv")
        frame.to_csv(paths[-1], index=False)
    return paths


def test_merge_adds_counts_and_sums_and_takes_the_max(tmp_path):
    paths = _write(
        tmp_path,
        [
            _shard(0, 2, [(4, 1, 2, 1.5, 1.0), (5, 0, 0, 0.0, math.nan)], with_metrics=[0.8, 0.7]),
            _shard(1, 2, [(3, 2, 3, 3.0, 1.25), (4, 1, 0, 0.0, math.nan)]),
        ],
    )
    merged = evaluation.merge_shards(paths[::-1]).set_index("stage")
    assert merged.loc[1, "l2_attacked"] == 7 and merged.loc[1, "l2_excluded"] == 3
    assert merged.loc[1, "l2_mean"] == pytest.approx(4.5 / 5)
    assert merged.loc[1, "l2_max"] == 1.25
    assert merged.loc[1, "l2_success_rate"] == pytest.approx(5 / 7)
    assert merged.loc[1, "l2_budget_success_rate"] == pytest.approx((1 + 1) / 7)
    assert math.isnan(merged.loc[2, "l2_mean"]) and math.isnan(merged.loc[2, "l2_max"])
    assert merged.loc[2, "l2_success_rate"] == 0.0
    assert list(merged["confidence"]) == [0.8, 0.7]  # from shard 0
    assert not {"shard_index", "num_shards", "l2_sum", "l2_successes"} & set(merged.columns)


@pytest.mark.parametrize(
    "frames, error",
    [
        (
            [_shard(0, 3, [(1, 0, 1, 1.0, 1.0)] * 2), _shard(1, 3, [(1, 0, 1, 1.0, 1.0)] * 2)],
            "0..2",
        ),
        (
            [_shard(0, 2, [(1, 0, 1, 1.0, 1.0)] * 2), _shard(0, 2, [(1, 0, 1, 1.0, 1.0)] * 2)],
            "0..1",
        ),
        (
            [
                _shard(0, 2, [(1, 0, 1, 1.0, 1.0)] * 2),
                _shard(1, 2, [(1, 0, 1, 1.0, 1.0)] * 2, config="def456def456"),
            ],
            "different evaluation configurations",
        ),
        (
            [
                _shard(0, 2, [(1, 0, 1, 1.0, 1.0)] * 2),
                _shard(1, 2, [(1, 0, 1, 1.0, 1.0)] * 2).assign(l2_attacked=math.nan),
            ],
            "lacks l2 results",
        ),
        ([_shard(0, 1, [(1, 0, 1, 1.0, 1.0)] * 2).assign(loss=1.0)], "foreign columns"),
        ([_shard(0, 1, [(1, 0, 1, 1.0, 1.0)] * 2).drop(columns=["eval_config"])], "not a shard"),
    ],
)
def test_incomplete_or_foreign_shard_sets_are_refused(tmp_path, frames, error):
    with pytest.raises(ValueError, match=error):
        evaluation.merge_shards(_write(tmp_path, frames))


def test_cli_writes_the_merged_csv_and_fails_with_one_line(cli, tmp_path):
    frames = [
        _shard(0, 2, [(2, 0, 1, 0.5, 0.5)] * 2, with_metrics=[0.8, 0.7]),
        _shard(1, 2, [(2, 0, 1, 0.25, 0.25)] * 2),
    ]
    paths = _write(tmp_path, frames)
    done = cli(COMMAND, "--results=shard0.csv", "--output=merged.csv", cwd=tmp_path)
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "0..1" in done.stderr and not (tmp_path / "merged.csv").exists()
    done = cli(COMMAND, f"--results={paths[1]},{paths[0]}", "--output=merged.csv", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / "merged.csv"), evaluation.merge_shards(paths), check_dtype=False
    )
    # an output holding another evaluation's results is refused
    pd.read_csv(tmp_path / "merged.csv").assign(eval_config="def456def456").to_csv(
        tmp_path / "other.csv", index=False
    )
    done = cli(COMMAND, "--results=shard0.csv,shard1.csv", "--output=other.csv", cwd=tmp_path)
    assert done.returncode == 1 and "configuration" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
