"""Command-line plumbing shared by every entry point (`python -m keras_takd...`).

One convention for every command: flags are parsed by absl; bad input ends with ONE line on
stderr, `<command>: error: <what was wrong and what was expected>`, and a non-zero exit (2 for
a bad flag or flagfile, 1 for a bad value found later), never a traceback. User errors are
the `ValueError`s (including `keras_takd.core.data.DataError` and
`keras_takd.core.results.ConfigMismatchError`) and `OSError`s that library code raises for bad
input. This module defines no flags (absl flag names are global), so any entry point can
import it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from absl import app, flags


def fail(prog: str, message: str, code: int) -> None:
    """Writes `<prog>: error: <first line of message>` to stderr and exits with `code`."""
    line = message.splitlines()[0] if message else "unknown error"
    sys.stderr.write(f"{prog}: error: {line}\n")
    sys.exit(code)


def _flag_error_message(error: flags.Error) -> str:
    message = str(error).removeprefix("ERROR:: ").removeprefix("ERROR: ").strip()
    if "flagfile" in message.lower():
        message += f" (flagfiles are read relative to the working directory, {os.getcwd()})"
    return message


def flags_parser(prog: str) -> Callable[[list[str]], list[str]]:
    """An absl `flags_parser`: a bad flag or flagfile ends the program with one line, exit 2."""

    def parse(argv: list[str]) -> list[str]:
        try:
            return flags.FLAGS(argv)
        except flags.Error as e:
            fail(prog, _flag_error_message(e), 2)

    return parse


def run_main(main_fn: Callable[[list[str]], None], prog: str) -> None:
    """Runs `main_fn` under absl; user errors end with one line on stderr and exit code 1.

    Args:
        main_fn: the command's `main(argv)`; it must refuse positional arguments.
        prog: the command's name in error lines, its console script (e.g. "keras-takd-evaluate").
    """

    def guarded(argv: list[str]) -> None:
        if len(argv) > 1:
            fail(prog, f"unexpected arguments: {' '.join(argv[1:])} (every option is a --flag)", 1)
        try:
            main_fn(argv)
        except (ValueError, OSError) as e:
            fail(prog, str(e) or type(e).__name__, 1)

    app.run(guarded, flags_parser=flags_parser(prog))
