"""The evaluation pipeline on a tiny trained chain: columns, values, resume, refusal, sharding.

Most tests replace the C&W attacks by a deterministic stand-in whose result is known from the
image alone, so the aggregation can be checked against a hand computation and the number of
attack calls counted; `test_two_shards_merged_equal_one_unsharded_run` uses the real L2 attack.
"""

import contextlib
import dataclasses
import json
import sqlite3
import zipfile

import numpy as np
import pandas as pd
import pytest

from keras_takd.core import metrics
from keras_takd.core.results import ConfigMismatchError
from keras_takd.takd import evaluation, schema
from keras_takd.takd.analysis import tables
from keras_takd.takd.schema import CHAIN_COLUMNS

NUM_IMAGES = 12
FEW = {"l2": {"max_iterations": 20, "binary_search_steps": 2}}


def _expected_attack_columns(model, x, y, prefix, means, budget=None):
    """The robustness columns of the fake attack, computed by hand."""
    correct = metrics.correctly_classified(model, x, y)
    m = means[correct]
    scale = {"l0": 1000.0, "l2": 10.0, "linf": 1.0}[prefix.split("_")[0]]
    success = m > 0.1
    distances = scale * m[success]
    expected = {
        f"{prefix}_attacked": int(correct.sum()),
        f"{prefix}_excluded": int((~correct).sum()),
        f"{prefix}_success_rate": success.mean(),
        f"{prefix}_mean": distances.mean(),
        f"{prefix}_max": distances.max(),
    }
    if budget is not None:
        expected[f"{prefix}_budget_success_rate"] = np.sum(distances <= budget) / correct.sum()
    return expected


def test_evaluation_accepts_every_column_a_training_run_writes():
    for sharded in (False, True):
        assert set(CHAIN_COLUMNS) <= evaluation.known_columns(None, sharded=sharded)


@pytest.mark.parametrize("num_images, shards", [(10, 1), (10, 3), (7, 7), (1000, 6)])
def test_shards_are_contiguous_blocks_covering_every_image_once(num_images, shards):
    blocks = [evaluation.shard_range(num_images, i, shards) for i in range(shards)]
    assert blocks[0][0] == 0 and blocks[-1][1] == num_images
    assert all(a[1] == b[0] for a, b in zip(blocks, blocks[1:], strict=False))
    with pytest.raises(ValueError, match="shard_index"):
        evaluation.shard_range(num_images, shards, shards)


def test_rows_columns_and_values_against_a_hand_computation(
    tiny_run, monkeypatch, evaluate, fake_attacks
):
    import keras

    run_dir, data = tiny_run
    fake = fake_attacks()
    fake.install(monkeypatch)
    table = evaluate(run_dir, data, num_images=NUM_IMAGES, metric_images=40, budgets={"l2": 1.2})
    written = pd.read_csv(run_dir / "results.csv")
    pd.testing.assert_frame_equal(written, table, check_dtype=False)
    expected = dict.fromkeys([*CHAIN_COLUMNS, *schema.METRIC_COLUMNS, "eval_config"])
    assert list(table.columns) == list(expected)
    assert list(table["stage"]) == [1, 2] and list(table["stages"]) == [2, 2]
    assert list(table["role"]) == ["teacher", "student"]
    assert table["eval_config"].nunique() == 1
    # one call per attack and model, on the correctly classified images only
    assert [c["attack"] for c in fake.calls] == ["l0", "l2", "linf", "l2"] * 2
    assert [c["probabilities"] for c in fake.calls] == [False, False, False, True] * 2
    assert [c["outputs_sum_to_one"] for c in fake.calls[3::4]] == [True, True]

    x, y = data.x_test[:NUM_IMAGES], data.y_test[:NUM_IMAGES]
    means = fake_attacks.pixel_means(x)
    predictions = tables.read_predictions(run_dir / "predictions.csv", table)
    for row in table.itertuples():
        model = keras.saving.load_model(run_dir / f"mnist/T5/stage{row.stage}/model.keras")
        expected = metrics.model_metrics(model, data.x_test[:40], data.y_test[:40])
        expected |= _expected_attack_columns(model, x, y, "l0", means)
        expected |= _expected_attack_columns(model, x, y, "l2", means, budget=1.2)
        expected |= _expected_attack_columns(model, x, y, "linf", means, budget=0.1)
        expected |= _expected_attack_columns(model, x, y, "l2_softmax_T", means)
        for column, value in expected.items():
            assert getattr(row, column) == pytest.approx(value, rel=1e-9), column
        assert row.l2_budget == 1.2 and row.linf_budget == 0.1
        # each model's prediction per metric image, beside the results (paired accuracy)
        mine = predictions[predictions["stage"] == row.stage]
        assert list(mine["image"]) == list(range(40))
        assert list(mine["label"]) == list(data.y_test[:40])
        logits = metrics.predict_logits(model, data.x_test[:40])
        assert list(mine["prediction"]) == list(logits.argmax(axis=-1))
        assert (mine["prediction"] == mine["label"]).mean() == pytest.approx(row.test_accuracy)

    config = json.loads((run_dir / "eval" / table["eval_config"][0] / "config.json").read_text())
    assert config["num_images"] == NUM_IMAGES and config["metric_images"] == 40
    assert config["attack_options"]["l2"]["max_iterations"] == 10_000  # the attack's default


