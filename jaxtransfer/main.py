"""Runs a target's whole grid (and, when available, its analysis) from a config.

    python -m jaxtransfer.main --config=configs/knee.py --workdir=runs/knee
    python -m jaxtransfer.main --config=configs/demo.py --workdir=runs/demo

Intentionally short: everything it calls can be imported and tested.
"""

import logging
import os

import jax
from absl import app, flags
from ml_collections import config_flags

from jaxtransfer import experiment

_CONFIG = config_flags.DEFINE_config_file("config", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "where runs and results go")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    del argv
    logging.getLogger().setLevel(logging.INFO)
    for chatty in ("absl", "orbax"):  # orbax logs every save step at INFO
        logging.getLogger(chatty).setLevel(logging.WARNING)
    logging.info(
        "process %d/%d, devices: %s",
        jax.process_index(),
        jax.process_count(),
        jax.devices(),
    )
    # Compiled steps survive a restart: resuming a killed run skips recompiling.
    jax.config.update(
        "jax_compilation_cache_dir", os.path.join(_WORKDIR.value, ".jax_cache")
    )
    experiment.run(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
