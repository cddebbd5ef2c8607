"""The whole study (`python -m keras_takd.takd.study`, `run_study`) on tiny settings: serially
end to end, the same tables as a separate evaluation of its models, a rerun that computes
nothing, the same tables on a local two-node Ray cluster, a trained model's attacks before a
new chain has trained, and a bad flag in one line.

Tolerance of the Ray comparison: none (byte for byte) but the columns that differ between
any two trainings (wall time, the run folder's paths). A Ray task trains and attacks with op
determinism and the same seeds as the serial study, and with TensorFlow's thread pools of its
one CPU; the serial study runs with one thread too (TF_NUM_INTRAOP_THREADS and
TF_NUM_INTEROP_THREADS), since training on a different number of threads sums in another
order and comes out a validation image apart after one epoch (measured: 0.5 vs 0.515625).
A unit computes the same whenever it runs, so the order in which the scheduler hands units out
changes no number."""

import pathlib
import shutil

import pandas as pd
import pytest

from keras_takd.core.results import prepare_run_dir
from keras_takd.takd.study import run_study
from keras_takd.takd.study.chain_units import ChainUnit

pytestmark = pytest.mark.slow

# Columns that differ between two trainings of the same chain: wall time and the folder.
_RUN_COLUMNS = ["train_seconds", "saved_model", "keras_model"]
_ONE_THREAD = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}


# The tiny study's evaluation: L2 on 4 images, the metrics on 16, with the indicators.
_EVALUATION = [
    "--attacks=l2",
    "--num_images=4",
    "--metric_images=16",
    "--l2_max_iterations=10",
    "--l2_binary_search_steps=2",
    "--nogradient_masking",
    "--noattack_verbose",
]


def _flags(output_dir: pathlib.Path, data_dir: pathlib.Path, temperatures="1,5") -> list[str]:
    """The tiny study: 2 chains (T = 1, 5) of 2 models, L2 on 4 images."""
    return [
        f"--output_dir={output_dir}",
        f"--data_dir={data_dir}",
        "--dataset=mnist",
        "--stages=2",
        f"--temperature={temperatures}",
        "--epochs=1",
        "--batch_size=64",
        "--learning_rate=0.05",
        "--seed=3",
        "--train_size=512",
        "--validation_size=64",
        "--test_size=64",
        *_EVALUATION,
    ]


def _progress(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith("study: ")]


@pytest.fixture(scope="module")
def serial_study(tmp_path_factory, shared_data_dir, cli):
    """The tiny study run serially once per module: (run folder, its progress lines)."""
    out = tmp_path_factory.mktemp("study") / "serial"
    done = cli("keras_takd.takd.study", *_flags(out, shared_data_dir), env=_ONE_THREAD)
    assert done.returncode == 0, done.stderr[-2000:]
    return out, _progress(done.stdout)


def _tables(out: pathlib.Path) -> tuple[pd.DataFrame, bytes]:
    results = pd.read_csv(out / "results.csv").drop(columns=_RUN_COLUMNS)
    return results, (out / "per_image.csv").read_bytes()


def test_the_study_trains_evaluates_and_reports(serial_study):
    out, progress = serial_study
    results, per_image = _tables(out)
    assert len(results) == 4  # 2 temperatures x 2 stages
    assert results["l2_attacked"].notna().all() and results["test_accuracy"].notna().all()
    assert per_image.count(b"\n") > 1
    assert (out / "figures" / "claims.md").stat().st_size > 0
    assert list((out / "figures").glob("*.png"))
    # The first line, one per finished unit (2 chains x 2 stages + 4 models x 3 units), the last.
    assert len(progress) == 1 + 16 + 1, progress
    assert "2 chains to train, 0 trained" in progress[0]
    assert "16 of 16 units done, 0 running, 0 left" in progress[-2]
    done = [line for line in progress if " done (" in line]
    first_evaluation = next(i for i, line in enumerate(done) if "metrics done" in line)
    second_chain = next(i for i, line in enumerate(done) if "T=5 seed 3 stage 1 done" in line)
    assert first_evaluation < second_chain  # a model is evaluated before the next chain trains
    assert "T=1 seed 3 stage 1 done" in done[0] and "T=1 seed 3 stage 2 done" in done[4]


