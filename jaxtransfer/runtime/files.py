"""Writing files and directories so that a crash never leaves a half-written one.

Everything is written to a hidden sibling first and renamed into place at the end
(a rename within one filesystem is atomic), so a result that exists is complete.
"""

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a hidden sibling path to write; it becomes ``path`` only on success.

    The sibling keeps ``path``'s suffix, so writers that add one (``np.savez``) or
    pick a format from it (matplotlib) behave as they would on ``path``.
    """
    path = Path(path)
    partial = path.with_name(f".{path.stem}.partial{path.suffix}")
    try:
        with naming(path):
            yield partial
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


@contextlib.contextmanager
def naming(path: str | os.PathLike) -> Iterator[None]:
    """An ``OSError`` without a file name (PIL, numpy: a full disk) gets ``path``."""
    try:
        yield
    except OSError as error:
        if error.filename is None and error.errno is not None:
            raise OSError(error.errno, error.strerror, str(path)) from error
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    """Writes ``text`` to ``path`` atomically."""
    with atomic_file(path) as partial:
        partial.write_text(text)


@contextlib.contextmanager
def atomic_directory(
    path: str | os.PathLike,
    overwrite: bool = False,
    *,
    barrier: Callable[[str], None] | None = None,
    primary: bool = True,
) -> Iterator[Path]:
    """Yields a scratch directory that becomes ``path`` only if the block succeeds.

    Several processes writing one directory together (orbax saving a model from
    every JAX process) pass ``barrier`` (returns once every process has called it
    with the same name) and ``primary`` (true on exactly one of them). They then
    share one scratch directory with a fixed name; only the primary creates,
    renames and removes it, and no process leaves before the rename.
    """
    path = Path(path).absolute()
    if path.exists() and not overwrite:
        raise FileExistsError(f"output directory {path} already exists")
    if barrier is None:
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in path.parent.glob(f".{path.name}.partial-*"):
            shutil.rmtree(stale, ignore_errors=True)  # of an attempt killed before
        scratch = Path(
            tempfile.mkdtemp(prefix=f".{path.name}.partial-", dir=path.parent)
        )
    else:
        scratch = path.with_name(f".{path.name}.partial-shared")
        if primary:
            shutil.rmtree(scratch, ignore_errors=True)  # an interrupted attempt's
            scratch.mkdir(parents=True)
        barrier(f"atomic_directory {path}: scratch ready")
    try:
        yield scratch
        if barrier is not None:
            barrier(f"atomic_directory {path}: written")
        if primary:
            if path.exists():
                shutil.rmtree(path)
            os.replace(scratch, path)
        if barrier is not None:
            barrier(f"atomic_directory {path}: in place")
    finally:
        if primary:
            shutil.rmtree(scratch, ignore_errors=True)


def flatten(tree: dict, prefix: str = "") -> dict:
    """A nested JSON object (e.g. a run's config.json) as {"dotted.key": value}."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
