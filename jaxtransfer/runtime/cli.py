"""How every command line ends on an error: one readable message, no traceback.

The message is the error's own (they name the file, field or layer and what was
expected: docs/reliability.md#errors). ``--verbose`` lets the traceback through.
"""

import argparse
import contextlib
import logging
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


def split_listed_strings(config) -> None:
    """Splits ``--config.grid.sources=ImageNet,random`` as it splits ``folds=1,2``.

    ml_collections parses a comma-separated override of a tuple of numbers into
    its numbers, but leaves one of a tuple of strings as a single element,
    ``('ImageNet,random',)``. Such elements are split in place, in every section.
    """
    for name, value in config.items():
        if hasattr(value, "items"):
            split_listed_strings(value)
        elif isinstance(value, tuple) and any(
            isinstance(v, str) and "," in v for v in value
        ):
            config[name] = tuple(
                part.strip() for v in value for part in str(v).split(",")
            )


@contextlib.contextmanager
def reported_errors(verbose: bool = False) -> Iterator[None]:
    """Prints ``message(error)`` to stderr and exits with status 1 if the block raises.

    ``KeyboardInterrupt`` and ``SystemExit`` pass as they are. Without
    ``verbose`` the ``asyncio`` logger is quiet: a failed checkpoint write (a full
    disk) fails each of orbax's pending write tasks too, and asyncio logs every
    one with its traceback; the error that reaches this block names the path.
    """
    if not verbose:
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    try:
        yield
    except Exception as error:
        if verbose:
            raise
        print(message(error), file=sys.stderr)
        sys.exit(1)
