"""Distillation chains: files and rows produced, SavedModel serving, resume, safety, seeds."""

import dataclasses
import json
import os

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from keras_takd.core.data import load_dataset
from keras_takd.core.distillation import TrainConfig
from keras_takd.core.locking import FolderInUseError, lock_run_folder
from keras_takd.core.results import ConfigMismatchError, update_results
from keras_takd.core.seeding import set_seed
from keras_takd.core.training import NonFiniteError
from keras_takd.takd.chains import learning_warning, make_strategy, role_name, run_chain
from keras_takd.takd.schema import CHAIN_COLUMNS, KEY_COLUMNS

CONFIG = TrainConfig(epochs=1, batch_size=64, learning_rate=0.05, seed=3)


@pytest.fixture(scope="module")
def tiny(shared_data_dir):
    return load_dataset("mnist", shared_data_dir, validation_size=64, train_size=256, test_size=128)


def _files(root):
    return sorted(
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and "saved_model/" not in str(p.relative_to(root))
    )


def test_roles():
    assert [role_name(k, 3) for k in (1, 2, 3)] == ["teacher", "assistant", "student"]
    assert [role_name(k, 2) for k in (1, 2)] == ["teacher", "student"]
    assert role_name(1, 1) == "teacher"
    assert [role_name(k, 5) for k in range(1, 6)] == [
        "teacher",
        "step-2",
        "step-3",
        "step-4",
        "student",
    ]


def test_three_stage_chain_writes_models_rows_and_servable_savedmodels(tiny, tmp_path):
    table = run_chain(tiny, [5.0], 3, tmp_path, CONFIG, verbose=0)
    assert _files(tmp_path) == sorted(
        [
            "run.json",
            "run.lock",
            "record.sqlite",
            "record.lock",
            "results.csv",
            "mnist/init/model.keras",
            "mnist/init/metadata.json",
        ]
        + [f"mnist/T5/stage{k}/{f}" for k in (1, 2, 3) for f in ("model.keras", "metadata.json")]
    )
    csv = pd.read_csv(tmp_path / "results.csv")
    assert list(csv.columns) == list(CHAIN_COLUMNS)
    assert list(csv["role"]) == ["teacher", "assistant", "student"]
    assert list(csv["stage"]) == [1, 2, 3] and set(csv["temperature"]) == {5.0}
    assert set(csv["stages"]) == {3}
    pd.testing.assert_frame_equal(csv, table, check_dtype=False)

    x = tiny.x_test[:7]
    for row in csv.itertuples():
        keras_model = keras.saving.load_model(row.keras_model)
        served = tf.saved_model.load(row.saved_model)
        logits = served.serve(tf.constant(x)).numpy()
        np.testing.assert_allclose(logits, keras_model.predict(x, verbose=0), atol=1e-5)
        probabilities = served.probabilities(tf.constant(x)).numpy()
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
        accuracy = np.mean(keras_model.predict(tiny.x_test, verbose=0).argmax(1) == tiny.y_test)
        assert accuracy == pytest.approx(row.test_accuracy)
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["configuration"]["train"]["epochs"] == 1
    assert {"tensorflow", "keras", "python"} <= set(run["versions"])


class _Interrupt(keras.callbacks.Callback):
    """Fails at the end of the first epoch of one stage, as a kill would."""

    def __init__(self, fail_on_stage):
        super().__init__()
        self.fail_on_stage, self.stage, self.epochs_run = fail_on_stage, 0, []

    def on_train_begin(self, logs=None):
        self.stage += 1

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs_run.append((self.stage, epoch))

    def on_epoch_end(self, epoch, logs=None):
        if self.stage == self.fail_on_stage and epoch == 0:
            raise KeyboardInterrupt("killed")


