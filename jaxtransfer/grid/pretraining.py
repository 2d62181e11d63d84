"""Pretrained sources for demos and tests, made the way real ones reach a user.

No ImageNet or RadImageNet weights can be downloaded here, so the demo makes its
two sources itself: a short pre-training of its network on a synthetic
source domain (another target's synthetic raw download, prepared by the real
builder), written out as a Keras weights-only ``..._notop.h5`` exactly as the real
downloads are, and read back by the code behind ``converters.keras_h5`` into the
checkpoint directory that ``config.init`` names. Everything after the HDF5 file is
the path real weights take.
"""

import dataclasses
import logging
import shutil
from pathlib import Path

import jax
from flax import nnx

from jaxtransfer import models
from jaxtransfer.data import builders, loader, prepare, synthetic
from jaxtransfer.models import layers, pretrained
from jaxtransfer.models.formats import keras_h5
from jaxtransfer.training import engine, mesh, steps

BATCH_SIZE = 16


@dataclasses.dataclass(frozen=True)
class SyntheticSource:
    """How to make one stand-in source.

    Attributes:
        domain: the synthetic target whose download it is trained on.
        size: image size of the pre-training (and of the demo).
        epochs: pre-training epochs on fold 1's training split (all weights, Adam
            1e-3, no early stopping).
        seed: seeds the download, the initialisation and the data order.
        model: the network (a ``models.MODELS`` name), the grid's own.
    """

    domain: str
    size: int
    epochs: int = 3
    seed: int = 0
    model: str = "tiny"


def pretrain(source: SyntheticSource, workdir: Path) -> layers.Backbone:
    """``source.model`` trained on ``source.domain``'s synthetic download."""
    raw = workdir / "raw"
    synthetic.write_target(source.domain, raw, image_size=source.size, seed=source.seed)
    name = source.domain.replace("-", "_")
    prepare.prepare(name, raw, workdir / "prepared", source.size, show_progress=False)
    directory = builders.prepared_dir(workdir / "prepared", name, source.size)
    split = loader.load_split(directory, "fold1_train")
    num_classes = len(split.class_names)
    model = models.get(source.model)(
        num_classes=num_classes, rngs=nnx.Rngs(source.seed)
    )
    train_split = engine.Split(split.images, split.labels)
    # All weights at Adam 1e-3, no early stopping (patience past the last epoch),
    # no checkpoints: seconds. Validation on the training split only fills the log.
    stage = engine.Stage(
        "pretrain", 1e-3, source.epochs, "loss", source.epochs + 1,
        head_only=False, bn_train=True, keep_best=False,
    )  # fmt: skip
    run = engine.Run(
        source.domain, model, {"train": train_split, "val": train_split},
        jax.random.key(source.seed),
    )  # fmt: skip
    engine.train(
        [run],
        [stage],
        num_classes=num_classes,
        step_config=steps.StepConfig(augment=None),
        settings=engine.Settings(BATCH_SIZE, BATCH_SIZE, progress=False),
        # One device of this process: process 0 pre-trains alone, and the
        # stand-in source is the same whatever the device count.
        mesh=mesh.make_mesh(1, devices=jax.local_devices()[:1]),
    )
    return model


def make(source: SyntheticSource, checkpoint_dir: str | Path) -> Path:
    """Pre-trains, writes ``<checkpoint_dir>_notop.h5`` and converts it back.

    Returns the checkpoint directory (``config.init``'s path for the source).
    """
    checkpoint_dir = Path(checkpoint_dir)
    h5_path = checkpoint_dir.with_name(f"{checkpoint_dir.name}_notop.h5")
    logging.info("pre-training a stand-in source on synthetic %s", source.domain)
    checkpoint_dir.parent.mkdir(parents=True, exist_ok=True)
    # A fixed scratch name: an attempt killed before its cleanup is removed here.
    scratch = checkpoint_dir.with_name(f".{checkpoint_dir.name}.partial-pretraining")
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        model = pretrain(source, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    keras_h5.export(model, h5_path, include_head=False)  # as the downloads are
    converted, metadata = keras_h5.convert(h5_path)
    # Called by one process of a multi-process run (inputs.ensure_inputs).
    pretrained.save(
        converted, metadata, checkpoint_dir, overwrite=True, every_process=False
    )
    return checkpoint_dir
