"""How every command line ends on an error: one readable message, no traceback.

The message is the error's own (they name the file, field or layer and what was
expected: docs/reliability.md#errors). ``--verbose`` lets the traceback through.
"""

import argparse
import contextlib
import logging
import sys
import threading
import warnings
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


class _WithoutTraceback(logging.Filter):
    """Logs a record's message alone, without the traceback it carries."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True


def _quiet(*_) -> None:
    """A hook that prints nothing: the error that ends the command is printed."""


class _OncePerKind:
    """``sys.unraisablehook`` printing one line per kind of ignored error.

    Callbacks of a failing checkpoint write (tensorstore into asyncio) raise the
    same ignored error hundreds of times, each with its traceback.
    """

    def __init__(self):
        self.seen = set()

    def __call__(self, unraisable) -> None:
        error = unraisable.exc_value
        kind = (type(error).__name__, str(error))
        if kind not in self.seen:
            self.seen.add(kind)
            print(f"note: ignored in a callback: {kind[0]}: {kind[1]}", file=sys.stderr)


@contextlib.contextmanager
def reported_errors(verbose: bool = False) -> Iterator[None]:
    """Prints ``message(error)`` to stderr and exits with status 1 if the block raises.

    ``KeyboardInterrupt`` and ``SystemExit`` pass as they are. Without
    ``verbose``, no traceback reaches the terminal from anywhere: a failed
    checkpoint write (a full disk) fails each of orbax's pending write tasks and
    threads too, which log their tracebacks, and tensorstore's callbacks into a
    closed asyncio loop raise ignored errors by the hundred. Log records keep
    their one line, an ignored error is noted once per kind, and the error that
    reaches this block names the path.
    """
    if not verbose:
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)
        for handler in logging.getLogger().handlers:
            handler.addFilter(_WithoutTraceback())
        sys.unraisablehook = _OncePerKind()
    try:
        yield
    except Exception as error:
        if verbose:
            raise
        # Exiting: what the background threads and callbacks raise from here on
        # restates this error.
        sys.excepthook = threading.excepthook = sys.unraisablehook = _quiet
        warnings.simplefilter("ignore")  # "coroutine ... was never awaited"
        print(message(error), file=sys.stderr)
        sys.exit(1)
