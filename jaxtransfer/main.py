"""Runs a target's whole grid (and, when available, its analysis) from a config.

    python -m jaxtransfer.main --config=configs/knee.py --workdir=runs/knee
    python -m jaxtransfer.main --config=configs/demo.py --workdir=runs/demo

Several processes (a TPU pod slice, GPU hosts) run the same command with
--distributed (topology detected by jax.distributed on TPU, SLURM and Open MPI) or
with --coordinator_address=HOST:PORT --num_processes=P --process_id=I; the workdir
must be on a filesystem they share.

``run(config, workdir)`` is the same job for Python callers: the grid
(``jaxtransfer.grid``), then its analysis (``jaxtransfer.analysis.study``).
"""

import contextlib
import logging
import os

import jax
from absl import app, flags
from ml_collections import config_flags

from jaxtransfer import grid
from jaxtransfer.analysis import cca, study
from jaxtransfer.runtime import cli, host, lock, processes, xla_flags

_CONFIG = config_flags.DEFINE_config_file("config", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "where runs and results go")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "join a multi-process run (jax.distributed.initialize)"
)
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "host:port of process 0; implies --distributed"
)
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "processes in the run")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "this process's index")
_VERBOSE = flags.DEFINE_bool("verbose", False, cli.VERBOSE_HELP)
flags.mark_flags_as_required(["config", "workdir"])


def run(config, workdir: str | os.PathLike) -> dict:
    """Runs (or resumes) a target's grid, then analyses it; returns the AUC summary.

    Every choice is checked before any compute. The job holds ``workdir`` while it
    runs (``runtime.lock``; process 0 for all of a multi-process job).
    """
    if config.analysis.enabled:
        cca.resolve_decomposition(
            config.analysis.cca_decomposition, "config.analysis.cca_decomposition"
        )
    held = lock.hold(workdir) if processes.is_primary() else contextlib.nullcontext()
    with held:
        summary = grid.run(config, workdir)
        if config.analysis.enabled:
            if processes.is_primary():
                study.run(workdir)  # with the settings config.json records
            processes.sync_processes("analysis written")
    return summary


def main(argv):
    del argv
    if _CONFIG.value.host.reuse_freed_memory:
        host.reuse_freed_memory()  # before jax starts its backend
    if _CONFIG.value.train.remat:
        xla_flags.add(xla_flags.GPU_REMAT)  # likewise; see xla_flags
    logging.getLogger().setLevel(logging.INFO)
    for chatty in ("absl", "orbax"):  # orbax logs every save step at INFO
        logging.getLogger(chatty).setLevel(logging.WARNING)
    if _DISTRIBUTED.value or _COORDINATOR.value:
        processes.initialize_distributed(
            _COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value
        )
    logging.info(
        "process %d/%d, devices: %s",
        jax.process_index(),
        jax.process_count(),
        jax.devices(),
    )
    # Compiled steps survive a restart: resuming a killed run skips recompiling.
    # A cache the user chose (JAX_COMPILATION_CACHE_DIR) is kept.
    if not jax.config.jax_compilation_cache_dir:
        jax.config.update(
            "jax_compilation_cache_dir", os.path.join(_WORKDIR.value, ".jax_cache")
        )
    config = _CONFIG.value
    cli.split_listed_strings(config)  # --config.grid.sources=ImageNet,random
    with cli.reported_errors(_VERBOSE.value):  # one message, no traceback
        run(config, _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
