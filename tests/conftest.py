"""Shared fixtures: the offline data in ../shared/data and small, fast settings."""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = pathlib.Path(
    os.environ.get("KERAS_TAKD_SHARED_DATA", REPO.parent / "shared" / "data")
).resolve()


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
