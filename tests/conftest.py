"""Shared fixtures and the suite's set-up: quiet TensorFlow, op determinism, the `slow` marker.

Slow tests. `pytest -m "not slow"` is the quick loop: a test is slow when it runs a command
(`cli`) or uses a fixture that trains (`TRAINING_FIXTURES`); a test that trains in its own
body carries `@pytest.mark.slow`.
"""

import os
import pathlib
import re
import subprocess
import sys
import tempfile

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = pathlib.Path(__file__).resolve().parents[1]
DATA_ENV = "KERAS_TAKD_SHARED_DATA"
SHARED_DATA = pathlib.Path(os.environ.get(DATA_ENV, REPO.parent / "shared" / "data")).resolve()
# Fixtures that train a model (directly or through a command): every test using one is slow.
TRAINING_FIXTURES = frozenset(
    {
        "cli",  # runs a command (most of them train)
        "mnist_attack_model",  # tests/attacks/conftest.py
        "tiny_run",  # tests/takd/test_evaluation.py: a trained 2-stage chain
        "tiny",  # tests/takd/test_chains.py: the data every run_chain test trains on
        "stand_in_run",  # tests/takd/test_summary.py: a trained and evaluated chain
        "finished_run",  # tests/takd/test_train.py: the training command's run
    }
)
# TensorFlow's C++ start-up lines, printed before absl logging is initialised, which no
# environment variable silences: absl's banner and INFO lines ("I0000 ...").
_START_UP_NOISE = re.compile(r"^(WARNING: All log messages before absl::InitializeLog|I\d{4} )")


def _import_tensorflow_quietly() -> None:
    """Imports TensorFlow once, passing on every line it prints but its start-up noise."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        captured.seek(0)
        lines = captured.read().decode(errors="replace").splitlines(keepends=True)
    sys.stderr.writelines(line for line in lines if not _START_UP_NOISE.match(line))


_import_tensorflow_quietly()


def _deterministic_session() -> None:
    """Seeds and enables TensorFlow op determinism once, before any test runs.

    Op determinism is a process-wide switch that cannot be turned off; tests that train turn
    it on. Turned on from the start, every test computes the same numbers whichever tests ran
    before it (without it, the tiny chain that tests/takd/test_evaluation.py trains once per
    session came out differently in a full run and in a run of one module).
    """
    from keras_takd.core.seeding import set_seed

    set_seed(0, deterministic=True)


_deterministic_session()


def pytest_collection_modifyitems(items):
    """Marks slow every test that uses a training fixture (see `TRAINING_FIXTURES`)."""
    for item in items:
        if TRAINING_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def shared_data_dir() -> pathlib.Path:
    """The folder with mnist.npz and the CIFAR-10 stand-in (never copied into the repo)."""
    if not (SHARED_DATA / "mnist.npz").exists():
        pytest.fail(f"{SHARED_DATA}/mnist.npz not found: tests need ../shared/data beside the repo")
    return SHARED_DATA


@pytest.fixture(scope="session")
def mnist_small(shared_data_dir):
    """2,000 training and 500 test MNIST images as float32 [N, 28, 28, 1] in [0, 1]."""
    with np.load(shared_data_dir / "mnist.npz", allow_pickle=False) as f:
        x_train = f["x_train"][:2000].astype("float32")[..., None] / 255.0
        y_train = f["y_train"][:2000].astype("int64")
        x_test = f["x_test"][:500].astype("float32")[..., None] / 255.0
        y_test = f["y_test"][:500].astype("int64")
    return x_train, y_train, x_test, y_test


def run_cli(module: str, *args: str, cwd=REPO, timeout: float = 600, env: dict | None = None):
    """Runs `python -m <module> <args>` as a user would, from `cwd`; returns the CompletedProcess.

    The repository is put on PYTHONPATH so the command runs this checkout's code from any
    folder; `env` adds or overrides environment variables.
    """
    environment = {
        **os.environ,
        "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        **(env or {}),
    }
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def cli():
    """The one way tests run a command line: `cli("keras_takd.main", "--flag", cwd=...)`."""
    return run_cli
