"""Converted checkpoints: an orbax state directory plus ``metadata.json``.

A converted checkpoint directory holds

- ``state/``: the model's parameters and BatchNorm statistics (orbax, pure dict),
- ``metadata.json``: how to rebuild and feed the model (variant, preprocessing,
  head) and where the weights came from (source file and its sha256).

Directories are written atomically: everything goes to a hidden sibling first and
is renamed into place at the end, so a failed or killed conversion leaves nothing
that looks like a checkpoint.
"""

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from flax import nnx

from jaxtransfer import models
from jaxtransfer.models import layers
from jaxtransfer.runtime import files, processes

FORMAT_VERSION = 1
METADATA_FILE = "metadata.json"
STATE_DIR = "state"
PREPROCESSING = {"keras": "caffe", "torchvision": "torch"}


def model_state(model: nnx.Module) -> dict:
    """Parameters and BatchNorm statistics of ``model`` as a nested dict of arrays."""
    return nnx.to_pure_dict(nnx.state(model, (nnx.Param, nnx.BatchStat)))


def make_metadata(model: layers.Backbone, **fields: Any) -> dict:
    """Metadata describing ``model``; ``fields`` add provenance (source, sha256...)."""
    return {
        "format_version": FORMAT_VERSION,
        "architecture": models.architecture_name(model),
        "architecture_args": model.architecture,
        "variant": model.variant,
        "preprocessing": PREPROCESSING[model.variant],
        "num_classes": model.num_classes,
        "head_dropout": model.dropout.rate if model.dropout is not None else 0.0,
        "taps": list(model.study_taps),
        **fields,
    }


def build_model(metadata: dict, rngs: nnx.Rngs | None = None) -> layers.Backbone:
    """A freshly initialised model with the architecture that ``metadata`` names.

    Checkpoints written before other backbones existed hold a ResNet's
    ``stage_sizes``, ``width`` and ``variant`` at the top level.
    """
    name = metadata.get("architecture", "resnet")
    if name not in models.ARCHITECTURES:
        raise ValueError(
            f"checkpoint architecture {name!r}: expected one of "
            f"{sorted(models.ARCHITECTURES)}"
        )
    args = metadata.get("architecture_args")
    if args is None:
        args = {k: metadata[k] for k in ("variant", "stage_sizes", "width")}
    return models.ARCHITECTURES[name](
        **args,
        num_classes=metadata["num_classes"],
        head_dropout=metadata["head_dropout"],
        rngs=rngs or nnx.Rngs(0),
    )


def sha256_of(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def save(
    model: layers.Backbone,
    metadata: dict,
    directory: str | os.PathLike,
    overwrite: bool = False,
    *,
    every_process: bool = True,
) -> Path:
    """Writes ``model``'s state and ``metadata`` to ``directory`` atomically.

    In a multi-process run every process must call it: orbax writes each
    process's part of the (replicated or sharded) arrays into one shared scratch
    directory, and process 0 writes the metadata and renames it into place. With
    ``every_process=False`` the calling process alone saves a model it holds
    locally (orbax's barriers confined to it).
    """
    multiprocess = jax.process_count() > 1
    collective = every_process and multiprocess
    options = ocp.options.MultiprocessingOptions()
    if multiprocess and not collective:
        me = jax.process_index()
        options = ocp.options.MultiprocessingOptions(
            primary_host=me, active_processes={me}
        )
    primary = processes.is_primary() or not collective
    with files.atomic_directory(
        directory,
        overwrite=overwrite,
        barrier=processes.sync_processes if collective else None,
        primary=primary,
    ) as scratch:
        checkpointer = ocp.StandardCheckpointer(multiprocessing_options=options)
        checkpointer.save(scratch / STATE_DIR, model_state(model))
        checkpointer.wait_until_finished()
        checkpointer.close()
        if primary:
            (scratch / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
    return Path(directory)


def is_checkpoint(directory: str | os.PathLike) -> bool:
    """True if ``directory`` holds a checkpoint written by ``save``."""
    return (Path(directory) / METADATA_FILE).is_file()


def read_metadata(directory: str | os.PathLike) -> dict:
    """The metadata of a converted checkpoint, with a clear error if it is not one."""
    directory = Path(directory)
    meta_path = directory / METADATA_FILE
    if not meta_path.is_file() or not (directory / STATE_DIR).is_dir():
        raise FileNotFoundError(
            f"{directory} is not a jaxtransfer checkpoint: expected {METADATA_FILE} "
            f"and {STATE_DIR}/ inside (made by `python -m converters.keras_h5` or "
            "`python -m converters.torch_pth`)"
        )
    metadata = json.loads(meta_path.read_text())
    if metadata.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{meta_path}: format_version {metadata.get('format_version')!r}, "
            f"this jaxtransfer reads {FORMAT_VERSION}"
        )
    return metadata


def load(
    directory: str | os.PathLike, rngs: nnx.Rngs | None = None
) -> tuple[layers.Backbone, dict]:
    """Rebuilds the model of a converted checkpoint and restores its weights."""
    metadata = read_metadata(directory)
    model = build_model(metadata, rngs)
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, model_state(model))
    checkpointer = ocp.StandardCheckpointer()
    restored = checkpointer.restore(Path(directory).absolute() / STATE_DIR, target)
    checkpointer.close()
    state = nnx.state(model, (nnx.Param, nnx.BatchStat))
    nnx.replace_by_pure_dict(state, restored)
    nnx.update(model, state)
    return model, metadata
