"""results.csv and per_image.csv exported from a run's record: a seed column for several
seeds, none for one; a copied run folder points at its own models."""

import json
import pathlib
import shutil

import pandas as pd
import pytest

from keras_takd.core import record
from keras_takd.core.distillation import TrainConfig
from keras_takd.takd.chains import run_chain
from keras_takd.takd.exports import export_run


def _record(folder, seeds):
    """A record of 2-model chains at T = 5, one per seed, with an evaluation of 2 images."""
    models = [
        {"dataset": "mnist", "temperature": 5.0, "seed": s, "stage": k}
        | {"role": "teacher" if k == 1 else "student", "stages": 2, "test_accuracy": 0.9}
        | {"val_accuracy": 0.9, "train_seconds": 1.0, "epochs": 1}
        | {"saved_model": f"m{s}{k}", "keras_model": f"m{s}{k}.keras"}
        for s in seeds
        for k in (1, 2)
    ]
    key = ("dataset", "temperature", "seed", "stage")
    columns = [{c: m[c] for c in key} | {"eval_config": "abc"} for m in models]
    per_image = [
        {c: m[c] for c in key}
        | {"attack": "fmn_l2", "image": i, "correct": 1, "success": 1}
        | {"distance": 1.0 + m["seed"] + i / 10, "const": None, "iterations": None}
        for m in models
        for i in (1, 0)
    ]
    with record.writing(folder) as connection:
        record.put_models(connection, models)
        record.put_evaluation(connection, "abc", {"settings": 1})
        record.put_evaluation_rows(connection, "abc", columns, per_image)


@pytest.mark.parametrize("seeds", [[0], [2, 7]])
def test_the_tables_carry_a_seed_column_for_several_seeds_only(tmp_path, seeds):
    _record(tmp_path, seeds)
    table = export_run(tmp_path)
    results = pd.read_csv(tmp_path / "results.csv")
    images = pd.read_csv(tmp_path / "per_image.csv")
    if len(seeds) == 1:
        assert "seed" not in results.columns and "seed" not in images.columns
        assert len(images) == 4
        return
    for written in (table, results, images):
        assert list(written.columns[:4]) == ["dataset", "temperature", "stage", "seed"]
    assert list(zip(results.seed, results.stage, strict=True)) == [(2, 1), (2, 2), (7, 1), (7, 2)]
    assert list(images.seed) == [2] * 4 + [7] * 4
    assert list(images.image) == [0, 1] * 4  # sorted within each seed's model
    kept_whole = images.distance - images.seed - images.image / 10  # 1.0 in every written row
    assert kept_whole.tolist() == pytest.approx([1.0] * 8)


@pytest.mark.parametrize("seed_folders", [True, False])
def test_a_run_of_several_seeds_has_the_seed_column_from_its_first_seed_on(tmp_path, seed_folders):
    """A study of several seeds exports after each chain: while its record holds seed 0 only,
    its tables already carry the column (run.json says seeds are kept apart), so a seed's
    tables committed as it finishes read as the later ones do."""
    replicates = {"replicates": {"seed_folders": True}} if seed_folders else {}
    (tmp_path / "run.json").write_text(json.dumps({"configuration": replicates}))
    _record(tmp_path, [0])
    export_run(tmp_path)
    for name in ("results.csv", "per_image.csv"):
        table = pd.read_csv(tmp_path / name)
        assert ("seed" in table.columns) is seed_folders, name
        if seed_folders:
            assert list(table.columns[:4]) == ["dataset", "temperature", "stage", "seed"]
            assert set(table.seed) == {0}


@pytest.mark.slow
@pytest.mark.parametrize("run, seeds", [("tiny_run", None), ("tiny_seeds_run", [3, 4])])
def test_a_copied_run_evaluates_and_resumes_on_its_own_models(
    request, tmp_path, monkeypatch, evaluate, fake_attacks, run, seeds
):
    """A run resumed in place records its own paths; its copy, once the original is gone,
    points at the copy's models in its tables and record."""
    original, data = request.getfixturevalue(run)
    config = TrainConfig(epochs=1, batch_size=32, learning_rate=0.05, seed=3)
    lines = []
    run_chain(data, [5.0], 2, original, config, verbose=0, log=lines.append, seeds=seeds)
    assert lines == []  # every stage complete: nothing trained
    assert all(
        pathlib.Path(m["keras_model"]).is_relative_to(original) for m in record.models(original)
    )
    copy = shutil.copytree(original, tmp_path / "copy")
    shutil.rmtree(original)
    fake_attacks().install(monkeypatch)
    evaluate(copy, data, num_images=4, metric_images=8, attacks=("l2",), gradient_masking=False)
    results = pd.read_csv(copy / "results.csv")
    for path in (*results.keras_model, *results.saved_model):
        assert pathlib.Path(path).is_relative_to(copy) and pathlib.Path(path).exists()
    run_chain(data, [5.0], 2, copy, config, verbose=0, log=lines.append, seeds=seeds)
    assert lines == []
    assert sorted(m["keras_model"] for m in record.models(copy)) == sorted(results.keras_model)
    pd.testing.assert_frame_equal(pd.read_csv(copy / "results.csv"), results)