def _unevaluated_copy(out, folder, stored_units, forget_unit) -> pathlib.Path:
    """A copy of the run folder `out` with every evaluation unit forgotten (models kept)."""
    copy = shutil.copytree(out, folder)
    for stage, kind in {(stage, kind) for stage, kind, *_ in stored_units(copy)}:
        forget_unit(copy, stage, kind)
    return copy


def test_the_study_stores_what_a_separate_evaluation_of_its_models_stores(
    serial_study, shared_data_dir, tmp_path, cli, stored_units, forget_unit
):
    """The units the scheduler hands out while chains train are the `evaluate` command's,
    byte for byte, as when the study evaluated each chain with `evaluate_run` in turn."""
    out = serial_study[0]
    copy = _unevaluated_copy(out, tmp_path / "evaluated_apart", stored_units, forget_unit)
    assert stored_units(copy) == []
    flags = (f"--output_dir={copy}", f"--data_dir={shared_data_dir}", *_EVALUATION)
    done = cli("keras_takd.takd.evaluate", *flags, env=_ONE_THREAD)
    assert done.returncode == 0, done.stderr[-2000:]
    assert stored_units(copy) == stored_units(out)
    for table in ("results.csv", "per_image.csv"):
        assert (copy / table).read_bytes() == (out / table).read_bytes(), table


class _Counting:
    """A serial executor that remembers every unit it was handed."""

    def __init__(self):
        self.units = []

    def map(self, fn, units):
        for unit in units:
            self.units.append(unit)
            yield unit, fn(unit)


class _Killed(Exception):
    """What kills `_KilledAfterFirstStage`'s study."""


class _KilledAfterFirstStage:
    """A serial executor whose study dies as soon as its first trained stage is written."""

    def map(self, fn, units):
        for unit in units:
            yield unit, fn(unit)
            if isinstance(unit, ChainUnit):  # the scheduler has written it: die before the next
                raise _Killed(unit.name)


class _KilledAfter:
    """A serial executor whose study dies once `count` units have been stored."""

    def __init__(self, count):
        self.count = count

    def map(self, fn, units):
        for done, unit in enumerate(units, 1):
            yield unit, fn(unit)
            if done == self.count:
                raise _Killed(unit)


def _rerun(out, data_dir, temperatures, executor, stages=2):
    """The tiny study again, in process, on `executor`; returns its log lines."""
    from keras_takd.core.distillation import TrainConfig
    from keras_takd.takd.evaluation import EvaluationConfig

    lines = []
    data = dict(name="mnist", data_dir=data_dir, validation_size=64, train_size=512, test_size=64)
    chains = dict(temperatures=temperatures, stages=stages, seeds=[3], deterministic=True)
    train = TrainConfig(epochs=1, batch_size=64, learning_rate=0.05, seed=3)
    l2 = {"l2": {"max_iterations": 10, "binary_search_steps": 2}}
    evaluation = EvaluationConfig(
        attacks=("l2",), num_images=4, metric_images=16, attack_options=l2, gradient_masking=False
    )
    run_study(out, data, chains, train, evaluation, executor, log=lines.append)
    return lines


def test_a_rerun_computes_nothing(serial_study, shared_data_dir, study_opening):
    out, _ = serial_study
    before = _tables(out)
    counting = _Counting()
    opening = study_opening(_rerun(out, shared_data_dir, [1.0, 5.0], counting))
    assert counting.units == []
    assert "0 chains to train, 2 trained; 16 of 16 units done" in opening
    pd.testing.assert_frame_equal(_tables(out)[0], before[0])
    assert _tables(out)[1] == before[1]


