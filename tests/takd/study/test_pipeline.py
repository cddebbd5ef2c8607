"""The whole study (`run_study`, `python -m keras_takd.takd.study`) on tiny settings: serially
end to end, a rerun that computes nothing, the same tables on a local two-node Ray cluster,
and a bad flag in one line.

Tolerance of the Ray comparison: see `test_ray_gives_the_serial_study`.
"""

import pathlib

import pandas as pd
import pytest

from keras_takd.core.distillation import TrainConfig
from keras_takd.takd.evaluation import EvaluationConfig
from keras_takd.takd.evaluation.executors import SerialExecutor
from keras_takd.takd.study import run_study

pytestmark = pytest.mark.slow

CHAINS = dict(temperatures=[1.0, 5.0], stages=2, seeds=[3], deterministic=True)
TRAIN = TrainConfig(epochs=1, batch_size=64, learning_rate=0.05, seed=3)
EVALUATION = EvaluationConfig(
    attacks=("l2",),
    num_images=4,
    metric_images=16,
    attack_options={"l2": {"max_iterations": 10, "binary_search_steps": 2}},
    gradient_masking=False,
)
# Columns that differ between two trainings of the same chain: wall time and the folder.
_RUN_COLUMNS = ["train_seconds", "saved_model", "keras_model"]


class _Counting:
    """A serial executor that remembers every unit it was handed."""

    def __init__(self):
        self.units = []

    def map(self, fn, units):
        for unit in units:
            self.units.append(unit)
            yield unit, fn(unit)


def _study(output_dir, data_dir, executor=None, workers=1):
    """Runs the tiny study into output_dir; returns its log lines."""
    lines = []
    data = dict(name="mnist", data_dir=data_dir, validation_size=64, train_size=512, test_size=64)
    run_study(
        output_dir,
        data,
        CHAINS,
        TRAIN,
        EVALUATION,
        executor=executor,
        run_info={"flags": {"data_dir": str(data_dir)}},
        workers=workers,
        log=lines.append,
    )
    return lines


@pytest.fixture(scope="module")
def serial_study(tmp_path_factory, shared_data_dir):
    """The tiny study run serially once per module: (run folder, its log lines)."""
    out = tmp_path_factory.mktemp("study") / "serial"
    return out, _study(out, shared_data_dir, SerialExecutor())


def _tables(out: pathlib.Path) -> tuple[pd.DataFrame, bytes]:
    results = pd.read_csv(out / "results.csv").drop(columns=_RUN_COLUMNS)
    return results, (out / "per_image.csv").read_bytes()


def test_the_study_trains_evaluates_and_reports(serial_study):
    out, lines = serial_study
    results, per_image = _tables(out)
    assert len(results) == 4  # 2 temperatures x 2 stages
    assert results["l2_attacked"].notna().all() and results["test_accuracy"].notna().all()
    assert per_image.count(b"\n") > 1
    assert (out / "figures" / "claims.md").stat().st_size > 0
    assert list((out / "figures").glob("*.png"))
    progress = [line for line in lines if line.startswith("study: ")]
    # The first line, one per finished unit (2 chains + 4 models x 3 units), the last.
    assert len(progress) == 1 + 2 + 12 + 1, progress
    assert "2 chains to train, 0 trained" in progress[0]
    assert "14 of 14 units done, 0 running, 0 left" in progress[-2]
    first_evaluation = next(i for i, line in enumerate(progress) if "metrics done" in line)
    second_chain = next(i for i, line in enumerate(progress) if "T=5 seed 3 done" in line)
    assert first_evaluation < second_chain  # a chain is evaluated before the next trains


def test_a_rerun_computes_nothing(serial_study, shared_data_dir):
    out, _ = serial_study
    before = _tables(out)
    counting = _Counting()
    lines = _study(out, shared_data_dir, counting)
    assert counting.units == []
    assert "0 chains to train, 2 trained" in lines[0]
    pd.testing.assert_frame_equal(_tables(out)[0], before[0])
    assert _tables(out)[1] == before[1]


def test_ray_gives_the_serial_study(cluster, serial_study, shared_data_dir, tmp_path):
    """Chains train and units run as Ray tasks on two one-CPU nodes; the driver writes.

    Tolerance: the tasks train and attack with op determinism and the same seeds as the
    serial study, but TensorFlow has one thread per task where this process has the
    machine's, so float sums may be ordered differently: the tables are compared to 1e-6
    relative, far below the spread between seeds.
    """
    from keras_takd.takd.evaluation.ray_executor import RayExecutor

    serial, _ = serial_study
    out = tmp_path / "on_ray"
    lines = _study(out, shared_data_dir, RayExecutor(), workers=2)
    assert any("study complete" in line for line in lines)
    ray_results, results = _tables(out)[0], _tables(serial)[0]
    pd.testing.assert_frame_equal(ray_results, results, check_exact=False, rtol=1e-6)
    pd.testing.assert_frame_equal(
        pd.read_csv(out / "per_image.csv"),
        pd.read_csv(serial / "per_image.csv"),
        check_exact=False,
        rtol=1e-6,
    )
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in serial.iterdir())


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
