"""Atomic file writing: a kill never leaves a truncated file that a rerun would trust.

Every writer writes a temporary name in the destination folder and renames it into place
(`os.replace` is atomic on POSIX). TensorFlow-free, so the command line can check its output
folder before the slow TensorFlow import.
"""

from __future__ import annotations

import json
import os
import pathlib
import tempfile
import zipfile
from collections.abc import Callable

import pandas as pd


def temporary_sibling(path: pathlib.Path, directory: bool = False) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{path.name}.tmp-"
    if directory:
        return pathlib.Path(tempfile.mkdtemp(prefix=prefix, dir=path.parent))
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=path.suffix, dir=path.parent)
    os.close(fd)
    return pathlib.Path(name)


def write_atomic(path: str | os.PathLike, write: Callable[[pathlib.Path], None]) -> pathlib.Path:
    """The one atomic writer: `write(tmp)` fills a temporary sibling, then a rename.

    Every file the package writes goes through here (text, JSON, CSV, npz, `.keras` models,
    figures), so a kill leaves either the old file or the complete new one, never a part.

    Args:
        path: the destination file; its folder is created if missing.
        write: writes the whole file at the path it is given (which has `path`'s suffix).

    Returns:
        `path`.
    """
    path = pathlib.Path(path)
    tmp = temporary_sibling(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Writes `text` to `path` through a temporary file and a rename."""
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json_atomic(path: str | os.PathLike, data: dict) -> None:
    """Writes `data` as indented JSON, atomically."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def write_csv_atomic(path: str | os.PathLike, frame: pd.DataFrame) -> None:
    """Writes `frame` as CSV without its index, atomically."""
    write_text_atomic(path, frame.to_csv(index=False))


def save_npz_atomic(path: str | os.PathLike, **arrays) -> None:
    """Writes numpy arrays as an uncompressed `.npz`, atomically."""
    import numpy as np

    write_atomic(path, lambda tmp: np.savez(tmp, **arrays))


def save_figure_atomic(fig, path: str | os.PathLike, dpi: int = 150) -> pathlib.Path:
    """Saves a matplotlib figure (format from the suffix: png, pdf, ...), atomically.

    The figure is not closed: a caller saving several formats closes it once at the end.
    """
    path = pathlib.Path(path)
    return write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format=path.suffix[1:]))


def check_writable(directory: str | os.PathLike) -> pathlib.Path:
    """Creates `directory` if needed and checks a file can be written in it.

    Raises:
        OSError: with a one-line message naming the directory and the reason.
    """
    directory = pathlib.Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        temporary_sibling(directory / "write-probe").unlink()
    except OSError as e:
        raise OSError(f"cannot write to output_dir {directory}: {e.strerror or e}") from None
    return directory


def check_keras_file(path: str | os.PathLike) -> pathlib.Path:
    """Checks that `path` is a complete `.keras` file (a zip archive whose CRCs all match).

    Keras reports a truncated or damaged `.keras` file as "File not found"; this names it.

    Raises:
        FileNotFoundError: there is no file at `path`.
        ValueError: the file is corrupt (truncated, damaged, or not a zip archive).
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} is missing: retrain it")
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        damaged = str(e) or type(e).__name__
    if damaged is not None:
        raise ValueError(
            f"model file {path} is corrupt (not a complete .keras archive: {damaged}): delete "
            "it, and its metadata.json, to retrain it"
        )
    return path