def test_resume_after_a_kill_recomputes_only_the_missing_units(
    tiny_run, monkeypatch, evaluate, fake_attacks
):
    run_dir, data = tiny_run
    metric_calls = []
    real_model_metrics = metrics.model_metrics
    monkeypatch.setattr(
        metrics,
        "model_metrics",
        lambda *a, **k: metric_calls.append(1) or real_model_metrics(*a, **k),
    )
    killed = fake_attacks(fail_on_call=5)  # dies in the 2nd attack of the 2nd model
    killed.install(monkeypatch)
    kwargs = dict(attacks=("l2", "linf"), num_images=NUM_IMAGES, gradient_masking=True)
    with pytest.raises(KeyboardInterrupt):
        evaluate(run_dir, data, **kwargs)
    partial = pd.read_csv(run_dir / "results.csv")
    # model 1 finished (metrics, l2, linf, l2_softmax_T), model 2 has metrics and l2
    assert partial["l2_softmax_T_attacked"].notna().tolist() == [True, False]
    assert partial["l2_attacked"].notna().tolist() == [True, True]
    assert partial["linf_attacked"].notna().tolist() == [True, False]
    assert len(metric_calls) == 2

    resumed = fake_attacks()
    resumed.install(monkeypatch)
    table = evaluate(run_dir, data, **kwargs)
    assert [c["attack"] for c in resumed.calls] == ["linf", "l2"]  # linf, then l2 on softmax
    assert resumed.calls[1]["probabilities"] and len(metric_calls) == 2
    assert table.notna().all().all()

    again = fake_attacks()
    again.install(monkeypatch)
    rerun = evaluate(run_dir, data, **kwargs)
    pd.testing.assert_frame_equal(rerun, table, check_dtype=False)
    assert again.calls == [] and len(metric_calls) == 2

    # a later run adds an attack without redoing the others, into the same results
    more = fake_attacks()
    more.install(monkeypatch)
    table = evaluate(run_dir, data, **(kwargs | {"attacks": ("l0", "l2")}))
    assert [c["attack"] for c in more.calls] == ["l0", "l0"]
    assert table[["l0_mean", "linf_mean", "l2_mean"]].notna().all().all()