def test_a_study_with_a_new_temperature_trains_and_evaluates_only_its_chain(
    serial_study, shared_data_dir, tmp_path, study_opening
):
    """As a driver killed after its first chains resumes: the chains written are kept."""
    out = shutil.copytree(serial_study[0], tmp_path / "extended")
    before = _tables(out)[0]
    counting = _Counting()
    opening = study_opening(_rerun(out, shared_data_dir, [1.0, 5.0, 10.0], counting))
    assert "1 chain to train, 2 trained; 16 of 24 units done, 0 running, 8 left" in opening
    training = [u.name for u in counting.units if hasattr(u, "name")]
    assert training == [f"training mnist T=10 seed 3 stage {k}" for k in (1, 2)]
    evaluation = [u for u in counting.units if not hasattr(u, "name")]
    assert {u.model_path.parent.parent.name for u in evaluation} == {"T10"}
    assert len(counting.units) == 2 + 2 * 3
    after = _tables(out)[0]
    pd.testing.assert_frame_equal(after[after["temperature"] != 10].reset_index(drop=True), before)
    # Killed once its first stage is written, the chain resumes at its second stage, and
    # every table is the uninterrupted study's (each stage has its own seed).
    killed = shutil.copytree(serial_study[0], tmp_path / "killed")
    with pytest.raises(_Killed):
        _rerun(killed, shared_data_dir, [1.0, 5.0, 10.0], _KilledAfterFirstStage())
    counting = _Counting()
    opening = study_opening(_rerun(killed, shared_data_dir, [1.0, 5.0, 10.0], counting))
    assert "1 chain to train, 2 trained; 17 of 24 units done, 0 running, 7 left" in opening
    assert [u.name for u in counting.units if hasattr(u, "name")] == [
        "training mnist T=10 seed 3 stage 2"
    ]
    pd.testing.assert_frame_equal(_tables(killed)[0], after, check_exact=True)
    assert _tables(killed)[1] == _tables(out)[1]


def test_a_chain_killed_mid_way_resumes_with_its_written_models_evaluations_counted(
    shared_data_dir, tmp_path, study_opening
):
    """No chain finished, but the record holds a model and its evaluation: the first line
    counts them, and the chain's next stage is the only unit left to train."""
    out = tmp_path / "mid_chain"
    with pytest.raises(_Killed):  # stage 1, then its 3 evaluation units
        _rerun(out, shared_data_dir, [10.0], _KilledAfter(4))
    counting = _Counting()
    opening = study_opening(_rerun(out, shared_data_dir, [10.0], counting))
    assert "1 chain to train, 0 trained; 4 of 8 units done, 0 running, 4 left" in opening
    assert [u.name for u in counting.units if hasattr(u, "name")] == [
        "training mnist T=10 seed 3 stage 2"
    ]
    assert len(counting.units) == 1 + 3


def test_a_longer_chain_starts_from_the_stages_of_a_shorter_ones_run(
    serial_study, shared_data_dir, tmp_path
):
    """A study of 3-model chains given the model folders of a 2-model chain's run (its warm
    start and stages, no record) trains only the third stage, and records the first two under
    their new roles, at their paths in its own folder. (That the copied stages are the ones a
    3-model chain trains: test_chains.py::test_same_seed_same_numbers.)"""
    serial = serial_study[0]
    out = tmp_path / "longer"
    for folder in ("mnist/init", "mnist/T5/stage1", "mnist/T5/stage2"):
        shutil.copytree(serial / folder, out / folder)
    counting = _Counting()
    _rerun(out, shared_data_dir, [5.0], counting, stages=3)
    training = [u.name for u in counting.units if hasattr(u, "name")]
    assert training == ["training mnist T=5 seed 3 stage 3"]
    results = pd.read_csv(out / "results.csv")
    assert list(results["role"]) == ["teacher", "assistant", "student"]
    for stage in (1, 2):  # the copied stages kept as they were: not trained or written again
        for name in ("model.keras", "metadata.json"):
            path = f"mnist/T5/stage{stage}/{name}"
            assert (out / path).read_bytes() == (serial / path).read_bytes(), path
    shorter = pd.read_csv(serial / "results.csv").query("temperature == 5")
    assert list(results["val_accuracy"][:2]) == list(shorter["val_accuracy"])  # their metadata's
    # test_accuracy is not the metadata's but the metrics unit's, computed again in this process
    # (the copy has no record): with other threads than the serial CLI's one, float32 logits
    # may tie otherwise in the argmax, so up to one test image apart.
    one_image = 1 / results["metric_images"].iloc[0]
    accuracy = results["test_accuracy"][:2].to_numpy()
    assert accuracy == pytest.approx(shorter["test_accuracy"].to_numpy(), rel=0, abs=one_image)
    assert list(results["keras_model"]) == [
        str(out / f"mnist/T5/stage{stage}/model.keras") for stage in (1, 2, 3)
    ]


