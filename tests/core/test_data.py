"""Data loading: the offline npz path, the validation hold-out, prefixes, and every bad input."""

import socket
import time

import numpy as np
import pytest

from keras_takd.core import data as data_lib
from keras_takd.core.data import DataError, load_dataset


def _write_npz(path, n_train=30, n_test=10, shape=(28, 28), dtype="uint8", **overrides):
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (n_train, *shape)).astype(dtype),
        "y_train": rng.integers(0, 10, n_train),
        "x_test": rng.integers(0, 256, (n_test, *shape)).astype(dtype),
        "y_test": rng.integers(0, 10, n_test),
    }
    arrays.update(overrides)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez(path, **arrays)
    return arrays


def test_loads_shared_mnist_with_validation_holdout(shared_data_dir):
    data = load_dataset("mnist", shared_data_dir, validation_size=100, train_size=200, test_size=50)
    with np.load(shared_data_dir / "mnist.npz") as raw:
        pixels = raw["x_train"][:300].astype("float32") / 255
        np.testing.assert_array_equal(data.x_val[..., 0], pixels[:100])
        np.testing.assert_array_equal(data.x_train[..., 0], pixels[100:300])
        np.testing.assert_array_equal(data.y_test, raw["y_test"][:50])
    assert data.x_train.shape == (200, 28, 28, 1) and data.x_train.dtype == np.float32
    assert data.x_train.min() >= 0 and data.x_train.max() <= 1
    assert data.input_shape == (28, 28, 1)
    assert len(data.y_val) == 100 and data.source.endswith("mnist.npz")


def test_loads_cifar10_by_prefix(cifar10_data_dir):
    data = load_dataset("cifar10", cifar10_data_dir, validation_size=10, train_size=20, test_size=5)
    assert data.x_train.shape == (20, 32, 32, 3)
    assert data.source.endswith("cifar10_synthetic.npz") and data.label == "cifar10-synthetic"


def test_float_pixels_in_unit_box_are_accepted(tmp_path):
    _write_npz(tmp_path / "mnist.npz", dtype="float32")
    np.savez(
        tmp_path / "mnist.npz",
        x_train=np.full((30, 28, 28), 0.5, "float32"),
        y_train=np.zeros(30, "int64"),
        x_test=np.zeros((10, 28, 28), "float32"),
        y_test=np.zeros(10, "int64"),
    )
    data = load_dataset("mnist", tmp_path, validation_size=5)
    assert data.x_train.max() == 0.5


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"y_test": None}, r"lacks arrays \['y_test'\]"),
        ({"x_train": np.zeros((30, 32, 32), "uint8")}, r"x_train .* has shape \(30, 32, 32\)"),
        ({"y_train": np.zeros(29, "int64")}, r"y_train .* expected \[30\] labels"),
        ({"y_train": np.zeros(30, "float32")}, "expected integer labels"),
        ({"y_test": np.full(10, 10)}, r"labels outside 0\.\.9"),
        ({"x_test": np.zeros((10, 28, 28), "int32")}, "dtype int32: expected uint8"),
        ({"x_test": np.full((10, 28, 28), np.nan, "float32")}, "NaN or infinite pixels"),
        ({"x_test": np.full((10, 28, 28), 2.0, "float32")}, r"expected \[0, 1\]"),
    ],
)
def test_bad_arrays_are_named(tmp_path, overrides, message):
    _write_npz(tmp_path / "mnist.npz", **overrides)
    with pytest.raises(DataError, match=message):
        load_dataset("mnist", tmp_path, validation_size=5)


