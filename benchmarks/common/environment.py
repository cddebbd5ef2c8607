"""Where a benchmark ran: the machine, the library versions and the commit of a repository."""

from __future__ import annotations

import contextlib
import os
import pathlib
import platform
import subprocess
from typing import Any

REPO = pathlib.Path(__file__).resolve().parents[2]
RESULTS_DIR = REPO / "benchmarks" / "results"


def machine_info() -> dict[str, Any]:
    """CPU model, core count, memory and OS of this machine."""
    import tensorflow as tf

    cpu = "unknown"
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    mem_gb = float("nan")
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/meminfo") as f:
            mem_gb = int(f.readline().split()[1]) / 2**20
    return {
        "cpu": cpu,
        "cores_visible": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "memory_gb": round(mem_gb, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
    }


def versions(packages: list[str]) -> dict[str, str]:
    """Installed versions of `packages` ("not installed" where missing)."""
    from importlib import metadata

    out = {}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def git_commit(path: str | os.PathLike, short: bool = True) -> str:
    """The commit of the repository at `path`, and whether its keras_takd/ has changes.

    A snapshot of this repository (`git archive HEAD | tar -x`) has no .git: there the commit
    comes from the environment variable KERAS_TAKD_COMMIT.

    Args:
        path: a folder inside a git checkout.
        short: the abbreviated hash (else the full 40 digits).

    Returns:
        The hash, with " (keras_takd/ has uncommitted changes)" when it has; "unknown" when
        `path` is not in a git checkout.
    """
    if pathlib.Path(path).resolve() == REPO and os.environ.get("KERAS_TAKD_COMMIT"):
        return os.environ["KERAS_TAKD_COMMIT"]
    rev = ["rev-parse", "--short", "HEAD"] if short else ["rev-parse", "HEAD"]
    try:
        commit = _git(path, rev)
        dirty = _git(path, ["status", "--porcelain", "--", "keras_takd"])
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + (" (keras_takd/ has uncommitted changes)" if dirty else "")


def _git(path, arguments: list[str]) -> str:
    command = ["git", "-C", str(path), *arguments]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()


def carlini_wagner_module(part: str):
    """keras_takd's C&W module `part` (l2, l0, linf or search), for the counters that wrap it.

    The benchmarks count iterations by wrapping private helpers of these modules, so they
    need the modules of `keras_takd.attacks.carlini_wagner` themselves, not the public API.
    """
    import importlib

    return importlib.import_module(f"keras_takd.attacks.carlini_wagner.{part}")


def carlini_wagner_attack(norm: str):
    """keras_takd's public C&W attack of `norm` (l2, l0 or linf)."""
    from keras_takd import attacks

    return {
        "l2": attacks.carlini_wagner_l2,
        "l0": attacks.carlini_wagner_l0,
        "linf": attacks.carlini_wagner_linf,
    }[norm]


def require_package(module: str, install: str, skip: str) -> None:
    """Checks that a third-party reference library imports.

    Args:
        module: its import name, e.g. "art".
        install: the command that installs it.
        skip: the flag that leaves it out, e.g. "--skip=art".

    Raises:
        ValueError: it does not import; the message says how to install or skip it.
    """
    import importlib

    try:
        importlib.import_module(module)
    except ImportError as error:
        raise ValueError(f"{module} is not installed ({error}): {install}, or {skip}") from None
