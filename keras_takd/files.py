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

import pandas as pd


def temporary_sibling(path: pathlib.Path, directory: bool = False) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{path.name}.tmp-"
    if directory:
        return pathlib.Path(tempfile.mkdtemp(prefix=prefix, dir=path.parent))
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=path.suffix, dir=path.parent)
    os.close(fd)
    return pathlib.Path(name)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Writes `text` to `path` through a temporary file and a rename."""
    path = pathlib.Path(path)
    tmp = temporary_sibling(path)
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json_atomic(path: str | os.PathLike, data: dict) -> None:
    """Writes `data` as indented JSON, atomically."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def write_csv_atomic(path: str | os.PathLike, frame: pd.DataFrame) -> None:
    """Writes `frame` as CSV without its index, atomically."""
    write_text_atomic(path, frame.to_csv(index=False))


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