def test_results_of_another_configuration_are_never_mixed_in(
    tiny_run, monkeypatch, evaluate, fake_attacks
):
    run_dir, data = tiny_run
    fake = fake_attacks()
    fake.install(monkeypatch)
    kwargs = dict(attacks=("l2",), num_images=NUM_IMAGES, gradient_masking=False)
    evaluate(run_dir, data, **kwargs)
    before = (run_dir / "results.csv").read_text()
    calls = len(fake.calls)
    for change in (
        {"attack_options": {"l2": {"max_iterations": 5}}},
        {"num_images": NUM_IMAGES - 1},
        {"budgets": {"linf": 0.3}},
        {"metric_images": 10},
    ):
        with pytest.raises(evaluation.ConfigMismatchError, match="configuration"):
            evaluate(run_dir, data, **(kwargs | change))
        assert (run_dir / "results.csv").read_text() == before and len(fake.calls) == calls
    # the same change into its own results file is fine and leaves the first one alone
    other = run_dir / "other.csv"
    evaluate(run_dir, data, **(kwargs | {"num_images": 4, "output": other}))
    assert pd.read_csv(other)["l2_attacked"].sum() + pd.read_csv(other)["l2_excluded"].sum() == 8
    assert (run_dir / "results.csv").read_text() == before


def test_replace_swaps_an_evaluation_and_going_back_recomputes_nothing(
    tiny_run, monkeypatch, evaluate, fake_attacks
):
    run_dir, data = tiny_run
    fake = fake_attacks()
    fake.install(monkeypatch)
    kwargs = dict(attacks=("l2",), num_images=NUM_IMAGES, gradient_masking=False)
    first = evaluate(run_dir, data, **kwargs)
    calls = len(fake.calls)
    fewer = kwargs | {"num_images": 4}
    second = evaluate(run_dir, data, **fewer, replace=True)
    assert len(fake.calls) == calls + 2  # one l2 call per model
    assert second["eval_config"].nunique() == 1
    assert second["eval_config"][0] != first["eval_config"][0]
    assert (second["l2_attacked"] + second["l2_excluded"]).tolist() == [4, 4]
    written = pd.read_csv(run_dir / "results.csv")
    assert list(written["test_accuracy"]) == list(first["test_accuracy"])  # training kept
    # back to the first settings: the first evaluation's units come from its cache
    again = evaluate(run_dir, data, **kwargs, replace=True)
    assert len(fake.calls) == calls + 2
    pd.testing.assert_frame_equal(again, first, check_dtype=False)


def test_bad_arguments_fail_before_any_attack(tiny_run, monkeypatch, evaluate, fake_attacks):
    run_dir, data = tiny_run
    fake = fake_attacks()
    fake.install(monkeypatch)
    foreign = run_dir / "foreign.csv"
    foreign.write_text("dataset,temperature,stage,loss\nmnist,5,1,0.3\n")
    for kwargs, error in (
        ({"attacks": ("l3",)}, "unknown attack"),
        ({"attack_options": {"l2": {"steps": 3}}}, "no option"),
        ({"shard_index": 2, "num_shards": 2}, "shard_index"),
        ({"num_images": 65}, "num_images"),
        ({"attack_images": {"l3": 2}}, "attack_images names unknown"),
        ({"attack_images": {"l0": 65}}, "attack_images l0=65"),
        ({"output": foreign}, "foreign columns"),
    ):
        with pytest.raises(ValueError, match=error):
            evaluate(run_dir, data, **({"num_images": NUM_IMAGES} | kwargs))
    with pytest.raises(FileNotFoundError, match="not a keras_takd run"):
        evaluate(run_dir / "mnist", data)
    assert fake.calls == []


@pytest.mark.parametrize("indicators", [True, False])
def test_shards_with_fake_attacks_merge_to_the_unsharded_table(
    tiny_run, monkeypatch, indicators, evaluate, fake_attacks
):
    run_dir, data = tiny_run
    fake_attacks().install(monkeypatch)
    kwargs = dict(num_images=NUM_IMAGES, metric_images=16, indicators=indicators)
    whole = evaluate(run_dir, data, **kwargs, output=run_dir / "whole.csv")
    paths = []
    for i in (2, 0, 1):  # any order
        evaluate(run_dir, data, **kwargs, shard_index=i, num_shards=3)
        paths.append(run_dir / f"results_shard{i}of3.csv")
    shard = pd.read_csv(paths[0])
    assert "l2_sum" in shard and "l2_mean" not in shard and "test_accuracy" in shard
    assert "confidence" not in shard  # only shard 0 computes the attack-free metrics
    merged = evaluation.merge_shards(paths)
    pd.testing.assert_frame_equal(merged, whole, check_dtype=False, rtol=1e-12)
    assert ("l2_silent_success" in merged) == indicators  # no empty columns without them
    # the shards' per-image tables concatenate to the unsharded one
    per_image = evaluation.merge_per_image(paths)
    pd.testing.assert_frame_equal(per_image, tables.read_per_image(run_dir / "whole_per_image.csv"))
    (paths[0].parent / "per_image_shard1of3.csv").unlink()
    assert evaluation.merge_per_image(paths) is None


