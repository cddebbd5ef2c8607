"""Command-line plumbing shared by every entry point (`python -m keras_takd.<command>`).

Bad input must end with one line on stderr and a non-zero exit, never a traceback. This module
defines no flags (absl flag names are global), so any entry point can import it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from absl import app, flags

PROG = "keras-takd"


def parse_flags_or_exit(argv: list[str]) -> list[str]:
    """Parses flags; a bad flag or flagfile ends the program with one line and exit code 2."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        sys.stderr.write(f"{PROG}: error: {e}\n")
        sys.exit(2)


def run_main(main_fn: Callable[[list[str]], None]) -> None:
    """Runs `main_fn` under absl; user errors end with one line on stderr and exit code 1.

    User errors are the `ValueError`s (including the package's `DataError` and
    `ConfigMismatchError`) and `OSError`s that library code raises for bad input.
    """

    def guarded(argv: list[str]) -> None:
        try:
            main_fn(argv)
        except (ValueError, OSError) as e:
            message = str(e).splitlines()[0] if str(e) else type(e).__name__
            sys.stderr.write(f"{PROG}: error: {message}\n")
            sys.exit(1)

    app.run(guarded, flags_parser=parse_flags_or_exit)
