"""One checkpoint layout: a run's progress, train state and best weights.

Every run, alone or one member among many, checkpoints into its own directory
(``<run>/checkpoints/<n>/``, orbax): its progress as JSON (stage, epoch, early
stopping, history), its ``TrainState`` and its best weights. A run can therefore
resume in any slot of any wave on any device count. Saves are orbax's async ones,
started from a background thread (``BackgroundSaves``): the step never waits for
the copy off the device or for the write. Orbax writes into a temporary directory
and renames it, so a kill leaves the previous checkpoint whole.
"""

import os
from concurrent import futures
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp


def _leaves(tree) -> dict[str, Any]:
    return {f"{i:05d}": leaf for i, leaf in enumerate(jax.tree.leaves(tree))}


def _unflatten(like, leaves: dict[str, Any]):
    treedef = jax.tree.structure(like)
    return jax.tree.unflatten(treedef, [leaves[k] for k in sorted(leaves)])


def _abstract(tree):
    return _leaves(jax.tree.map(ocp.utils.to_shape_dtype_struct, tree))


class RunCheckpointer:
    """A run's orbax checkpoints; the newest one is kept.

    ``name`` (the run's, equal on every process) prefixes the keys of orbax's
    cross-process barriers. Without it every run's manager uses the same keys, and
    one run's save finishing in orbax's thread while another's starts meet at one
    barrier key: the coordination service refuses the second ("Barrier ... is
    already ongoing") and that process dies.
    """

    def __init__(self, directory: str | os.PathLike, name: str):
        self.manager = ocp.CheckpointManager(
            Path(directory).absolute(),
            options=ocp.CheckpointManagerOptions(
                max_to_keep=1,
                create=True,
                multiprocessing_options=ocp.options.MultiprocessingOptions(
                    barrier_sync_key_prefix=f"jaxtransfer run {name}"
                ),
            ),
        )

    def latest(self) -> int | None:
        return self.manager.latest_step()

    def progress(self) -> dict | None:
        """The saved progress, or None before the first save."""
        step = self.latest()
        if step is None:
            return None
        restored = self.manager.restore(
            step, args=ocp.args.Composite(progress=ocp.args.JsonRestore())
        )
        return restored["progress"]

    def save(self, progress: dict, state, best) -> None:
        """Starts saving in the background (waits for a previous save first)."""
        step = (self.latest() or 0) + 1
        self.manager.save(
            step,
            args=ocp.args.Composite(
                progress=ocp.args.JsonSave(progress),
                state=ocp.args.StandardSave(_leaves(state)),
                best=ocp.args.StandardSave(_leaves(best)),
            ),
        )

    def restore(self, state_like, best_like):
        """The newest state and best weights, shaped and placed like the arguments."""
        self.manager.wait_until_finished()
        restored = self.manager.restore(
            self.latest(),
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(_abstract(state_like)),
                best=ocp.args.StandardRestore(_abstract(best_like)),
            ),
        )
        return (
            _unflatten(state_like, restored["state"]),
            _unflatten(best_like, restored["best"]),
        )

    def close(self) -> None:
        self.manager.close()


class BackgroundSaves:
    """Runs checkpoint work on one thread, in order of submission.

    Orbax's async save still spends time in the caller (copying the arrays off the
    device, starting the writes): here that happens while the next epoch trains. A
    run's checkpointer is only used through this thread once it has saved, so
    orbax sees one caller per manager. A failed save raises at the next submit or
    wait.

    With ``threaded=False`` the work runs in the caller. Several processes need
    that: orbax agrees between them with collectives of its own, which must come
    in the same order as the step's on every process.
    """

    def __init__(self, threaded: bool = True):
        self.pool = (
            futures.ThreadPoolExecutor(1, thread_name_prefix="checkpoint")
            if threaded
            else None
        )
        self.pending: list[futures.Future] = []

    def submit(self, fn, *args) -> None:
        if self.pool is None:
            fn(*args)
            return
        self._raise_failed()
        self.pending.append(self.pool.submit(fn, *args))

    def wait(self) -> None:
        """Until everything submitted so far is done."""
        pending, self.pending = self.pending, []
        for future in pending:
            future.result()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            if self.pool is not None:
                self.pool.shutdown()

    def _raise_failed(self) -> None:
        for future in self.pending:
            if future.done() and future.exception() is not None:
                self.wait()  # raises it
        self.pending = [f for f in self.pending if not f.done()]
