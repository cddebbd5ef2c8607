"""Fixtures of the chain study's tests: a tiny trained chain, fake attacks, `evaluate_run`,
a small results table with its per-image table, a run's record, and a study's first line."""

import contextlib
import functools
import shutil
import sqlite3

import numpy as np
import pandas as pd
import pytest

from keras_takd import attacks
from keras_takd.attacks import AttackResult
from keras_takd.core.data import load_dataset
from keras_takd.core.distillation import TrainConfig
from keras_takd.takd import evaluation, schema
from keras_takd.takd.chains import run_chain

TINY_TEMPERATURE = 5.0


def pixel_means(x) -> np.ndarray:
    """The mean pixel of each image, which decides the fake attacks' results."""
    return np.asarray(x, np.float64).reshape(len(x), -1).mean(axis=1)


class FakeAttacks:
    """Stand-ins for the attacks: success iff the image's mean pixel m > 0.1, distances from
    that mean (L0 = 1000 m, L2 = 10 m, L-inf = m). Records every call; can fail on call k.

    `install(monkeypatch)` puts them in place of every attack function of an evaluation.
    """

    pixel_means = staticmethod(pixel_means)

    def __init__(self, fail_on_call=None, silent=False):
        self.calls, self.fail_on_call, self.silent = [], fail_on_call, silent

    def install(self, monkeypatch):
        for name, function in evaluation.ATTACK_FUNCTIONS.items():
            monkeypatch.setattr(attacks, function, self._fake(name, getattr(attacks, function)))

    def _fake(self, name, real):
        @functools.wraps(real)  # keeps the real signature, which the options are checked against
        def attack(model, x, y, *, allow_probabilities=False, verbose=False, **options):
            self.calls.append({"attack": name, "n": len(x), "probabilities": allow_probabilities})
            if self.fail_on_call == len(self.calls):
                raise KeyboardInterrupt("killed")
            outputs = np.asarray(model(x))
            self.calls[-1]["outputs_sum_to_one"] = bool(np.allclose(outputs.sum(1), 1, atol=1e-4))
            m = pixel_means(x)
            found = (m > 0.1) | (self.silent and m > 0)  # silent: "found" all, returned some
            return AttackResult(
                x, m > 0.1, 1000 * m, 10 * m, m, np.full(len(x), np.nan), y, found=found,
                iterations=np.full(len(x), 7), incomplete=m > 0.3,  # "still falling" if bright
            )  # fmt: skip

        return attack


@pytest.fixture(scope="session")
def fake_attacks():
    """The `FakeAttacks` class: `fake = fake_attacks(); fake.install(monkeypatch)`."""
    return FakeAttacks


def _tiny_chain(out, data_dir, seeds=None):
    """Trains the tiny chain (see `tiny_chain`) into `out`, with `seeds` (None: one, 3)."""
    data = load_dataset("mnist", data_dir, validation_size=64, train_size=1024, test_size=64)
    config = TrainConfig(epochs=1, batch_size=32, learning_rate=0.05, seed=3)
    run_chain(data, [TINY_TEMPERATURE], 2, out, config, verbose=0, seeds=seeds)
    return out, data


@pytest.fixture(scope="session")
def tiny_chain(tmp_path_factory, shared_data_dir):
    """A 2-stage chain at T = 5 (1 epoch on 1,024 images, about 80% accurate), trained once
    per session; (run folder, dataset). Copy it before evaluating it: see `tiny_run`."""
    return _tiny_chain(tmp_path_factory.getbasetemp() / "tiny_chain", shared_data_dir)


@pytest.fixture
def tiny_run(tiny_chain, tmp_path):
    """A private copy of the tiny chain, so evaluations of different tests never meet."""
    source, data = tiny_chain
    shutil.copytree(source, tmp_path / "run")
    return tmp_path / "run", data


@pytest.fixture(scope="session")
def tiny_seeds_chain(tmp_path_factory, shared_data_dir):
    """The tiny chain trained with two seeds, 3 and 4 (a run of several seeds, issue 25:
    `mnist/T5/seed<s>/stage<k>`), once per session; (run folder, dataset). Copy it before
    evaluating it: see `tiny_seeds_run`."""
    out = tmp_path_factory.getbasetemp() / "tiny_seeds_chain"
    return _tiny_chain(out, shared_data_dir, seeds=[3, 4])


@pytest.fixture
def tiny_seeds_run(tiny_seeds_chain, tmp_path):
    """A private copy of the tiny chain of two seeds."""
    source, data = tiny_seeds_chain
    shutil.copytree(source, tmp_path / "run")
    return tmp_path / "run", data


