"""Evaluating a run of several seeds (issue 25): every (T, seed, stage) model, keyed by seed.

The tiny chain trained with seeds 3 and 4 (`tiny_seeds_run`), attacked by the deterministic
stand-in (`fake_attacks`), so the attack calls can be counted.
"""

import contextlib
import sqlite3

import pandas as pd
import pytest

from keras_takd.takd import evaluation
from keras_takd.takd.analysis import tables
from keras_takd.takd.analysis.claims import report
from keras_takd.takd.evaluation.indicator_units import indicator_unit

SETTINGS = dict(num_images=8, metric_images=16, attacks=("l2",), gradient_masking=False)
MODELS = [(3, 1), (3, 2), (4, 1), (4, 2)]  # (seed, stage)
KEY = ["dataset", "temperature", "stage", "seed"]


def _units(run_dir) -> list[tuple]:
    """(seed, stage, kind) of every unit in the run's record, sorted."""
    with contextlib.closing(sqlite3.connect(run_dir / "record.sqlite")) as connection:
        return sorted(connection.execute("SELECT seed, stage, kind FROM units").fetchall())


def _forget(run_dir, seed: int, stage: int, kind: str) -> None:
    with contextlib.closing(sqlite3.connect(run_dir / "record.sqlite")) as connection:
        with connection:
            connection.execute(
                "DELETE FROM units WHERE seed = ? AND stage = ? AND kind = ?", (seed, stage, kind)
            )


def _tables(folder, name="results") -> dict[str, bytes]:
    stem = "" if name == "results" else f"{name}_"
    files = (f"{name}.csv", f"{stem}per_image.csv", f"{stem}predictions.csv")
    return {f: (folder / f).read_bytes() for f in files}


def test_every_model_of_every_seed_is_evaluated_into_tables_with_a_seed_column(
    tiny_seeds_run, monkeypatch, evaluate, fake_attacks
):
    run_dir, data = tiny_seeds_run
    fake = fake_attacks()
    fake.install(monkeypatch)
    evaluate(run_dir, data, **SETTINGS)
    assert len(fake.calls) == len(MODELS)  # one L2 attack per model
    results = pd.read_csv(run_dir / "results.csv")
    per_image = pd.read_csv(run_dir / "per_image.csv")
    predictions = pd.read_csv(run_dir / "predictions.csv")
    for table in (results, per_image, predictions):
        assert list(table.columns[:4]) == KEY
        assert sorted(set(zip(table.seed, table.stage, strict=True))) == MODELS
    assert list(zip(results.seed, results.stage, strict=True)) == MODELS
    assert results[["test_accuracy", "l2_attacked", "metric_images"]].notna().all().all()
    assert len(per_image) == len(MODELS) * 8 and len(predictions) == len(MODELS) * 16
    with contextlib.closing(sqlite3.connect(run_dir / "record.sqlite")) as connection:
        weights = connection.execute("SELECT DISTINCT seed, stage, weights_sha256 FROM units")
        assert len({sha for _, _, sha in weights}) == len(MODELS)  # each seed's own weights
    kinds = ("l2", indicator_unit("l2"), "metrics")
    assert _units(run_dir) == sorted((s, k, kind) for s, k in MODELS for kind in kinds)
    # the analysis reads the seed column back
    read = tables.read_per_image(run_dir, tables.read_results(run_dir / "results.csv"))
    assert list(read.columns[:4]) == KEY and sorted(read.seed.unique()) == [3, 4]


def test_resuming_a_run_of_seeds_computes_only_the_missing_unit(
    tiny_seeds_run, monkeypatch, evaluate, fake_attacks
):
    run_dir, data = tiny_seeds_run
    fake = fake_attacks()
    fake.install(monkeypatch)
    evaluate(run_dir, data, **SETTINGS)
    first = _tables(run_dir)
    evaluate(run_dir, data, **SETTINGS)
    assert len(fake.calls) == len(MODELS) and _tables(run_dir) == first  # nothing twice
    _forget(run_dir, seed=4, stage=2, kind="l2")
    evaluate(run_dir, data, **SETTINGS)
    assert len(fake.calls) == len(MODELS) + 1  # seed 4's student only, not seed 3's
    assert _tables(run_dir) == first


def test_models_names_a_model_of_one_seed(tiny_seeds_run, monkeypatch, fake_attacks):
    run_dir, data = tiny_seeds_run
    fake = fake_attacks()
    fake.install(monkeypatch)
    config = evaluation.EvaluationConfig(**SETTINGS)
    with pytest.raises(ValueError, match=r"models T5/stage2: .*\(it has T5/seed3/stage1,"):
        evaluation.evaluate_run(run_dir, data, config, models=["T5/stage2"])
    lines = []
    evaluation.evaluate_run(run_dir, data, config, models=["T5/seed4/stage2"], log=lines.append)
    assert len(fake.calls) == 1
    units = [line for line in lines if line.startswith("[")]
    assert units and all("mnist T=5 seed 4 stage 2 " in line for line in units)
    assert {(s, k) for s, k, _ in _units(run_dir)} == {(4, 2)}
    results = pd.read_csv(run_dir / "results.csv")
    assert list(zip(results.seed, results.stage, strict=True)) == MODELS  # every model kept
    assert results.l2_attacked.notna().tolist() == [False, False, False, True]


def test_shards_of_a_run_of_seeds_merge_into_its_record(
    tiny_seeds_run, monkeypatch, evaluate, fake_attacks
):
    run_dir, data = tiny_seeds_run
    fake_attacks().install(monkeypatch)
    whole = evaluate(run_dir, data, **SETTINGS, output=run_dir / "whole.csv")
    assert list(whole.columns[:4]) == KEY
    paths = []
    for i in (1, 0):
        evaluate(run_dir, data, **SETTINGS, shard_index=i, num_shards=2)
        paths.append(run_dir / f"results_shard{i}of2.csv")
        shard = pd.read_csv(paths[-1])
        assert list(shard.columns[:4]) == KEY and len(shard) == len(MODELS)
    merged = evaluation.merge_shards(paths)
    pd.testing.assert_frame_equal(merged, whole, check_dtype=False, rtol=1e-12)
    table, per_image = evaluation.write_merged(run_dir / "results.csv", paths)
    evaluation.merge_predictions(paths, run_dir / "results.csv")
    exported = pd.read_csv(run_dir / "results.csv")
    assert list(zip(exported.seed, exported.stage, strict=True)) == MODELS
    metrics = [c for c in whole.columns if c.startswith(("l2_", "test_accuracy"))]
    pd.testing.assert_frame_equal(
        exported[KEY + metrics], whole[KEY + metrics], check_dtype=False, rtol=1e-12
    )
    for name in ("per_image", "predictions"):
        ours = pd.read_csv(run_dir / f"{name}.csv").sort_values(KEY, kind="stable")
        theirs = pd.read_csv(run_dir / f"whole_{name}.csv").sort_values(KEY, kind="stable")
        pd.testing.assert_frame_equal(ours.reset_index(drop=True), theirs.reset_index(drop=True))


def test_claims_of_a_run_of_seeds_are_made_at_the_seed_level(
    tiny_seeds_run, monkeypatch, evaluate, fake_attacks
):
    run_dir, data = tiny_seeds_run
    fake_attacks().install(monkeypatch)
    evaluate(run_dir, data, **SETTINGS)
    text = report.render([str(run_dir / "results.csv")], None, None, 0.95)
    assert "C&W L2, seed level: the student is more robust than the teacher" in text
    assert "over 2 seeds" in text
