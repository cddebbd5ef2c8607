"""Reading and writing a run's files safely: atomic writes, regular files only, confined paths.

Every writer writes a temporary name in the destination folder and renames it into place
(`os.replace` is atomic on POSIX), so a kill never leaves a truncated file that a rerun would
trust; the file gets the mode the umask gives (0666 & ~umask), and an OSError names the path.
Every reader opens without blocking and checks it opened a regular file, so a FIFO, a folder or
a device in place of a file is a one-line `NotRegularFileError` naming it, never a hang.
`inside` confines a path to a folder after symbolic links are followed. TensorFlow-free, so the
command line can check its output folder before the slow TensorFlow import.
"""

from __future__ import annotations

import errno
import json
import os
import pathlib
import stat
import tempfile
import zipfile
from collections.abc import Callable

import pandas as pd

_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISLNK, "a symbolic link"),
)


class NotRegularFileError(OSError):
    """A path the package reads or writes is not a regular file (a folder, a FIFO, a link...)."""


def open_regular(path: str | os.PathLike, flags: int = os.O_RDONLY, follow: bool = True) -> int:
    """Opens `path` without blocking and checks it is a regular file.

    Args:
        path: the file.
        flags: `os.open` flags, e.g. `os.O_RDWR | os.O_CREAT` (new files get mode 0666 & ~umask).
        follow: follow a symbolic link at `path` (else it is refused, as for lock files).

    Returns:
        The open file descriptor (the caller closes it).

    Raises:
        FileNotFoundError: there is no file at `path` (and `flags` do not create one).
        NotRegularFileError: `path` is a folder, a FIFO, a device, a socket, or (when not
            `follow`) a symbolic link; the message names it.
    """
    check_regular(path, follow)  # refuse a device or a FIFO before opening it
    flags |= os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.EISDIR, errno.ENXIO):
            _check_mode(path, os.stat(path, follow_symlinks=follow).st_mode)
        raise
    try:
        _check_mode(path, os.fstat(fd).st_mode)  # it may have changed since the stat
    except NotRegularFileError:
        os.close(fd)
        raise
    return fd


def check_regular(path: str | os.PathLike, follow: bool = True) -> pathlib.Path:
    """Checks that `path`, if it exists, is a regular file (without opening it).

    Args:
        path: the file.
        follow: follow a symbolic link at `path` (else a link is refused).

    Returns:
        `path`, as a `pathlib.Path`.

    Raises:
        NotRegularFileError: `path` is a folder, a FIFO, a device, a socket, or (when not
            `follow`) a symbolic link.
    """
    if os.path.lexists(path):
        try:
            _check_mode(path, os.stat(path, follow_symlinks=follow).st_mode)
        except FileNotFoundError:  # a dangling link, or removed meanwhile
            pass
    return pathlib.Path(path)


def _check_mode(path: str | os.PathLike, mode: int) -> None:
    for test, kind in _KINDS:
        if test(mode):
            raise NotRegularFileError(f"{path} is {kind}, expected a regular file")
    if not stat.S_ISREG(mode):
        raise NotRegularFileError(f"{path} is not a regular file (mode {mode:o})")


def read_bytes(path: str | os.PathLike, follow: bool = True) -> bytes:
    """The content of the regular file at `path` (see `open_regular` for what is refused)."""
    with os.fdopen(open_regular(path, follow=follow), "rb") as file:
        return file.read()


def read_text(path: str | os.PathLike, follow: bool = True) -> str:
    """The UTF-8 text of the regular file at `path` (see `open_regular` for what is refused)."""
    return read_bytes(path, follow).decode("utf-8")


def read_json(path: str | os.PathLike) -> object:
    """The JSON value in the regular file at `path`.

    Raises:
        FileNotFoundError: there is no file at `path`.
        NotRegularFileError: `path` is not a regular file.
        ValueError: the file is not UTF-8 JSON; the message names it.
    """
    text = read_bytes(path)
    try:
        return json.loads(text)
    except ValueError as e:  # UnicodeDecodeError included
        raise ValueError(f"{path} is not JSON: {e}") from None