def test_resume_after_interrupted_stage_trains_only_what_is_missing(tiny, tmp_path):
    config = TrainConfig(epochs=2, batch_size=64, learning_rate=0.05, seed=3)
    first = _Interrupt(fail_on_stage=2)
    with pytest.raises(KeyboardInterrupt):
        run_chain(tiny, [5.0], 3, tmp_path, config, callbacks=[first], verbose=0)
    stage1 = tmp_path / "mnist/T5/stage1/model.keras"
    stamp = stage1.stat().st_mtime_ns
    assert not (tmp_path / "mnist/T5/stage2/metadata.json").exists()
    assert len(pd.read_csv(tmp_path / "results.csv")) == 1

    second = _Interrupt(fail_on_stage=0)
    run_chain(tiny, [5.0], 3, tmp_path, config, callbacks=[second], verbose=0)
    # Stage 1 is not retrained; stage 2 resumes at its second epoch; stage 3 runs in full.
    assert stage1.stat().st_mtime_ns == stamp
    assert second.epochs_run == [(1, 1), (2, 0), (2, 1)]
    assert len(pd.read_csv(tmp_path / "results.csv")) == 3
    assert not (tmp_path / "mnist/T5/stage2/backup").exists()


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize(
    "damage",
    [
        lambda backup: _truncate(backup / "latest.weights.h5"),  # disk full while saving
        lambda backup: _truncate(backup / "training_metadata.json"),
        lambda backup: (backup / "training_metadata.json").unlink(),
        lambda backup: (backup / "training_metadata.json").write_text('{"epoch": "two"}'),
    ],
    ids=["weights-truncated", "metadata-truncated", "metadata-missing", "epoch-not-a-number"],
)
def test_a_damaged_backup_is_discarded_and_its_stage_starts_over(tiny, tmp_path, damage):
    set_seed(3, deterministic=True)
    config = TrainConfig(epochs=2, batch_size=64, learning_rate=0.05, seed=3, warm_start=False)
    with pytest.raises(KeyboardInterrupt):
        run_chain(tiny, [5.0], 1, tmp_path, config, callbacks=[_Interrupt(1)], verbose=0)
    backup = tmp_path / "mnist/T5/stage1/backup"
    damage(backup)

    notes, second = [], _Interrupt(fail_on_stage=0)
    table = run_chain(
        tiny, [5.0], 1, tmp_path, config, callbacks=[second], verbose=0, on_warning=notes.append
    )
    assert second.epochs_run == [(1, 0), (1, 1)]  # from its first epoch, not resumed
    assert len(table) == 1 and not backup.exists()
    assert notes[0].startswith(f"{backup}: incomplete or damaged backup")


def test_a_diverging_stage_ends_the_run_and_keeps_the_finished_stages(tiny, tmp_path):
    set_seed(3, deterministic=True)
    with pytest.raises(NonFiniteError, match=r"^mnist T=1e-06 stage 1 teacher: .* in epoch 1 of 1"):
        run_chain(tiny, [5.0, 1e-6], 2, tmp_path, CONFIG, verbose=0)
    table = pd.read_csv(tmp_path / "results.csv")
    assert list(zip(table["temperature"], table["stage"], strict=True)) == [(5.0, 1), (5.0, 2)]
    for stage in (1, 2):
        assert (tmp_path / f"mnist/T5/stage{stage}/metadata.json").is_file()
    assert not [p for p in (tmp_path / "mnist/T1e-06").rglob("*") if p.is_file()]


