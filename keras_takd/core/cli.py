"""Command-line plumbing shared by every entry point (`python -m keras_takd...`).

One convention for every command: flags are parsed by absl; bad input ends with ONE line on
stderr, `<command>: error: <what was wrong and what was expected>`, and a non-zero exit (2 for
a bad flag or flagfile, 1 for a bad value found later), never a traceback. User errors are
the `ValueError`s (including `keras_takd.core.data.DataError` and
`keras_takd.core.results.ConfigMismatchError`) and `OSError`s that library code raises for bad
input. This module defines no flags (absl flag names are global), so any entry point can
import it.

TensorFlow's start-up chatter is quieted before it loads (`import_tensorflow`): C++ log
lines below FATAL (e.g. the `cuInit` error on machines without a GPU and the `NodeDef
mentions attribute use_unbounded_threadpool` line of tf.data) unless TF_CPP_MIN_LOG_LEVEL is
set, and the oneDNN / CUDA notices its import prints before logging is set up.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable

from absl import app, flags

# Lines `import tensorflow` writes to stderr before absl logging is initialised.
_IMPORT_NOTICES = (
    "All log messages before absl::InitializeLog() is called are written to STDERR",
    "oneDNN custom operations are on",
    "Could not find cuda drivers on your machine",
)


def import_tensorflow() -> None:
    """Imports TensorFlow without its start-up notices; other stderr output is kept.

    Sets TF_CPP_MIN_LOG_LEVEL=3 unless it is set already (0 shows every C++ log line), then
    imports TensorFlow with file descriptor 2 captured, and writes back every captured line
    but the notices of `_IMPORT_NOTICES`. Commands call it after their checks that need no
    TensorFlow, so bad input still fails fast.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode(errors="replace").splitlines(keepends=True)
            kept = [line for line in lines if not any(n in line for n in _IMPORT_NOTICES)]
            sys.stderr.write("".join(kept))
            sys.stderr.flush()


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
