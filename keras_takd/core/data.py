"""MNIST and CIFAR-10 for defensive distillation: tensorflow-datasets, or local npz files.

Pixels are scaled to [0, 1] (the box of Carlini & Wagner 2017, arXiv:1608.04644) and the first
`validation_size` training images are held out as a validation set, as in Carlini's
`setup_mnist.py` / `setup_cifar.py` (5,000 images).

Two sources:
- tensorflow-datasets (`tfds.load`), the default. If the dataset is not prepared yet, its
  download host is probed first (a few seconds at most), so an offline machine gets one
  line at once instead of minutes of download retries;
- an offline folder (`data_dir`) holding a npz in Keras' array layout: uint8 `x_train`,
  `y_train`, `x_test`, `y_test` (`mnist.npz`; for CIFAR-10 `cifar10.npz`, or a single
  `cifar10*.npz`). Loaded with `allow_pickle=False`. A folder without it is refused at once;
  nothing is downloaded into it.

A dataset's `label` is what results show: its name, or for a stand-in file a distinct label
(`cifar10_jpeg_subset.npz`, a lossy JPEG subset of CIFAR-10, is `cifar10-jpeg-standin`).
Models are still built, and data reloaded, by `name`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import pathlib
import socket
import urllib.parse
import urllib.request

import numpy as np

INPUT_SHAPES = {"mnist": (28, 28, 1), "cifar10": (32, 32, 3)}
NUM_CLASSES = 10
DATASETS = tuple(sorted(INPUT_SHAPES))
_KEYS = ("x_train", "y_train", "x_test", "y_test")
TFDS_SOURCE = "tensorflow-datasets"
# Files that are not the dataset itself, and the label their results carry.
STAND_IN_LABELS = {"cifar10_jpeg_subset.npz": "cifar10-jpeg-standin"}
# Where tensorflow-datasets 4.9 downloads each dataset from, probed before a download.
DOWNLOAD_HOSTS = {"mnist": "storage.googleapis.com", "cifar10": "www.cs.toronto.edu"}
PROBE_TIMEOUT_SECONDS = 5.0


class DataError(ValueError):
    """The data could not be found or is not what a classifier of this package expects."""


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Float32 images in [0, 1] of shape [N, H, W, C] and int64 labels of shape [N]."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])

    @property
    def label(self) -> str:
        """The name results show (`dataset_label`); `name` unless the data is a stand-in."""
        return dataset_label(self.name, self.source)


def dataset_label(name: str, source: str) -> str:
    """The dataset label of results made from `source`.

    Args:
        name: the dataset ("mnist" or "cifar10").
        source: where the data came from, `Dataset.source` (a npz path or
            "tensorflow-datasets").

    Returns:
        `name` for tensorflow-datasets or `<name>.npz`; `STAND_IN_LABELS` for a known
        stand-in; otherwise the file's stem with "-" for "_" (e.g. "cifar10-subset").
    """
    file = pathlib.PurePath(str(source)).name
    if source == TFDS_SOURCE or file == f"{name}.npz":
        return name
    if file in STAND_IN_LABELS:
        return STAND_IN_LABELS[file]
    return pathlib.PurePath(file).stem.replace("_", "-")


def load_dataset(
    name: str,
    data_dir: str | pathlib.Path | None = None,
    validation_size: int = 5000,
    train_size: int | None = None,
    test_size: int | None = None,
) -> Dataset:
    """Loads a dataset, holds out a validation prefix and cuts train/test to prefixes.

    Args:
        name: "mnist" or "cifar10".
        data_dir: folder holding the dataset's npz file (it must hold one). None:
            tensorflow-datasets, which downloads the dataset the first time.
        validation_size: the first this many training images become the validation set.
        train_size: keep only this many training images (after the validation hold-out).
        test_size: keep only the first this many test images.

    Returns:
        A `Dataset`.

    Raises:
        DataError: unknown dataset, missing or corrupt file, wrong shapes, dtypes or values,
            sizes larger than the data, or (without data_dir) a download that cannot start.
    """
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}: expected one of {', '.join(DATASETS)}")
    for flag, value in (
        ("validation_size", validation_size),
        ("train_size", train_size),
        ("test_size", test_size),
    ):
        if value is not None and value < (0 if flag == "validation_size" else 1):
            raise DataError(
                f"{flag} must be >= {0 if flag == 'validation_size' else 1}, got {value}"
            )
    if data_dir is not None:
        npz = _find_npz(name, data_dir)
        arrays, source = _read_npz(npz), str(npz.resolve())  # absolute: valid from any folder
    else:
        arrays, source = _load_tfds(name), TFDS_SOURCE
    x_train, y_train = _check_split(name, arrays, "train", source)
    x_test, y_test = _check_split(name, arrays, "test", source)
    return _split(
        name, x_train, y_train, x_test, y_test, validation_size, train_size, test_size, source
    )


def _split(
    name, x_train, y_train, x_test, y_test, validation_size, train_size, test_size, source
) -> Dataset:
    if validation_size >= len(x_train):
        raise DataError(
            f"validation_size={validation_size} leaves no training images: "
            f"{source} has {len(x_train)}"
        )
    x_val, y_val = x_train[:validation_size], y_train[:validation_size]
    x_train, y_train = x_train[validation_size:], y_train[validation_size:]
    for flag, value, available in (
        ("train_size", train_size, len(x_train)),
        ("test_size", test_size, len(x_test)),
    ):
        if value is not None and value > available:
            raise DataError(
                f"{flag}={value} is larger than the {available} images available in {source}"
            )
    if train_size is not None:
        x_train, y_train = x_train[:train_size], y_train[:train_size]
    if test_size is not None:
        x_test, y_test = x_test[:test_size], y_test[:test_size]
    return Dataset(name, x_train, y_train, x_val, y_val, x_test, y_test, source)


def _find_npz(name: str, data_dir) -> pathlib.Path:
    folder = pathlib.Path(data_dir)
    if not folder.is_dir():
        raise DataError(
            f"--data_dir {folder} is not a directory: expected a folder holding {name}.npz"
        )
    exact = folder / f"{name}.npz"
    if exact.is_file():
        return exact
    candidates = sorted(folder.glob(f"{name}*.npz"))
    if len(candidates) > 1:
        raise DataError(
            f"{folder} holds several {name}*.npz files "
            f"({', '.join(c.name for c in candidates)}): keep one or name it "
            f"{name}.npz"
        )
    if not candidates:
        raise DataError(
            f"--data_dir {folder} holds no {name}.npz (looked for {exact} and "
            f"{folder / (name + '*.npz')}): point --data_dir at the folder holding it, or omit "
            "--data_dir to download with tensorflow-datasets"
        )
    return candidates[0]


def _read_npz(path: pathlib.Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in _KEYS if k not in f.files]
            if missing:
                raise DataError(f"{path} lacks arrays {missing}: expected {', '.join(_KEYS)}")
            return {k: f[k] for k in _KEYS}
    except DataError:
        raise
    except Exception as e:  # zipfile.BadZipFile, ValueError (pickled objects), OSError, ...
        raise DataError(
            f"cannot read {path} as a npz of arrays {', '.join(_KEYS)}: {type(e).__name__}: {e}"
        ) from None


def _tfds_help(name: str, reason: str) -> str:
    return (
        f"could not load {name!r} with tensorflow-datasets ({reason[:300]}); without internet "
        f"access pass --data_dir=DIR where DIR holds {name}.npz (uint8 {', '.join(_KEYS)} in "
        "Keras' layout)"
    )


@contextlib.contextmanager
def _quiet_absl_warnings():
    """Hides tensorflow-datasets' absl warnings (e.g. "Variant folder ... has no
    dataset_info.json") while probing whether a dataset is prepared."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _probe_address(host: str) -> tuple[str, int]:
    """(host, port) that a download from `host` connects to first: the https proxy, if any."""
    proxies = urllib.request.getproxies()
    if urllib.request.proxy_bypass(host) or "https" not in proxies:
        return host, 443
    proxy = urllib.parse.urlsplit(proxies["https"])
    return proxy.hostname or host, proxy.port or 443