def test_a_locked_output_dir_is_refused_before_anything_is_written(tiny, tmp_path):
    with lock_run_folder(tmp_path):  # as another process training into it would
        with pytest.raises(FolderInUseError, match="is in use by process"):
            run_chain(tiny, [2.0], 1, tmp_path, CONFIG, verbose=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.lock"]


def test_a_corrupt_model_file_is_named_as_corrupt(tiny, tmp_path):
    run_chain(tiny, [2.0], 1, tmp_path, CONFIG, verbose=0)
    model = tmp_path / "mnist/T2/stage1/model.keras"
    _truncate(model)
    with pytest.raises(ValueError, match=f"model file {model} is corrupt"):
        run_chain(tiny, [2.0], 2, tmp_path, CONFIG, verbose=0)


def test_other_settings_are_refused_and_nothing_is_touched(tiny, tmp_path):
    run_chain(tiny, [2.0], 1, tmp_path, CONFIG, verbose=0)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    other = TrainConfig(epochs=2, batch_size=64, learning_rate=0.05, seed=3)
    with pytest.raises(ConfigMismatchError, match="epochs=1, this run asks epochs=2"):
        run_chain(tiny, [2.0], 1, tmp_path, other, verbose=0)
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert before == after


@pytest.mark.parametrize("part", ["x_train", "x_test"])
def test_other_images_of_the_same_counts_are_refused(tiny, tmp_path, part):
    """Issue 23 hole 3: the resume fingerprint held only the image counts."""
    run_chain(tiny, [2.0], 1, tmp_path, CONFIG, verbose=0)
    inverted = dataclasses.replace(tiny, **{part: 1.0 - getattr(tiny, part)})
    with pytest.raises(ConfigMismatchError, match="holds results made with content_sha256="):
        run_chain(inverted, [2.0], 1, tmp_path, CONFIG, verbose=0)


def test_a_run_trained_before_content_hashes_still_resumes(tiny, tmp_path):
    """A folder whose run.json and stage metadata lack the data's content hash (versions
    before issue 23) is compared on the data's name and counts, as it was made."""
    run_chain(tiny, [2.0], 1, tmp_path, CONFIG, verbose=0)
    for path in [tmp_path / "run.json", tmp_path / "mnist/T2/stage1/metadata.json"]:
        record = json.loads(path.read_text())
        section = record["configuration"] if "configuration" in record else record["fingerprint"]
        del section["data"]["content_sha256"]
        path.write_text(json.dumps(record))
    stamp = (tmp_path / "mnist/T2/stage1/model.keras").stat().st_mtime_ns
    run_chain(tiny, [2.0], 1, tmp_path, CONFIG, verbose=0)
    assert (tmp_path / "mnist/T2/stage1/model.keras").stat().st_mtime_ns == stamp


def _stages_seen(tiny, out, stages, last_stages=(None,)):
    """(stage, role, already done) of every stage `run_chain` reports, run once per last stage."""
    seen = []
    for last in last_stages:
        run_chain(
            tiny,
            [2.0],
            stages,
            out,
            CONFIG,
            verbose=0,
            last_stage=last,
            on_stage=lambda row, done: seen.append((row["stage"], row["role"], done)),
        )
    return seen


def test_longer_chain_reuses_finished_stages(tiny, tmp_path):
    run_chain(tiny, [2.0], 1, tmp_path, CONFIG, verbose=0)
    stamp = (tmp_path / "mnist/T2/stage1/model.keras").stat().st_mtime_ns
    assert _stages_seen(tiny, tmp_path, 2) == [(1, "teacher", True), (2, "student", False)]
    assert (tmp_path / "mnist/T2/stage1/model.keras").stat().st_mtime_ns == stamp


def test_a_chain_trained_a_stage_at_a_time_has_the_roles_of_the_whole_chain(tiny, tmp_path):
    seen = _stages_seen(tiny, tmp_path, 3, last_stages=(1, 2))
    assert seen == [(1, "teacher", False), (1, "teacher", True), (2, "assistant", False)]
    assert not (tmp_path / "mnist/T2/stage3").exists()


def test_bad_arguments(tiny, tmp_path):
    with pytest.raises(ValueError, match="stages must be >= 1"):
        run_chain(tiny, [2.0], 0, tmp_path, CONFIG)
    with pytest.raises(ValueError, match=r"last_stage must be in \[1, 3\].*got 4"):
        run_chain(tiny, [2.0], 3, tmp_path, CONFIG, last_stage=4)
    with pytest.raises(ValueError, match="temperature"):
        run_chain(tiny, [2.0, -1.0], 1, tmp_path, CONFIG)
    with pytest.raises(ValueError, match="at least one temperature"):
        run_chain(tiny, [], 1, tmp_path, CONFIG)
    (tmp_path / "file").write_text("x")
    with pytest.raises(OSError, match="cannot write to output_dir"):
        run_chain(tiny, [2.0], 1, tmp_path / "file" / "sub", CONFIG)


def test_results_csv_upsert_and_foreign_file(tmp_path):
    path = tmp_path / "results.csv"
    row = {"dataset": "mnist", "temperature": 2.0, "stage": 1}
    update_results(path, [row | {"role": "a"}], KEY_COLUMNS, CHAIN_COLUMNS)
    update_results(
        path,
        [
            {"dataset": "mnist", "temperature": 1.0, "stage": 1, "role": "b"},
            {"dataset": "mnist", "temperature": 2.0, "stage": 1, "role": "c"},
        ],
        KEY_COLUMNS,
    )
    table = pd.read_csv(path)
    assert list(table["role"]) == ["b", "c"] and list(table["temperature"]) == [1.0, 2.0]
    pd.DataFrame({"model": [1]}).to_csv(path, index=False)
    with pytest.raises(ConfigMismatchError, match="lacks the key columns"):
        update_results(path, [row], KEY_COLUMNS)


def test_same_seed_same_numbers(tiny, tmp_path):
    """The same seed trains the same weights, whatever the chain's length: a stage's seed is
    (seed, T, stage), so a 7-model chain's first three models are a 3-model chain's."""
    accuracies = []
    for run, stages in (("a", 2), ("b", 3)):
        set_seed(11)
        config = TrainConfig(epochs=1, batch_size=64, learning_rate=0.05, seed=11)
        table = run_chain(tiny, [3.0], stages, tmp_path / run, config, verbose=0)
        accuracies.append(list(table["test_accuracy"])[:2])
    assert accuracies[0] == accuracies[1]
    weights = [
        keras.saving.load_model(tmp_path / r / "mnist/T3/stage2/model.keras").get_weights()
        for r in ("a", "b")
    ]
    for a, b in zip(*weights, strict=True):
        np.testing.assert_array_equal(a, b)


def test_chain_trains_under_a_mirrored_strategy(tiny, tmp_path):
    """The distribute path (models, optimiser and DistillerModel built in the scope) runs."""
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    table = run_chain(tiny, [2.0], 2, tmp_path, CONFIG, verbose=0, strategy=strategy)
    assert list(table["role"]) == ["teacher", "student"]
    assert table["test_accuracy"].between(0, 1).all()


def test_make_strategy():
    assert make_strategy("default") is tf.distribute.get_strategy()
    with pytest.raises(ValueError, match="unknown strategy 'tpu'"):
        make_strategy("tpu")


def tiny_random_labels(tiny):
    """`tiny` with random labels: nothing can be learnt, test accuracy is chance."""
    rng = np.random.default_rng(0)
    return dataclasses.replace(
        tiny,
        y_train=rng.integers(0, 10, len(tiny.y_train)),
        y_val=rng.integers(0, 10, len(tiny.y_val)),
        y_test=rng.integers(0, 10, len(tiny.y_test)),
    )


@pytest.mark.parametrize(
    "accuracy, soft_losses, scaled, expected",
    [
        (0.95, [1.9, 1.2], False, None),
        (0.11, [], False, "did not learn: test accuracy 11.0% (chance 10%); saved anyway"),
        (0.33, [2.30259, 2.30255], False, "soft loss never left ln(10) = 2.3026"),
        (0.95, [230.258, 230.26], True, "soft loss never left ln(10) = 230.2585"),
        (0.95, [2.3026, 2.1], False, None),
    ],
)
def test_learning_warning(accuracy, soft_losses, scaled, expected):
    row = {"dataset": "mnist", "temperature": 10.0, "stage": 2, "role": "student"}
    line = learning_warning(dict(row, test_accuracy=accuracy), soft_losses, scaled)
    if expected is None:
        assert line is None
    else:
        assert expected in line and "\n" not in line
        assert line.startswith("mnist T=10 stage 2 student did not learn")
        hints = " or" if scaled else ", --scale_soft_loss or"
        assert line.endswith(f"Try more --epochs{hints} a lower --temperature")


@pytest.mark.parametrize(
    "temperature, stage, scaled, hints",
    [
        (1.0, 1, False, "Try more --epochs"),
        (1.0, 2, False, "Try more --epochs"),
        (20.0, 1, False, "Try more --epochs or a lower --temperature"),
        (20.0, 2, True, "Try more --epochs or a lower --temperature"),
        (20.0, 2, False, "Try more --epochs, --scale_soft_loss or a lower --temperature"),
    ],
)
def test_learning_warning_hints_only_what_can_apply(temperature, stage, scaled, hints):
    """A T = 1 teacher at 8% is not told to scale a soft loss it lacks or to lower T."""
    row = {"dataset": "mnist", "temperature": temperature, "stage": stage, "role": "x"}
    line = learning_warning(dict(row, test_accuracy=0.08), [], scaled)
    assert line.endswith(f"saved anyway. {hints}")


def test_the_api_prints_a_line_naming_each_model_it_trains(tiny, tmp_path, capsys):
    run_chain(tiny, [2.0], 2, tmp_path, CONFIG, verbose=0, on_warning=lambda line: None)
    assert capsys.readouterr().out.splitlines() == [
        "mnist warm start: 1 epoch at T = 1 on hard labels, shared by every stage",
        "mnist T=2 stage 1 teacher: training, 1 epoch",
        "mnist T=2 stage 2 student: training, 1 epoch",
    ]


def test_a_stage_that_did_not_learn_warns_and_is_still_saved(tiny, tmp_path):
    """Random labels at T = 100: chance accuracy, and the student's soft loss stays ln(10)."""
    lines, warned = [], []
    run_chain(
        tiny_random_labels(tiny),
        [100.0],
        2,
        tmp_path,
        CONFIG,
        verbose=0,
        log=lines.append,
        on_warning=warned.append,
    )
    assert lines == [
        "mnist warm start: 1 epoch at T = 1 on hard labels, shared by every stage",
        "mnist T=100 stage 1 teacher: training, 1 epoch",
        "mnist T=100 stage 2 student: training, 1 epoch",
    ]
    assert len(warned) == 2 and "teacher did not learn" in warned[0]
    assert "student did not learn" in warned[1] and "soft loss never left ln(10)" in warned[1]
    assert (tmp_path / "mnist/T100/stage2/metadata.json").is_file()
    assert len(pd.read_csv(tmp_path / "results.csv")) == 2
    with pytest.warns(RuntimeWarning, match="did not learn"):  # the library's default
        run_chain(tiny_random_labels(tiny), [100.0], 3, tmp_path, CONFIG, verbose=0)


@pytest.mark.slow
def test_a_cifar10_npz_not_the_real_set_runs_under_its_own_label(cifar10_data_dir, tmp_path):
    data = load_dataset("cifar10", cifar10_data_dir, validation_size=0, train_size=64, test_size=32)
    config = TrainConfig(epochs=1, batch_size=32, warm_start=False, seed=3)
    table = run_chain(data, [2.0], 1, tmp_path, config, verbose=0, on_warning=lambda line: None)
    assert list(table["dataset"]) == ["cifar10-synthetic"]
    assert (tmp_path / "cifar10-synthetic/T2/stage1/metadata.json").is_file()
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["configuration"]["data"]["dataset"] == "cifar10"  # data is reloaded by name
    assert run["configuration"]["data"]["label"] == "cifar10-synthetic"


@pytest.mark.parametrize("kind", ["FIFO", "folder"])
def test_a_stage_metadata_that_is_not_a_regular_file_is_refused_at_once(tmp_path, kind, no_hang):
    from keras_takd.core.files import NotRegularFileError
    from keras_takd.takd.chains import _load_if_complete

    metadata = tmp_path / "metadata.json"
    os.mkfifo(metadata) if kind == "FIFO" else metadata.mkdir()
    with no_hang(), pytest.raises(NotRegularFileError, match=f"^{metadata} is a {kind}, expe"):
        _load_if_complete(tmp_path, {})


def test_a_stage_metadata_that_is_not_json_is_named(tmp_path):
    from keras_takd.takd.chains import _load_if_complete

    (tmp_path / "metadata.json").write_text('{"fingerprint": ')
    with pytest.raises(ValueError, match=f"^{tmp_path / 'metadata.json'} is not JSON: "):
        _load_if_complete(tmp_path, {})


def test_rerunning_or_extending_training_keeps_the_evaluation(
    tiny_run, monkeypatch, evaluate, fake_attacks
):
    """Issue 23 hole 1: training writes only its own columns of the run's record."""
    run_dir, data = tiny_run
    fake_attacks().install(monkeypatch)
    evaluated = evaluate(run_dir, data, num_images=8, attacks=("l2",), gradient_masking=False)
    evaluation_columns = ["metric_images", "l2_attacked", "l2_success_rate", "eval_config"]
    per_image = pd.read_csv(run_dir / "per_image.csv")
    config = TrainConfig(epochs=1, batch_size=32, learning_rate=0.05, seed=3)
    temperatures = list(evaluated["temperature"].unique())
    for stages in (2, 3):  # the same command again, then a longer chain
        run_chain(data, temperatures, stages, run_dir, config, verbose=0)
        table = pd.read_csv(run_dir / "results.csv")
        assert len(table) == stages
        kept = table[table["stage"] <= 2].reset_index(drop=True)
        pd.testing.assert_frame_equal(
            kept[evaluation_columns], evaluated[evaluation_columns], check_dtype=False
        )
        pd.testing.assert_frame_equal(
            pd.read_csv(run_dir / "per_image.csv")[per_image.columns.drop(["role", "stages"])],
            per_image.drop(columns=["role", "stages"]),
        )


def _weights(path):
    return keras.saving.load_model(path).get_weights()


def test_several_seeds_train_independent_chains_each_in_its_own_folder(tiny, tmp_path):
    """Two seeds: each its own warm start and stages under seed<s>, a seed column in
    results.csv, different weights; the same seed alone (one seed, today's layout) gives the
    same weights as in the run of two."""
    table = run_chain(tiny, [3.0], 2, tmp_path / "two", CONFIG, verbose=0, seeds=[3, 4])
    stages = [
        f"mnist/T3/seed{s}/stage{k}/{f}"
        for s in (3, 4)
        for k in (1, 2)
        for f in ("metadata.json", "model.keras")
    ]
    inits = [f"mnist/init/seed{s}/{f}" for s in (3, 4) for f in ("metadata.json", "model.keras")]
    run_files = ["run.json", "run.lock", "record.sqlite", "record.lock", "results.csv"]
    assert _files(tmp_path / "two") == sorted([*run_files, *inits, *stages])
    csv = pd.read_csv(tmp_path / "two" / "results.csv")
    assert list(csv.columns[:4]) == ["dataset", "temperature", "stage", "seed"]
    assert list(zip(csv.seed, csv.stage, strict=True)) == [(3, 1), (3, 2), (4, 1), (4, 2)]
    assert list(table["seed"]) == [3, 3, 4, 4]
    run_json = json.loads((tmp_path / "two" / "run.json").read_text())
    assert run_json["configuration"]["replicates"] == {"seed_folders": True}
    assert "seed" not in run_json["configuration"]["train"]
    for k in (1, 2):
        a, b = (_weights(tmp_path / f"two/mnist/T3/seed{s}/stage{k}/model.keras") for s in (3, 4))
        assert any(not np.array_equal(x, y) for x, y in zip(a, b, strict=True))

    set_seed(0)  # the global seed is not what decides a chain's numbers
    run_chain(tiny, [3.0], 2, tmp_path / "one", CONFIG, verbose=0, seeds=[3])
    assert "mnist/T3/stage2/model.keras" in _files(tmp_path / "one")
    alone = _weights(tmp_path / "one/mnist/T3/stage2/model.keras")
    beside = _weights(tmp_path / "two/mnist/T3/seed3/stage2/model.keras")
    for x, y in zip(alone, beside, strict=True):
        np.testing.assert_array_equal(x, y)
    assert "seed" not in pd.read_csv(tmp_path / "one" / "results.csv").columns


def test_more_seeds_on_a_run_of_seeds_train_only_the_new_ones(tiny, tmp_path):
    run_chain(tiny, [3.0], 2, tmp_path, CONFIG, verbose=0, seeds=[0, 1], log=None)
    trained = []
    table = run_chain(
        tiny, [3.0], 2, tmp_path, CONFIG, verbose=0, seeds=[0, 1, 2], log=trained.append
    )
    assert len(trained) == 3, trained  # the warm start and two stages, of seed 2 only
    assert all("seed 2" in line for line in trained), trained
    assert list(table["seed"]) == [0, 0, 1, 1, 2, 2]


def test_several_seeds_are_refused_on_a_run_of_one_and_bad_seeds_named(tiny, tmp_path):
    run_chain(tiny, [3.0], 1, tmp_path, CONFIG, verbose=0, log=None)
    before = _files(tmp_path)
    with pytest.raises(ConfigMismatchError, match="holds a run of one seed"):
        run_chain(tiny, [3.0], 1, tmp_path, CONFIG, verbose=0, seeds=[3, 4], log=None)
    assert _files(tmp_path) == before
    run_chain(tiny, [3.0], 1, tmp_path / "two", CONFIG, verbose=0, seeds=[3, 4], log=None)
    with pytest.raises(ConfigMismatchError, match="holds a run of several seeds"):
        run_chain(tiny, [3.0], 1, tmp_path / "two", CONFIG, verbose=0, seeds=[3], log=None)
    for bad in ([], [1, 1], [-1, 2]):
        with pytest.raises(ValueError, match=r"seeds must be one or more distinct integers"):
            run_chain(tiny, [3.0], 1, tmp_path / "new", CONFIG, verbose=0, seeds=bad)


def test_the_learning_warning_names_the_seed_of_a_run_of_seeds():
    row = {"dataset": "mnist", "temperature": 5.0, "stage": 1, "role": "teacher"}
    row |= {"test_accuracy": 0.1}
    assert learning_warning(row).startswith("mnist T=5 stage 1 teacher did not learn")
    named = learning_warning(row | {"seed": 3})
    assert named.startswith("mnist seed 3 T=5 stage 1 teacher did not learn")
    assert learning_warning(row | {"seed": None}) == learning_warning(row)