def test_per_image_table_holds_every_attacked_image_of_every_model(
    tiny_run, monkeypatch, evaluate, fake_attacks
):
    import keras

    run_dir, data = tiny_run
    fake_attacks().install(monkeypatch)
    evaluate(run_dir, data, num_images=NUM_IMAGES, metric_images=16, attacks=("l2", "linf"))
    table = tables.read_per_image(run_dir)
    assert list(table.columns) == list(schema.PER_IMAGE_COLUMNS)
    units = ("l2", "l2_softmax_T", "linf")
    assert len(table) == 2 * len(units) * NUM_IMAGES  # 2 models
    x, y = data.x_test[:NUM_IMAGES], data.y_test[:NUM_IMAGES]
    m = fake_attacks.pixel_means(x)
    for stage in (1, 2):
        model = keras.saving.load_model(run_dir / f"mnist/T5/stage{stage}/model.keras")
        correct = metrics.correctly_classified(model, x, y)
        for attack in units:
            rows = table[(table["stage"] == stage) & (table["attack"] == attack)]
            assert list(rows["image"]) == list(range(NUM_IMAGES))
            assert list(rows["correct"]) == list(correct)
            success = correct & (m > 0.1)
            assert list(rows["success"]) == list(success)
            scale = {"l2": 10.0, "l2_softmax_T": 10.0, "linf": 1.0}[attack]
            np.testing.assert_allclose(rows["distance"][success], scale * m[success], rtol=1e-6)
            assert rows["distance"][~success].isna().all()
    # the results CSV's means are the per-image means: every number traces to its images
    results = pd.read_csv(run_dir / "results.csv")
    for (stage, attack), rows in table[table["success"]].groupby(["stage", "attack"]):
        mean = results.loc[results["stage"] == stage, f"{attack}_mean"].iloc[0]
        assert rows["distance"].mean() == pytest.approx(mean)


def test_attack_images_give_each_attack_its_own_prefix_and_shards_split_it(
    tiny_run, monkeypatch, evaluate, fake_attacks
):
    import keras

    run_dir, data = tiny_run
    fake = fake_attacks()
    fake.install(monkeypatch)
    kwargs = dict(num_images=NUM_IMAGES, metric_images=16, attack_images={"l0": 5, "l2": 8})
    whole = evaluate(run_dir, data, **kwargs, output=run_dir / "whole.csv")
    # l0 on 5 images, l2 and its softmax(logits / T) twin on 8, linf on NUM_IMAGES
    teacher = keras.saving.load_model(run_dir / "mnist/T5/stage1/model.keras")
    correct = metrics.correctly_classified(teacher, data.x_test, data.y_test)
    expected = {"l0": 5, "l2": 8, "linf": NUM_IMAGES, "l2_softmax_T": 8}
    row = whole.iloc[0]
    for prefix, n in expected.items():
        assert row[f"{prefix}_attacked"] + row[f"{prefix}_excluded"] == n, prefix
        assert row[f"{prefix}_attacked"] == correct[:n].sum(), prefix
    config = json.loads((run_dir / "eval" / row["eval_config"] / "config.json").read_text())
    assert config["attack_images"] == {"l0": 5, "l2": 8}

    # an override equal to num_images is no override: the configuration keeps its old id
    plain = evaluate(
        run_dir,
        data,
        num_images=NUM_IMAGES,
        metric_images=16,
        attack_images={"linf": NUM_IMAGES},
        output=run_dir / "plain.csv",
    )
    assert plain["eval_config"][0] != row["eval_config"]
    assert "attack_images" not in json.loads(
        (run_dir / "eval" / plain["eval_config"][0] / "config.json").read_text()
    )

    # shards split each attack's own images; merged they equal the unsharded table
    calls = len(fake.calls)
    paths = []
    for i in range(3):
        evaluate(run_dir, data, **kwargs, shard_index=i, num_shards=3)
        paths.append(run_dir / f"results_shard{i}of3.csv")
    l0_sizes = [c["n"] for c in fake.calls[calls:] if c["attack"] == "l0"]
    assert sum(l0_sizes) == whole["l0_attacked"].sum()  # both models, once each image
    merged = evaluation.merge_shards(paths)
    pd.testing.assert_frame_equal(merged, whole, check_dtype=False, rtol=1e-12)