def _evaluate(run_dir, data, output=None, verbose=False, log=None, replace=False, **settings):
    """`evaluate_run` with the settings of an `EvaluationConfig` given as keywords (and
    `executor=`)."""
    executor = settings.pop("executor", None)
    config = evaluation.EvaluationConfig(**settings)
    return evaluation.evaluate_run(
        run_dir, data, config, output, verbose, log, replace, executor=executor
    )


@pytest.fixture(scope="session")
def evaluate():
    """`evaluate(run_dir, data, output=None, log=None, replace=False, **settings)`: an
    evaluation with the `EvaluationConfig` settings given as keywords."""
    return _evaluate


def _chain_tables(
    images: int = 5, misclassified=(), unfooled=(), temperatures=(1.0, 20.0)
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Results and per-image rows of a three-model chain per temperature, C&W L2 only.

    Later stages need larger perturbations (0.1 per stage) plus a little image noise.
    `misclassified` and `unfooled` hold (temperature, stage, image) triples: that model
    misclassifies the image (not attacked), or the attack fails on it. The results rows hold
    the means, maxima and success rates of the per-image rows.
    """
    results, per_image = [], []
    for t in temperatures:
        for s, r in ((1, "teacher"), (2, "assistant"), (3, "student")):
            key = {"dataset": "mnist", "temperature": t, "stage": s, "role": r, "stages": 3}
            rows = []
            for i in range(images):
                correct = (t, s, i) not in misclassified
                success = correct and (t, s, i) not in unfooled
                distance = 1.0 + 0.1 * s + 0.01 * ((i * 7 + s) % 5) if success else float("nan")
                rows.append(
                    key
                    | {"attack": "l2", "image": i, "correct": correct, "success": success}
                    | {"distance": distance, "const": 1.0}
                )
            per_image += rows
            fooled = [row["distance"] for row in rows if row["success"]]
            attacked = sum(row["correct"] for row in rows)
            results.append(
                key
                | {"l2_mean": sum(fooled) / len(fooled), "l2_max": max(fooled)}
                | {"l2_success_rate": len(fooled) / attacked, "l2_attacked": attacked}
                | {"l2_excluded": images - attacked}
            )
    per_image = pd.DataFrame(per_image, columns=list(schema.PER_IMAGE_COLUMNS))
    return pd.DataFrame(results), per_image


@pytest.fixture
def chain_tables():
    """`chain_tables(images=5, misclassified=(), unfooled=(), temperatures=(1.0, 20.0))` ->
    (results, per_image) of three-model chains, C&W L2 only (see `_chain_tables`)."""
    return _chain_tables


def _stored_units(run_dir) -> list[tuple]:
    """(stage, kind, first image, stop image) of every unit in the run's record, sorted."""
    query = "SELECT stage, kind, first_image, stop_image FROM units"
    with contextlib.closing(sqlite3.connect(run_dir / "record.sqlite")) as connection:
        return sorted(connection.execute(query).fetchall())


def _forget_unit(run_dir, stage: int, kind: str) -> None:
    """Deletes the units of `kind` of the model at `stage` from the run's record."""
    with contextlib.closing(sqlite3.connect(run_dir / "record.sqlite")) as connection:
        with connection:
            connection.execute("DELETE FROM units WHERE stage = ? AND kind = ?", (stage, kind))


@pytest.fixture(scope="session")
def stored_units():
    """The units a run's record holds: `stored_units(run_dir)`."""
    return _stored_units


@pytest.fixture(scope="session")
def forget_unit():
    """Deletes a unit from a run's record, as if it had never finished:
    `forget_unit(run_dir, stage, kind)`."""
    return _forget_unit


def _study_opening(lines: list[str]) -> str:
    """The study's first progress line, logged once the units its record holds are counted."""
    return next(line for line in lines if line.startswith("study: "))


@pytest.fixture(scope="session")
def study_opening():
    """The first progress line among a study's log lines: `study_opening(lines)`."""
    return _study_opening


@pytest.fixture(scope="module")
def cluster():
    """Two Ray nodes on localhost with one CPU each, joined by this process (per module)."""
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install -e '.[test]')")
    from ray.cluster_utils import Cluster

    nodes = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False}
    )
    nodes.add_node(num_cpus=1)
    nodes.wait_for_nodes()
    ray.init(address=nodes.address)
    yield nodes
    ray.shutdown()
    nodes.shutdown()
