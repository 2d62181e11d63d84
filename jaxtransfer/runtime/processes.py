"""Processes: joining a multi-process run, who writes, and barriers.

Every process trains (its devices are part of the engine's mesh,
``training.mesh``); process 0 writes the files every process would otherwise
write. The device mesh itself lives with the engine.
"""

import itertools

import jax
from orbax.checkpoint import multihost

# How long sync_processes waits for the slowest process (its milliseconds fit int32).
BARRIER_TIMEOUT_S = 24 * 3600
_BARRIER_CALLS = itertools.count()


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> None:
    """Joins a multi-process run (a TPU pod slice, several GPU hosts, or CPUs).

    Arguments left None are detected by ``jax.distributed.initialize`` (TPU pods,
    SLURM, Open MPI). CPU collectives go through gloo (the setting only concerns
    the CPU client, so it is harmless on accelerators). Call before anything
    touches devices.
    """
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
    )


def is_primary() -> bool:
    """True on the process that writes shared files (process 0)."""
    return jax.process_index() == 0


def sync_processes(name: str) -> None:
    """Returns once every process has called it with ``name`` (at once if alone).

    A barrier of jax.distributed's coordination service (through Orbax), not a
    device collective: process 0 may spend minutes writing shared inputs or running
    the analysis while the others wait. A collective as the barrier fails on CPUs
    when process 0 gets there more than 30 s before another (gloo's key-value
    deadline for setting up its connections), and failed once in a loaded test run
    with gloo's "Connect timeout". This one waits up to ``BARRIER_TIMEOUT_S``, and
    the processes then reach their first collective together. The service wants a
    fresh key per barrier: every process calls this in the same order, so the call
    count makes the keys unique and equal across processes.
    """
    if jax.process_count() > 1:
        key = f"jaxtransfer sync {next(_BARRIER_CALLS)}: {name}"
        multihost.get_barrier_sync_fn()(key=key, timeout_ms=BARRIER_TIMEOUT_S * 1000)