def test_two_shards_merged_equal_one_unsharded_run(tiny_run, evaluate):
    """The real C&W L2 attack (and its softmax(logits / T) twin), one image per batch."""
    run_dir, data = tiny_run
    kwargs = dict(
        attacks=("l2",),
        num_images=8,
        metric_images=16,
        attack_options={
            "l2": {
                "max_iterations": 20,
                "binary_search_steps": 2,
                "initial_const": 1.0,
                "learning_rate": 0.1,
                "batch_size": 1,
            }
        },
    )
    whole = evaluate(run_dir, data, **kwargs, output=run_dir / "whole.csv")
    assert (whole["l2_attacked"] > 0).all() and (whole["l2_success_rate"] > 0).all()
    for i in (0, 1):
        evaluate(run_dir, data, **kwargs, shard_index=i, num_shards=2)
    merged = evaluation.merge_shards([run_dir / f"results_shard{i}of2.csv" for i in (0, 1)])
    evaluation.write_results(
        run_dir / "merged.csv", merged.to_dict("records"), whole.eval_config[0]
    )
    pd.testing.assert_frame_equal(
        pd.read_csv(run_dir / "merged.csv"), pd.read_csv(run_dir / "whole.csv"), rtol=1e-12
    )


def _edit_unit(run_dir, edit, stage=1, kind="l2"):
    """Edits the payload of a unit in the run's record, as a hand or a bug would."""
    with contextlib.closing(sqlite3.connect(run_dir / "record.sqlite")) as connection:
        with connection:
            where = "WHERE stage = ? AND kind = ?"
            found = connection.execute(f"SELECT payload FROM units {where}", (stage, kind))
            (payload,) = found.fetchone()
            unit = json.loads(payload)
            edit(unit)
            connection.execute(
                f"UPDATE units SET payload = ? {where}", (json.dumps(unit), stage, kind)
            )


@pytest.mark.parametrize(
    "damage, why",
    [
        (lambda unit: unit["statistics"].update(l2_sum=123.0), "does not match its checksum"),
        (lambda unit: unit.pop("per_image"), "does not match its checksum"),
        (lambda unit: unit.update(schema=2), "unit schema 2"),
        (lambda unit: unit.pop("schema"), "unit schema None"),
    ],
    ids=["edited number", "missing key", "older schema", "no schema"],
)
def test_a_damaged_unit_is_recomputed_with_a_note_never_trusted(
    tiny_run, monkeypatch, damage, why, evaluate, fake_attacks
):
    run_dir, data = tiny_run
    kwargs = dict(attacks=("l2",), num_images=NUM_IMAGES, gradient_masking=False)
    fake_attacks().install(monkeypatch)
    table = evaluate(run_dir, data, **kwargs)
    _edit_unit(run_dir, damage)

    fake, lines = fake_attacks(), []
    fake.install(monkeypatch)
    again = evaluate(run_dir, data, log=lines.append, **kwargs)
    assert [c["attack"] for c in fake.calls] == ["l2"]  # that unit only, recomputed
    notes = [line for line in lines if line.startswith("mnist T=5 stage 1 l2: ")]
    assert len(notes) == 1 and why in notes[0] and notes[0].endswith("; recomputing it")
    pd.testing.assert_frame_equal(again, table, check_dtype=False)


