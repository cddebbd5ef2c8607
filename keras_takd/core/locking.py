"""One process per run folder: exclusive `fcntl.flock` locks on lock files in the folder.

A training process (a chain, the smoothed-KD pipeline) holds `run.lock` exclusively for its
whole life, so a second training of the same folder, or an evaluation of it, is refused at
once instead of repeating (or racing) its work. An evaluation holds `run.lock` shared, so the
shards of one evaluation run side by side, and its own shard's lock file exclusively.

Exclusive holders write their PID into the lock file, so a refused process can name them.
The lock files stay in the folder (deleting one would let two processes lock two different
files of the same name); the kernel drops a lock when its holder exits, even after `kill -9`.

A lock file is opened with O_NOFOLLOW and never truncated: the PID is written over a
fixed-width field, and a lock path that is a symbolic link, not a regular file, or a file with
another hard link is refused with one line naming it, so a planted link cannot make a lock
overwrite a file outside the run folder.

Shared filesystems: a flock is enforced by the kernel of the host that takes it. A Linux NFS
client (NFSv4, or NFSv3 with lockd) forwards it to the server, so hosts exclude each other;
where locks stay local to the client (NFS mounted with `local_lock=flock` or `local_lock=all`,
sshfs, most FUSE filesystems) a process on a second host sees no lock, so two hosts can train
one run folder, or train and evaluate it, at once and race on its files. What stays protected
there is every process on one host, and the atomic writes (no reader sees half a file). On such
a filesystem let one host own a run folder at a time: train it from one host; spread an
evaluation's shards over hosts only once training has finished, each host its own
`--shard_index` and no shard run twice; or keep run folders on a local disk and copy them when
done.
TensorFlow-free.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pathlib
from collections.abc import Iterator

from keras_takd.core import files

RUN_LOCK = "run.lock"

# The PID field at the start of a lock file: overwritten in place, never truncated.
_PID_FIELD = 20


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
        files.NotRegularFileError: `path` is a symbolic link, not a regular file, or a file
            with other hard links; the message names it.
    """
    path = pathlib.Path(path)
    fd = files.open_regular(path, os.O_RDWR | os.O_CREAT, follow=False)
    try:
        links = os.fstat(fd).st_nlink
        if links != 1:
            raise files.NotRegularFileError(
                f"{path} has {links} hard links, expected 1: it may be another file; delete it"
            )
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FolderInUseError(
                f"{path.parent} is in use by process {_holders(path.parent)} ({path.name} is "
                "locked): wait for it to finish, or use another output_dir"
            ) from None
        if not shared:
            _write_holder(fd, str(os.getpid()))
        try:
            yield path
        finally:
            if not shared:
                _write_holder(fd, "")  # a released lock names no holder
    finally:
        os.close(fd)  # releases the lock


def _write_holder(fd: int, pid: str) -> None:
    """Writes `pid` (or blanks) over the lock file's PID field, in place."""
    os.pwrite(fd, f"{pid:<{_PID_FIELD}}\n".encode(), 0)


def _holders(folder: pathlib.Path) -> str:
    """The PIDs written in the folder's lock files by running processes, e.g. "4242"."""
    pids = set()
    for lock in folder.glob("*.lock"):
        try:
            text = files.read_bytes(lock, follow=False)[: _PID_FIELD + 1].decode(errors="replace")
        except OSError:  # gone, or not a regular file: it names no holder
            continue
        text = text.strip()
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
