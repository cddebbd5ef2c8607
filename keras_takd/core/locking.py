"""One process per run folder: exclusive `fcntl.flock` locks on lock files in the folder.

A training process (a chain, the smoothed-KD pipeline) holds `run.lock` exclusively for its
whole life, so a second training of the same folder, or an evaluation of it, is refused at
once instead of repeating (or racing) its work. An evaluation holds `run.lock` shared, so the
shards of one evaluation run side by side, and its own shard's lock file exclusively.

Exclusive holders write their PID into the lock file, so a refused process can name them.
The lock files stay in the folder (deleting one would let two processes lock two different
files of the same name); the kernel drops a lock when its holder exits, even after `kill -9`.
TensorFlow-free.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pathlib
from collections.abc import Iterator

RUN_LOCK = "run.lock"


class FolderInUseError(OSError):
    """Another process holds a lock this process needs: the run folder is in use."""


@contextlib.contextmanager
def hold_lock(path: str | os.PathLike, shared: bool = False) -> Iterator[pathlib.Path]:
    """Holds a `flock` on `path` (created if missing) for the `with` block.

    Args:
        path: the lock file; its folder must exist.
        shared: take a shared lock (several holders) instead of an exclusive one.

    Yields:
        The lock file's path.

    Raises:
        FolderInUseError: another process holds a conflicting lock; the message names the PIDs
            of the processes holding the folder's lock files.
    """
    path = pathlib.Path(path)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FolderInUseError(
                f"{path.parent} is in use by process {_holders(path.parent)} ({path.name} is "
                "locked): wait for it to finish, or use another output_dir"
            ) from None
        if not shared:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield path
        finally:
            if not shared:
                os.ftruncate(fd, 0)  # a released lock names no holder
    finally:
        os.close(fd)  # releases the lock


def _holders(folder: pathlib.Path) -> str:
    """The PIDs written in the folder's lock files by running processes, e.g. "4242"."""
    pids = set()
    for lock in folder.glob("*.lock"):
        text = lock.read_text(errors="replace").strip()
        if text.isdigit() and _running(int(text)):
            pids.add(int(text))
    return ", ".join(map(str, sorted(pids))) or "(PID unknown)"


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # running, as another user
        return True
    return True


@contextlib.contextmanager
def lock_run_folder(folder: str | os.PathLike) -> Iterator[pathlib.Path]:
    """Holds `<folder>/run.lock` exclusively: the lock of a training process.

    Raises:
        FolderInUseError: another training or an evaluation is using the folder.
    """
    with hold_lock(pathlib.Path(folder) / RUN_LOCK):
        yield pathlib.Path(folder)
