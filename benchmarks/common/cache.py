"""Caches of benchmark results, so that a stopped run resumes and several processes share one.

`cache_folder` names a folder by a hash of what its results depend on; `claim` lets one
process of several compute one file; `cached` computes a JSON result once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pathlib
import traceback
from collections.abc import Callable
from typing import Any


def cache_folder(work_dir: pathlib.Path, attack: str, side: str, **key: Any) -> pathlib.Path:
    """`work_dir/cache/<attack>/<side>-<12 hex digits of the key>/`; the key is written there."""
    text = json.dumps(key, sort_keys=True)
    folder = work_dir / "cache" / attack / f"{side}-{hashlib.sha1(text.encode()).hexdigest()[:12]}"
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "key.json").exists():
        (folder / "key.json").write_text(json.dumps(key, indent=2, sort_keys=True) + "\n")
    return folder


def image_file(folder: pathlib.Path, test_index: int) -> pathlib.Path:
    """The cached result of one test image in `folder`."""
    return folder / f"image{int(test_index):05d}.npz"


@contextlib.contextmanager
def claim(path: pathlib.Path):
    """Yields True when this process should compute `path`: not done, not held elsewhere.

    A lock file next to `path` holds the pid of the process computing it, so several workers
    can share one cache; a lock whose process is gone is taken over.
    """
    lock = path.with_name(path.name + ".lock")
    if path.exists():
        yield False
        return
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        try:
            os.kill(int(lock.read_text()), 0)
            yield False  # its process is alive (an empty lock is being written)
            return
        except ValueError:
            yield False
            return
        except (ProcessLookupError, FileNotFoundError):
            lock.unlink(missing_ok=True)
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    try:
        yield not path.exists()
    finally:
        lock.unlink(missing_ok=True)


def cached(
    path: pathlib.Path, function: Callable[..., Any], *args, compute: bool = True
) -> dict[str, Any] | None:
    """`function(*args)`, or its result cached at `path` by an earlier run (errors too).

    A function that raises is a result too (a reference library that fails): its error and
    traceback are cached in place of its value.

    Args:
        path: the JSON file of the result.
        function: computes the JSON-able result from `args`.
        compute: False when this process computes nothing for it (--cached_only, or a model
            another process computes).

    Returns:
        The result, or None when it is not cached and `compute` is False.
    """
    if path.exists():
        return json.loads(path.read_text())
    if not compute:
        return None
    try:
        value = function(*args)
    except Exception as error:  # noqa: BLE001  (a peer's failure is a result, not a crash)
        value = {"error": f"{type(error).__name__}: {error}", "trace": traceback.format_exc()}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value))
    return value