def test_corrupt_and_pickled_files_are_refused(tmp_path):
    (tmp_path / "mnist.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataError, match="cannot read .*mnist.npz"):
        load_dataset("mnist", tmp_path)
    np.savez(
        tmp_path / "mnist.npz",
        x_train=np.array([{"a": 1}], dtype=object),
        y_train=np.zeros(1),
        x_test=np.zeros(1),
        y_test=np.zeros(1),
    )
    with pytest.raises(DataError, match="cannot read"):
        load_dataset("mnist", tmp_path)


def test_sizes_are_checked(tmp_path):
    _write_npz(tmp_path / "mnist.npz")
    with pytest.raises(DataError, match="validation_size=30 leaves no training images"):
        load_dataset("mnist", tmp_path, validation_size=30)
    with pytest.raises(DataError, match="train_size=26 is larger than the 25"):
        load_dataset("mnist", tmp_path, validation_size=5, train_size=26)
    with pytest.raises(DataError, match="test_size must be >= 1"):
        load_dataset("mnist", tmp_path, test_size=0)


def test_unknown_dataset_and_missing_folder(tmp_path):
    with pytest.raises(DataError, match="unknown dataset 'svhn'"):
        load_dataset("svhn", tmp_path)
    with pytest.raises(DataError, match="is not a directory"):
        load_dataset("mnist", tmp_path / "nope")


def test_several_candidate_files_are_ambiguous(tmp_path):
    _write_npz(tmp_path / "cifar10_a.npz", shape=(32, 32, 3))
    _write_npz(tmp_path / "cifar10_b.npz", shape=(32, 32, 3))
    with pytest.raises(DataError, match="several cifar10"):
        load_dataset("cifar10", tmp_path)


def test_data_dir_without_the_npz_is_refused_and_nothing_is_written(tmp_path):
    """A --data_dir without <dataset>.npz fails at once, names the files it looked for, and
    never falls back to tensorflow-datasets (which would download into it)."""
    (tmp_path / "notes.txt").write_text("no data here")
    with pytest.raises(DataError) as raised:
        load_dataset("mnist", tmp_path)
    message = str(raised.value)
    assert f"holds no mnist.npz (looked for {tmp_path / 'mnist.npz'} and " in message
    assert str(tmp_path / "mnist*.npz") in message and "\n" not in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_cli_data_dir_without_the_npz_writes_nothing(tmp_path, cli):
    empty = tmp_path / "data"
    empty.mkdir()
    started = time.perf_counter()
    done = cli("keras_takd.main", "--stages=1", f"--data_dir={empty}", cwd=tmp_path, timeout=120)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"keras-takd-train: error: --data_dir {empty} holds no mnist.npz")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["data"]  # no runs/, no downloads/
    assert time.perf_counter() - started < 60


def test_unreachable_download_host_fails_at_once():
    started = time.perf_counter()
    with pytest.raises(
        DataError, match=r"keras-takd-probe\.invalid unreachable: .*pass --data_dir"
    ):
        data_lib.check_download_reachable("mnist", host="keras-takd-probe.invalid")
    assert time.perf_counter() - started < 10


def _internet() -> bool:
    try:
        socket.create_connection((data_lib.DOWNLOAD_HOSTS["mnist"], 443), timeout=3).close()
    except OSError:
        return False
    return True


def test_offline_download_fails_within_seconds_with_one_line_last(tmp_path, cli):
    """The real code path without --data_dir and without network: no minutes of retries."""
    if _internet():
        pytest.skip("this machine reaches the download host: the offline case cannot be measured")
    started = time.perf_counter()
    done = cli(
        "keras_takd.main",
        "--stages=1",
        "--output_dir=out",
        cwd=tmp_path,
        env={"TFDS_DATA_DIR": str(tmp_path / "tfds")},
        timeout=120,
    )
    seconds = time.perf_counter() - started
    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "keras-takd-train: error: could not load 'mnist' with tensorflow-datasets ("
    )
    assert "unreachable" in last and last.endswith("in Keras' layout)")
    assert seconds < 30, f"offline failure took {seconds:.1f} s"
    assert not (tmp_path / "tfds").exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "name, source, label",
    [
        ("mnist", "../shared/data/mnist.npz", "mnist"),
        ("cifar10", "tensorflow-datasets", "cifar10"),
        ("cifar10", "/data/cifar10.npz", "cifar10"),
        ("cifar10", "../shared/data/cifar10_jpeg_subset.npz", "cifar10-jpeg-standin"),
        ("cifar10", "/data/cifar10_small_subset.npz", "cifar10-small-subset"),
    ],
)
def test_dataset_label_marks_stand_ins(name, source, label):
    assert data_lib.dataset_label(name, source) == label


def test_cifar10_stand_in_has_its_own_label_but_keeps_its_name(tmp_path):
    _write_npz(tmp_path / "cifar10_jpeg_subset.npz", shape=(32, 32, 3))
    data = load_dataset("cifar10", tmp_path, validation_size=10, train_size=20, test_size=5)
    assert data.label == "cifar10-jpeg-standin" and data.name == "cifar10"