def test_a_unit_with_a_valid_checksum_but_a_missing_key_is_recomputed(
    tiny_run, monkeypatch, evaluate, fake_attacks
):
    from keras_takd.takd.evaluation.cache import unit_checksum

    run_dir, data = tiny_run
    kwargs = dict(attacks=("l2",), num_images=NUM_IMAGES, gradient_masking=False)
    fake_attacks().install(monkeypatch)
    evaluate(run_dir, data, **kwargs)

    def damage(unit):
        del unit["per_image"]["distance"]
        unit["checksum"] = unit_checksum(unit)

    _edit_unit(run_dir, damage)
    fake, lines = fake_attacks(), []
    fake.install(monkeypatch)
    evaluate(run_dir, data, log=lines.append, **kwargs)
    assert len(fake.calls) == 1
    assert any("lacks what a l2 unit holds" in line for line in lines)


def test_units_follow_the_weights_not_the_model_file(tiny_run, monkeypatch, evaluate, fake_attacks):
    """A model saved again with the same weights (a retrained run with op determinism) keeps
    its units; a model with other weights loses them."""
    import keras

    run_dir, data = tiny_run
    kwargs = dict(attacks=("l2",), num_images=NUM_IMAGES, gradient_masking=False)
    fake_attacks().install(monkeypatch)
    evaluate(run_dir, data, **kwargs)
    paths = sorted(run_dir.rglob("model.keras"))
    resaved = keras.saving.load_model(paths[0])
    keras.saving.save_model(resaved, paths[0])  # new file bytes, same weights
    fake = fake_attacks()
    fake.install(monkeypatch)
    evaluate(run_dir, data, **kwargs)
    assert fake.calls == []

    changed = keras.saving.load_model(paths[1])
    changed.set_weights([w + 1e-3 for w in changed.get_weights()])
    keras.saving.save_model(changed, paths[1])
    fake = fake_attacks()
    fake.install(monkeypatch)
    evaluate(run_dir, data, **kwargs)
    assert [c["attack"] for c in fake.calls] == ["l2"]


def test_another_test_set_of_the_same_size_reuses_no_unit(
    tiny_run, monkeypatch, evaluate, fake_attacks
):
    """Issue 23 hole 3: with the test images inverted, every cached unit was reused."""
    run_dir, data = tiny_run
    kwargs = dict(attacks=("l2",), num_images=NUM_IMAGES, metric_images=16)
    fake_attacks().install(monkeypatch)
    first = evaluate(run_dir, data, **kwargs)
    inverted = dataclasses.replace(data, x_test=1.0 - np.asarray(data.x_test))
    fake = fake_attacks()
    fake.install(monkeypatch)
    with pytest.raises(ConfigMismatchError, match="holds evaluation results of configuration"):
        evaluate(run_dir, inverted, **kwargs)  # another evaluation: not mixed into the table
    lines = []
    other = evaluate(run_dir, inverted, **kwargs, replace=True, log=lines.append)
    assert len(fake.calls) == 2 * 2  # (l2, l2_softmax_T) x 2 models, none reused
    assert other.eval_config[0] != first.eval_config[0]
    (line,) = [line for line in lines if "no unit reused" in line]
    assert f"not evaluation {first.eval_config[0]}, test_set_sha256 " in line
    fake = fake_attacks()
    fake.install(monkeypatch)
    again = evaluate(run_dir, data, **kwargs, replace=True)  # the real images: all cached
    assert fake.calls == []
    pd.testing.assert_frame_equal(again, first)


def _with_activation(path, old, new):
    """Rewrites a .keras file with `old` activations made `new` and the same weights."""
    with zipfile.ZipFile(path) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    entries["config.json"] = entries["config.json"].replace(old.encode(), new.encode())
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in entries.items():
            archive.writestr(name, content)