def inside(root: str | os.PathLike, path: str | os.PathLike) -> pathlib.Path:
    """`path` if it resolves, symbolic links followed, inside the folder `root`.

    Args:
        root: the folder every file of a run lies in.
        path: a path to read or write.

    Returns:
        `path`, as a `pathlib.Path` (unresolved).

    Raises:
        ValueError: `path` resolves outside `root`; the message names both.
    """
    path, root = pathlib.Path(path), pathlib.Path(root).resolve()
    if not path.resolve().is_relative_to(root):
        raise ValueError(
            f"{path} resolves to {path.resolve()}, outside the run folder {root}: every file "
            "of a run must lie inside it"
        )
    return path


def check_links_inside(root: str | os.PathLike) -> pathlib.Path:
    """Checks that no symbolic link under the folder `root` leads out of it.

    A run's commands build paths below the run folder (`<label>/T<t>/stage<k>/model.keras`,
    the unit cache): a link planted on that way, e.g. `mnist -> /elsewhere`, would make them
    read and write outside it. Links that stay inside are kept; links are not followed into.

    Args:
        root: the run folder.

    Returns:
        `root`, as a `pathlib.Path`.

    Raises:
        ValueError: a link under `root` resolves outside it; the message names the first.
    """
    root = pathlib.Path(root)
    for folder, folders, names in os.walk(root):  # does not descend into linked folders
        for name in sorted(folders + names):
            path = pathlib.Path(folder, name)
            if path.is_symlink():
                inside(root, path)
    return root


def _umask() -> int:
    """The process's umask, read without changing it where /proc allows."""
    try:
        for line in pathlib.Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def temporary_sibling(path: pathlib.Path, directory: bool = False) -> pathlib.Path:
    """A new, empty temporary file (or folder) beside `path`, with the mode the umask gives."""
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{path.name}.tmp-"
    if directory:  # mkdtemp makes 0700; a plain mkdir honours the umask
        name = tempfile.mkdtemp(prefix=prefix, dir=path.parent)
        os.chmod(name, 0o777 & ~_umask())
        return pathlib.Path(name)
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=path.suffix, dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; a plain open honours the umask
    finally:
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

    Raises:
        OSError: the folder or the file cannot be written (disk full, no permission...); the
            message names `path`.
    """
    path = pathlib.Path(path)
    try:
        tmp = temporary_sibling(path)
        try:
            write(tmp)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    except OSError as e:
        if str(path) in str(e):
            raise
        raise OSError(e.errno, f"cannot write {path}: {e.strerror or e}") from e
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

    The figure is not closed: a caller saving several formats closes it once at the end. A PDF
    carries no creation date, so the same figure gives the same bytes on every run.
    """
    path = pathlib.Path(path)
    kind = path.suffix[1:]
    metadata = {"CreationDate": None} if kind == "pdf" else None
    return write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format=kind, metadata=metadata))


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
        NotRegularFileError: `path` is a folder, a FIFO or a device.
        ValueError: the file is corrupt (truncated, damaged, not a zip archive, or its
            config.json is not JSON).
    """
    path = pathlib.Path(path)
    try:
        fd = open_regular(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"model file {path} is missing: retrain it") from None
    except NotRegularFileError as e:
        raise NotRegularFileError(f"model file {e}: delete it to retrain it") from None
    with os.fdopen(fd, "rb") as file:
        damaged = _damage(file)
    if damaged is not None:
        raise ValueError(
            f"model file {path} is corrupt ({damaged}): delete it, and its metadata.json, to "
            "retrain it"
        )
    return path


def _damage(file) -> str | None:
    """What is wrong with an open `.keras` archive, or None."""
    try:
        with zipfile.ZipFile(file) as archive:
            damaged = archive.testzip()
            if damaged is not None:
                return f"not a complete .keras archive: {damaged}"
            json.loads(archive.read("config.json"))
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        return f"not a complete .keras archive: {str(e) or type(e).__name__}"
    except KeyError:
        return "not a .keras archive: it holds no config.json"
    except ValueError as e:
        return f"its config.json is not JSON: {e}"
    return None
