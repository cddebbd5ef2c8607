"""Shared fixtures and the suite's set-up: quiet TensorFlow, the data, the `slow` marker.

Data. MNIST comes from the folder named by KERAS_TAKD_SHARED_DATA (default ../shared/data
beside the repository) when it holds mnist.npz; otherwise from tensorflow-datasets, when its
cache already holds MNIST or its download host answers at once, written once as mnist.npz into
a cache folder outside the repository (KERAS_TAKD_TEST_CACHE, default
~/.cache/keras_takd/tests); otherwise every test that needs it is skipped with one reason.
CIFAR-10 is never read from disk: tests get a small synthetic set (`cifar10_data_dir`).

Slow tests. `pytest -m "not slow"` is the quick loop: a test is slow when it runs a command
(`cli`) or uses a fixture that trains (`TRAINING_FIXTURES`); a test that trains in its own
body carries `@pytest.mark.slow`.
"""

import contextlib
import fcntl
import os
import pathlib
import signal
import subprocess
import sys

import numpy as np
import pytest

from keras_takd.core.cli import import_tensorflow

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = pathlib.Path(__file__).resolve().parents[1]
DATA_ENV = "KERAS_TAKD_SHARED_DATA"
SHARED_DATA = pathlib.Path(os.environ.get(DATA_ENV, REPO.parent / "shared" / "data")).resolve()
CACHE_ENV = "KERAS_TAKD_TEST_CACHE"
TEST_CACHE = pathlib.Path(
    os.environ.get(CACHE_ENV, pathlib.Path.home() / ".cache" / "keras_takd" / "tests")
).resolve()
# Fixtures that train a model (directly or through a command): every test using one is slow.
TRAINING_FIXTURES = frozenset(
    {
        "cli",  # runs a command (most of them train)
        "mnist_attack_model",  # tests/attacks/conftest.py
        "tiny_run",  # tests/takd/test_evaluation.py: a trained 2-stage chain
        "tiny_seeds_run",  # tests/takd/conftest.py: the same chain trained with two seeds
        "tiny",  # tests/takd/test_chains.py: the data every run_chain test trains on
        "stand_in_run",  # tests/takd/test_summary.py: a trained and evaluated chain
        "finished_run",  # tests/takd/test_train.py: the training command's run
    }
)
# TensorFlow imported once, here, without the C++ notices its import prints before absl
# logging is set up (no environment variable silences them); C++ ERROR lines stay visible.
import_tensorflow()


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


def _mnist_from_tensorflow_datasets() -> pathlib.Path:
    """The cache folder holding mnist.npz, written from tensorflow-datasets the first time.

    Raises:
        keras_takd.core.data.DataError: tensorflow-datasets has no MNIST and cannot download
            it (its download host is probed first, for a few seconds at most).
    """
    folder = TEST_CACHE / "data"
    if (folder / "mnist.npz").is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "mnist.lock", "w") as lock:  # the test processes (pytest -n 2) take turns
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / "mnist.npz").is_file():
            _write_mnist_from_tensorflow_datasets(folder)
    return folder


def _write_mnist_from_tensorflow_datasets(folder: pathlib.Path) -> None:
    """Writes `folder`/mnist.npz from tensorflow-datasets (see the caller)."""
    from keras_takd.core.data import load_dataset

    data = load_dataset("mnist", validation_size=0)
    arrays = {
        "x_train": data.x_train,
        "y_train": data.y_train,
        "x_test": data.x_test,
        "y_test": data.y_test,
    }
    partial = folder / f"mnist.{os.getpid()}.partial.npz"
    np.savez(
        partial,
        **{
            key: np.rint(value[..., 0] * 255).astype(np.uint8) if key[0] == "x" else value
            for key, value in arrays.items()
        },
    )
    partial.replace(folder / "mnist.npz")


@pytest.fixture(scope="session")
def shared_data_dir() -> pathlib.Path:
    """A folder holding mnist.npz (Keras' layout); skips the test where there is none."""
    if (SHARED_DATA / "mnist.npz").is_file():
        return SHARED_DATA
    from keras_takd.core.data import DataError

    try:
        return _mnist_from_tensorflow_datasets()
    except DataError:
        pytest.skip(
            f"no MNIST: {DATA_ENV}={SHARED_DATA} holds no mnist.npz and tensorflow-datasets "
            "has none and cannot download it"
        )


