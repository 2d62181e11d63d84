"""Devices: one 1-axis ``data`` mesh over every device of every process.

State and the on-device splits are replicated; each step's batch is sharded over
the ``data`` axis by a sharding constraint right after it is gathered, so XLA
splits the forward/backward pass across devices and BatchNorm statistics, losses
and gradients are reduced over the global batch. Results therefore do not depend
on the device count beyond float rounding. Every process holds the (small) split
and computes the same batch indices from the same keys, so no host feeds another.
"""

import itertools

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from orbax.checkpoint import multihost

DATA_AXIS = "data"
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


def make_mesh(devices=None) -> Mesh:
    """A 1-axis mesh over ``devices`` (default: all devices of all processes)."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over the ``data`` axis."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def put_replicated(tree, mesh: Mesh):
    """Places host arrays (identical on every process) on every device of ``mesh``."""
    sharding = replicated(mesh)
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)),
        tree,
    )


def block_each_step(mesh: Mesh | None) -> bool:
    """True where the training loop should wait for each step before the next.

    On CPUs: with a step queued behind the running one, a train step took 3-9% longer
    on 2 cores (benchmarks/RESULTS.md, session 13), and with more virtual CPU devices
    than cores jaxlib 0.10's runtime can deadlock when several sharded steps are in
    flight. Accelerators run queued steps back to back.
    """
    devices = jax.devices() if mesh is None else mesh.devices.flat
    return next(iter(devices)).platform == "cpu"


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
