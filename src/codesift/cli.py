"""What every script shares: logging set up for the main process, and known errors as one line.

A bad input (a missing file, a broken row, an unknown recipe key) is the user's to fix, so a script
prints it as one line naming what and where, and exits 1; `--debug` (or `CODESIFT_DEBUG=1`) shows the
traceback instead. Anything else is a bug in the kit and keeps its traceback.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator

from .errors import CodesiftError

# Imported inside the functions that use them (heavy or optional): datasets, transformers.

# The kit's own errors (every stage's error class derives from CodesiftError), and the file-system
# errors that name the path a user gave; a ValueError or KeyError from anywhere else is a bug.
KNOWN_ERRORS = (CodesiftError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def debug_requested(argv: list[str] | None = None) -> bool:
    """True with `--debug` on the command line (removed from it, so the parser never sees it) or
    CODESIFT_DEBUG set to a true value."""
    argv = sys.argv if argv is None else argv
    flagged = "--debug" in argv
    while "--debug" in argv:
        argv.remove("--debug")
    return flagged or os.environ.get("CODESIFT_DEBUG", "").lower() in {"1", "true", "yes"}


def error_line(err: BaseException) -> str:
    """The one line a user sees for a known error (KeyError's str() would add quotes)."""
    message = str(err)
    if isinstance(err, OSError) and err.filename is not None:
        message = f"{err.strerror}: {err.filename}"
    return f"error: {message} (run with --debug for the traceback)"


@contextlib.contextmanager
def report_errors(argv: list[str] | None = None) -> Iterator[None]:
    """Around a script's body: a known error becomes one line on stderr and exit status 1."""
    debug = debug_requested(argv)
    try:
        yield
    except KNOWN_ERRORS as err:
        if debug:
            raise
        print(error_line(err), file=sys.stderr)
        raise SystemExit(1) from None


def setup_logging(training_args=None) -> None:
    """The kit's INFO lines on the main process; under accelerate/torchrun the other processes log
    what the TrainingArguments say for replicas (`get_process_log_level()`, warnings by default), as
    the HF scripts do. An explicit `--log_level` also sets the libraries' verbosity."""
    level = logging.INFO
    if training_args is not None:
        level = training_args.get_process_log_level()
        if str(training_args.log_level) == "passive":  # the default: the kit's progress on the main process
            level = logging.INFO if training_args.should_log else level
        else:
            import datasets
            import transformers

            datasets.utils.logging.set_verbosity(level)
            transformers.utils.logging.set_verbosity(level)
    logging.basicConfig(level=level, format=LOG_FORMAT, force=True)