def test_ray_gives_the_serial_study(cluster, serial_study, shared_data_dir, tmp_path, cli):
    """Chains train and units run as Ray tasks on two one-CPU nodes; the driver writes."""
    serial, _ = serial_study
    out = tmp_path / "on_ray"
    ray = ("--executor=ray", f"--ray_address={cluster.address}")
    done = cli("keras_takd.takd.study", *_flags(out, shared_data_dir), *ray)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "16 of 16 units done, 0 running, 0 left" in _progress(done.stdout)[-1]
    pd.testing.assert_frame_equal(_tables(out)[0], _tables(serial)[0], check_exact=True)
    assert _tables(out)[1] == _tables(serial)[1]
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in serial.iterdir())


def test_on_ray_a_trained_models_attacks_start_before_a_new_chain_has_trained(
    cluster, serial_study, shared_data_dir, tmp_path, cli, stored_units, forget_unit
):
    """As a study resumed after a kill: the models written before are attacked at once, on
    the workers the new chain leaves free, not after it has trained (as until issue 24)."""
    serial = serial_study[0]
    out = _unevaluated_copy(serial, tmp_path / "resumed", stored_units, forget_unit)
    ray = ("--executor=ray", f"--ray_address={cluster.address}")
    done = cli("keras_takd.takd.study", *_flags(out, shared_data_dir, "1,5,10"), *ray)
    assert done.returncode == 0, done.stderr[-2000:]
    progress = _progress(done.stdout)
    assert "1 chain to train, 2 trained" in progress[0]
    assert "24 of 24 units done, 0 running, 0 left" in progress[-2]
    finished = [line for line in progress if " done (" in line]
    new_chain = next(i for i, line in enumerate(finished) if "T=10 seed 3 stage 1 done" in line)
    assert "metrics done" in finished[0] or "l2 done" in finished[0], progress
    assert new_chain > 0, progress
    results = _tables(out)[0]
    pd.testing.assert_frame_equal(
        results[results["temperature"] != 10].reset_index(drop=True),
        _tables(serial)[0],
        check_exact=True,
    )
    per_image = pd.read_csv(out / "per_image.csv")
    kept = per_image[per_image["temperature"] != 10].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, pd.read_csv(serial / "per_image.csv"), check_exact=True)


@pytest.mark.parametrize(
    "flag, expected",
    [
        ("--num_shards=2", "a study takes none of --num_shards"),
        ("--temperature=0", "--temperature must be a comma-separated list of numbers > 0"),
    ],
)
def test_a_bad_flag_is_one_line(cli, tmp_path, flag, expected):
    result = cli("keras_takd.takd.study", f"--output_dir={tmp_path / 'run'}", flag)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("keras-takd-study: error:")
    assert expected in result.stderr
    assert not (tmp_path / "run").exists()


def test_a_declaration_for_a_run_that_already_trained_is_refused_before_any_work(cli, tmp_path):
    """A primary comparison declared on a run folder that holds results and none recorded would
    be declared after the study ran: one line, exit 1, nothing written, before Ray starts."""
    run = prepare_run_dir(tmp_path / "run", {"train": {"epochs": 1}}, {"flags": {}})
    (run / "results.csv").write_text("dataset,temperature,stage\nmnist,20.0,1\n")
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    result = cli(
        "keras_takd.takd.study",
        f"--output_dir={run}",
        "--temperature=20",
        "--primary_comparison=student-teacher@20",
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("keras-takd-study: error:")
    assert "holds models trained without a declaration" in result.stderr
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before