@pytest.fixture(scope="session")
def mnist_small(shared_data_dir):
    """2,000 training and 500 test MNIST images as float32 [N, 28, 28, 1] in [0, 1]."""
    with np.load(shared_data_dir / "mnist.npz", allow_pickle=False) as f:
        x_train = f["x_train"][:2000].astype("float32")[..., None] / 255.0
        y_train = f["y_train"][:2000].astype("int64")
        x_test = f["x_test"][:500].astype("float32")[..., None] / 255.0
        y_test = f["y_test"][:500].astype("int64")
    return x_train, y_train, x_test, y_test


CIFAR10_SYNTHETIC = "cifar10_synthetic.npz"


@pytest.fixture(scope="session")
def cifar10_data_dir(tmp_path_factory) -> pathlib.Path:
    """A folder holding `cifar10_synthetic.npz` (label "cifar10-synthetic"): CIFAR-10's layout
    with 256 training and 64 test images, each class a colour of its own plus noise, so a
    model can learn it in an epoch or two."""
    rng = np.random.default_rng(0)
    colours = rng.uniform(40, 215, size=(10, 1, 1, 3))

    def split(n):
        y = np.arange(n, dtype=np.uint8) % 10
        x = colours[y] + rng.normal(0, 30, size=(n, 32, 32, 3))
        return np.clip(np.rint(x), 0, 255).astype(np.uint8), y

    (x_train, y_train), (x_test, y_test) = split(256), split(64)
    folder = tmp_path_factory.mktemp("cifar10_synthetic")
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    np.savez(folder / CIFAR10_SYNTHETIC, **arrays)
    return folder


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


@contextlib.contextmanager
def _held_by_another_process(folder, lock=None):
    from keras_takd.core.locking import RUN_LOCK

    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from keras_takd.core.locking import hold_lock\n"
            f"with hold_lock({str(pathlib.Path(folder) / (lock or RUN_LOCK))!r}):\n"
            "    print('locked', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield holder.pid
    finally:
        holder.communicate("")


@pytest.fixture(scope="session")
def held_by_another_process():
    """`with held_by_another_process(folder, lock="run.lock") as pid:` a child process holds
    `folder/lock` exclusively for the block; `pid` is its process id."""
    return _held_by_another_process


@contextlib.contextmanager
def _no_hang(seconds: float = 5):
    def alarm(*_):
        raise TimeoutError(f"blocked for more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="session")
def no_hang():
    """`with no_hang():` a block that blocks for over 5 s (a FIFO opened for reading) fails
    with TimeoutError instead of hanging the suite."""
    return _no_hang


def _clipped(fig, tolerance: float = 1.0) -> list[str]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    texts = [("suptitle", fig.get_suptitle() and fig._suptitle), ("footnote", fig._supxlabel)]
    for i, ax in enumerate(fig.axes):
        texts += [(f"axes {i} title", ax.title), (f"axes {i} legend", ax.get_legend())]
        texts += [(f"axes {i} x label", ax.xaxis.label), (f"axes {i} y label", ax.yaxis.label)]
    extents = [(name, a.get_window_extent(renderer)) for name, a in texts if a]
    extents += [(f"axes {i}", ax.get_tightbbox(renderer)) for i, ax in enumerate(fig.axes)]
    box = fig.bbox
    return [
        f"{name} {extent.bounds}"
        for name, extent in extents
        if extent.width > 0
        and (
            extent.x0 < box.x0 - tolerance
            or extent.y0 < box.y0 - tolerance
            or extent.x1 > box.x1 + tolerance
            or extent.y1 > box.y1 + tolerance
        )
    ]


@pytest.fixture(scope="session")
def clipped():
    """`clipped(fig, tolerance=1.0)`: the suptitle, footnote, axes titles, axis labels, legends
    and axes (with their tick labels) of a matplotlib figure that reach past its edges once
    drawn, as "<name> <bounds>" strings (draws the figure)."""
    return _clipped
