"""Data loading: the offline npz path, the validation hold-out, prefixes, and every bad input."""

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


def test_loads_cifar10_stand_in_by_prefix(shared_data_dir):
    data = load_dataset("cifar10", shared_data_dir, validation_size=10, train_size=20, test_size=5)
    assert data.x_train.shape == (20, 32, 32, 3)
    assert data.source.endswith("cifar10_jpeg_subset.npz")


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


def test_tfds_failure_explains_data_dir(tmp_path, monkeypatch):
    """No npz in data_dir: tensorflow-datasets is tried, and its failure says what to do."""
    calls = []

    def failing_tfds(name, data_dir):
        calls.append((name, data_dir))
        raise DataError(data_lib._tfds_help(name, "no network"))

    monkeypatch.setattr(data_lib, "_load_tfds", failing_tfds)
    with pytest.raises(DataError, match="pass --data_dir=DIR where DIR holds mnist.npz"):
        load_dataset("mnist", tmp_path)
    assert calls == [("mnist", tmp_path)]