def check_download_reachable(
    name: str, host: str | None = None, timeout: float = PROBE_TIMEOUT_SECONDS
) -> None:
    """Raises DataError at once if `name`'s download host (or https proxy) cannot be reached.

    Args:
        name: the dataset.
        host: the host to probe (default: `DOWNLOAD_HOSTS[name]`).
        timeout: seconds to wait for the connection.

    Raises:
        DataError: the host name does not resolve or the connection fails within `timeout`.
    """
    host = host or DOWNLOAD_HOSTS[name]
    address = _probe_address(host)
    try:
        socket.create_connection(address, timeout=timeout).close()
    except OSError as e:
        reason = f"{host} unreachable: {type(e).__name__}: {e}"
        raise DataError(_tfds_help(name, reason)) from None


def _load_tfds(name: str) -> dict[str, np.ndarray]:
    try:
        import tensorflow_datasets as tfds

        with _quiet_absl_warnings():
            prepared = tfds.builder(name).is_prepared()
    except Exception as e:  # a broken install: say so in one line
        raise DataError(_tfds_help(name, f"{type(e).__name__}: {e}")) from None
    if not prepared:
        check_download_reachable(name)
    try:
        splits = tfds.load(name, split=["train", "test"], batch_size=-1, as_supervised=True)
        (x_train, y_train), (x_test, y_test) = tfds.as_numpy(splits)
    except Exception as e:  # the download broke off, a corrupt cache, ...
        reason = " ".join(str(e).split()) or type(e).__name__
        raise DataError(_tfds_help(name, reason)) from None
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def _check_split(name: str, arrays: dict, split: str, source: str):
    """Returns (x float32 [N, H, W, C] in [0, 1], y int64 [N]) for one split, or raises."""
    x, y = np.asarray(arrays[f"x_{split}"]), np.asarray(arrays[f"y_{split}"])
    shape, given = INPUT_SHAPES[name], x.shape
    if x.ndim == 3 and shape[2] == 1:
        x = x[..., None]
    if x.ndim != 4 or tuple(x.shape[1:]) != shape:
        raise DataError(
            f"x_{split} in {source} has shape {given}: expected "
            f"[N, {', '.join(map(str, shape))}] for {name}"
        )
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or len(y) != len(x):
        raise DataError(f"y_{split} in {source} has shape {y.shape}: expected [{len(x)}] labels")
    if not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"y_{split} in {source} has dtype {y.dtype}: expected integer labels")
    if len(y) and (y.min() < 0 or y.max() >= NUM_CLASSES):
        raise DataError(f"y_{split} in {source} has labels outside 0..{NUM_CLASSES - 1}")
    if x.dtype == np.uint8:
        return x.astype(np.float32) / 255.0, y.astype(np.int64)
    if not np.issubdtype(x.dtype, np.floating):
        raise DataError(
            f"x_{split} in {source} has dtype {x.dtype}: expected uint8 pixels "
            f"0..255 (or floats in [0, 1])"
        )
    if not np.isfinite(x).all():
        raise DataError(f"x_{split} in {source} has NaN or infinite pixels")
    if x.min() < 0 or x.max() > 1:
        raise DataError(
            f"x_{split} in {source} has float pixels in [{x.min():g}, {x.max():g}]: expected [0, 1]"
        )
    return x.astype(np.float32), y.astype(np.int64)