def test_the_same_weights_in_another_architecture_reuse_no_unit(
    tiny_run, monkeypatch, evaluate, fake_attacks
):
    """Issue 23 hole 4: sigmoid for relu with identical weights gave "0 to compute"."""
    run_dir, data = tiny_run
    kwargs = dict(attacks=("l2",), num_images=NUM_IMAGES, gradient_masking=False)
    fake_attacks().install(monkeypatch)
    evaluate(run_dir, data, **kwargs)
    _with_activation(run_dir / "mnist/T5/stage1/model.keras", '"relu"', '"sigmoid"')
    fake, lines = fake_attacks(), []
    fake.install(monkeypatch)
    evaluate(run_dir, data, log=lines.append, **kwargs)
    assert [c["attack"] for c in fake.calls] == ["l2"]  # stage 1's unit; stage 2's cached
    notes = [line for line in lines if "architecture_sha256" in line]
    assert [note.split(":")[0] for note in notes] == [
        f"mnist T=5 stage 1 {kind}" for kind in ("metrics", "l2", "l2_indicators")
    ]
    assert all(note.endswith("recomputing it") for note in notes)
    assert not any("weights_sha256" in note for note in notes)  # the weights are the same


def test_indicators_are_counted_per_attack_flagged_per_image_and_warned(
    tiny_run, monkeypatch, evaluate, fake_attacks
):
    """Silent successes of an attack show in results.csv, per_image.csv and a warning line;
    an attack that returns what it found trips nothing of the kind."""
    run_dir, data = tiny_run
    kwargs = dict(attacks=("l2",), num_images=NUM_IMAGES, gradient_masking=False)
    fake_attacks(silent=True).install(monkeypatch)
    lines = []
    table = evaluate(run_dir, data, log=lines.append, **kwargs)
    per_image = tables.read_per_image(run_dir)
    attacked = per_image[per_image.correct]
    silent = attacked.silent_success.astype(bool)
    assert silent.tolist() == (~attacked.success).tolist()  # the fake found every image
    assert silent.any()
    counts = attacked.groupby("stage").silent_success.sum()
    assert table.set_index("stage").l2_silent_success.to_dict() == counts.to_dict()
    warned = [line for line in lines if "'silent_success' tripped" in line]
    assert len(warned) == (counts > 0).sum()
    for name in schema.INDICATORS:  # every indicator was checked on every attacked image
        assert attacked[name].notna().all() and per_image[~per_image.correct][name].isna().all()
    bright = fake_attacks.pixel_means(data.x_test[:NUM_IMAGES])[attacked.image] > 0.3
    assert attacked.incomplete_optimization.astype(bool).tolist() == bright.tolist()
    assert (attacked.iterations == 7).all() and per_image[
        ~per_image.correct
    ].iterations.isna().all()
    # C&W's budget is unbounded already: its unconstrained failures are its own failures
    assert attacked.unconstrained_failure.astype(bool).tolist() == (~attacked.success).tolist()
    failed = (~attacked.success).groupby(attacked.stage).sum()
    assert table.set_index("stage").l2_unconstrained_failure.to_dict() == failed.to_dict()
    # the margin loss of a working (if tiny) model does not vanish
    assert (table.l2_vanishing_gradients == 0).all()


def test_indicators_off_leave_their_columns_out_and_compute_nothing(
    tiny_run, monkeypatch, evaluate, fake_attacks
):
    run_dir, data = tiny_run
    fake_attacks().install(monkeypatch)
    calls = []
    monkeypatch.setattr(
        "keras_takd.attacks.indicators.vanishing_gradients", lambda *a, **k: calls.append(1)
    )
    table = evaluate(run_dir, data, attacks=("l2",), num_images=NUM_IMAGES, indicators=False)
    assert calls == [] and "l2_silent_success" not in table.columns


def test_an_indicator_unit_is_recomputed_when_its_attack_unit_was(
    tiny_run, monkeypatch, evaluate, fake_attacks, forget_unit
):
    run_dir, data = tiny_run
    kwargs = dict(attacks=("l2",), num_images=NUM_IMAGES, gradient_masking=False)
    fake_attacks(silent=True).install(monkeypatch)
    evaluate(run_dir, data, **kwargs)
    for stage in (1, 2):
        forget_unit(run_dir, stage, "l2")  # the attack units only: their indicator units stay
    fake_attacks().install(monkeypatch)
    table = evaluate(run_dir, data, **kwargs)
    assert (table.l2_silent_success == 0).all()
