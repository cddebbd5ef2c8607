"""Merging shard CSVs: exact sums, maxima and counts; refusal of incomplete or foreign shard sets;
the `python -m keras_takd.takd.merge` command line."""

import math
import pathlib
import shutil
import sqlite3

import pandas as pd
import pytest

from keras_takd.core.locking import FolderInUseError
from keras_takd.takd import evaluation

REPO = pathlib.Path(__file__).resolve().parents[2]
COMMAND = "keras_takd.takd.merge"


def _shard(index, num_shards, l2, config="abc123abc123", with_metrics=None, weights="ab"):
    """One shard's CSV rows for two models; l2 = [(attacked, excluded, successes, sum, max)];
    the models' weights sha256 are 64 times `weights[0]` and `weights[1]`."""
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
            "weights_sha256": weights[stage - 1] * 64,
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
        (
            [_shard(0, 1, [(1, 0, 1, 1.0, 1.0)] * 2).drop(columns=["weights_sha256"])],
            "records no model weights",
        ),
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


def test_shards_of_two_runs_are_refused_naming_the_model_and_both_hashes(tmp_path):
    """Issue 23 hole 2: shard 0 of one run, shard 1 of another (same settings and models)."""
    paths = _write(
        tmp_path,
        [
            _shard(0, 2, [(1, 0, 1, 1.0, 1.0)] * 2),
            _shard(1, 2, [(1, 0, 1, 1.0, 1.0)] * 2, weights="ac"),
        ],
    )
    message = (
        f"^mnist T=20 stage 2 has weights bbbbbbbbbbbb in {paths[0]} and cccccccccccc in "
        f"{paths[1]}: shards of different runs are not merged$"
    )
    with pytest.raises(ValueError, match=message):
        evaluation.merge_shards(paths)


def _sharded(run_dir, data, evaluate):
    """The run evaluated in two shards (fake attacks); the shard CSVs."""
    for i in (0, 1):
        evaluate(run_dir, data, num_images=4, metric_images=8, shard_index=i, num_shards=2)
    return [run_dir / f"results_shard{i}of2.csv" for i in (0, 1)]


def test_a_merge_into_the_run_is_written_to_its_record(tiny_run, monkeypatch, evaluate,
                                                        fake_attacks):  # fmt: skip
    run_dir, data = tiny_run
    fake_attacks().install(monkeypatch)
    whole = evaluate(run_dir, data, num_images=4, metric_images=8, output=run_dir / "whole.csv")
    paths = _sharded(run_dir, data, evaluate)
    table, per_image = evaluation.write_merged(run_dir / "results.csv", paths)
    pd.testing.assert_frame_equal(table, whole, check_dtype=False, rtol=1e-12)
    assert (run_dir / "per_image.csv").read_bytes() == (
        run_dir / "whole_per_image.csv"
    ).read_bytes()
    with sqlite3.connect(run_dir / "record.sqlite") as connection:
        (evaluations,) = connection.execute("SELECT count(*) FROM model_evaluation").fetchone()
    assert evaluations == 2


def test_a_merge_is_refused_while_a_training_holds_the_run(
    tiny_run, monkeypatch, evaluate, fake_attacks, held_by_another_process
):
    """Issue 23 hole 9: merged while a longer chain trained, the table held two students."""
    run_dir, data = tiny_run
    fake_attacks().install(monkeypatch)
    paths = _sharded(run_dir, data, evaluate)
    before = (run_dir / "results.csv").read_bytes()
    with held_by_another_process(run_dir) as pid:
        with pytest.raises(FolderInUseError, match=f"in use by process {pid} .run.lock"):
            evaluation.write_merged(run_dir / "results.csv", paths)
    assert (run_dir / "results.csv").read_bytes() == before


@pytest.mark.parametrize(
    "change, error",
    [
        ("DELETE FROM models WHERE stage = 2", "mnist T=5 stage 2 is merged but .* no such model"),
        (
            "UPDATE models SET stages = 3",
            "mnist T=5 stage 1 of a chain of 2 stages is merged, .* has a chain of 3",
        ),
    ],
)
def test_a_merge_is_refused_models_the_run_does_not_have(
    tiny_run, monkeypatch, evaluate, fake_attacks, change, error
):
    run_dir, data = tiny_run
    fake_attacks().install(monkeypatch)
    paths = _sharded(run_dir, data, evaluate)
    with sqlite3.connect(run_dir / "record.sqlite") as connection:
        connection.execute(change)
    with pytest.raises(ValueError, match=error):
        evaluation.write_merged(run_dir / "results.csv", paths)


def test_a_merge_is_refused_shards_of_other_weights_than_the_runs(
    tiny_run, monkeypatch, evaluate, fake_attacks
):
    run_dir, data = tiny_run
    fake_attacks().install(monkeypatch)
    paths = _sharded(run_dir, data, evaluate)
    stage1, stage2 = (run_dir / f"mnist/T5/stage{k}/model.keras" for k in (1, 2))
    shutil.copyfile(stage2, stage1)  # the run's teacher retrained since the shards ran
    with pytest.raises(ValueError, match="mnist T=5 stage 1 has weights .* in the shards and"):
        evaluation.write_merged(run_dir / "results.csv", paths)
