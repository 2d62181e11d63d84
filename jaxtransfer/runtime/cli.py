"""How every command line ends on an error: one readable message, no traceback.

The message is the error's own (they name the file, field or layer and what was
expected: docs/reliability.md#errors). ``--verbose`` lets the traceback through.
"""

import argparse
import contextlib
import sys
from collections.abc import Iterator

VERBOSE_HELP = "on an error, show the traceback too"

# Errors that describe the input, not a fault of jaxtransfer's: their message alone.
_INPUT_ERRORS = (
    ValueError,
    LookupError,
    OSError,
    ImportError,
    FloatingPointError,
    RuntimeError,
)


def add_verbose(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)


def message(error: BaseException) -> str:
    """The line a user reads: ``error: ...``."""
    if isinstance(error, OSError) and error.filename and error.strerror:
        text = f"{error.strerror}: {error.filename}"  # e.g. disk full, and where
    else:
        text = str(error).strip() or type(error).__name__
    if not isinstance(error, _INPUT_ERRORS):
        text = f"{type(error).__name__}: {text} (--verbose shows where)"
    return f"error: {text}"


@contextlib.contextmanager
def reported_errors(verbose: bool = False) -> Iterator[None]:
    """Prints ``message(error)`` to stderr and exits with status 1 if the block raises.

    ``KeyboardInterrupt`` and ``SystemExit`` pass as they are.
    """
    try:
        yield
    except Exception as error:
        if verbose:
            raise
        print(message(error), file=sys.stderr)
        sys.exit(1)
