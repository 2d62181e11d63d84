"""What a grid needs before any compute: prepared data, converted sources, folds.

``ensure_inputs`` checks every input (or, for synthetic demos, makes it) and
raises one ``MissingInputs`` that says where each missing one comes from.
"""

from pathlib import Path

import numpy as np
from ml_collections import ConfigDict

from jaxtransfer.data import builders, loader, prepare, splits, synthetic
from jaxtransfer.grid import pretraining
from jaxtransfer.grid.plan import SOURCES
from jaxtransfer.models import pretrained
from jaxtransfer.runtime import processes

WEIGHT_DOWNLOADS = {
    "ImageNet": "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5 (Keras "
    "applications ImageNet weights)",
    "RadImageNet": "RadImageNet-ResNet50_notop.h5 (from the RadImageNet authors)",
}
PAPER_CODE = "github.com/DovileDo/revisiting-transfer"


def dataset_dir(config: ConfigDict, size: int | None = None) -> Path:
    """The prepared dataset at ``size`` (default: the training size)."""
    return builders.prepared_dir(
        config.data.data_dir,
        config.data.name,
        size or config.data.size,
        paper_folds=bool(config.data.paper_folds),
    )


def cca_image_size(config: ConfigDict) -> int:
    """The CCA's image size: config.analysis.image_size, else the training's.

    docs/protocol.md#image-sizes
    """
    return config.analysis.get("image_size") or config.data.size


def is_prepared(config: ConfigDict, size: int) -> bool:
    """Whether the target's dataset at ``size`` has been prepared."""
    return (dataset_dir(config, size) / "dataset_info.json").is_file()


def unprepared_message(config: ConfigDict, size: int, use: str) -> str:
    """Where the dataset at ``size`` (needed for ``use``) is missing, and the fix."""
    directory = dataset_dir(config, size)
    older = builders.other_versions(directory)
    found = (
        f"; {directory.parent} holds only version {', '.join(older)}, prepared by "
        f"another release of jaxtransfer (this one reads {directory.name})"
        if older
        else ""
    )
    return (
        f"no prepared dataset at {directory} ({use}){found}. Prepare it from the "
        f"raw download with: {prepare_command(config, size)}"
    )


def prepare_command(config: ConfigDict, size: int) -> str:
    """The command that prepares the target's dataset at ``size``."""
    folds = (
        f" --paper_folds {config.data.paper_folds}" if config.data.paper_folds else ""
    )
    if config.data.get("csv"):  # a BYO target labelled by a CSV
        folds += f" --csv {config.data.csv}"
    return (
        f"python -m jaxtransfer.data.prepare --dataset {config.data.name} "
        f"--manual_dir {config.data.manual_dir} --data_dir {config.data.data_dir} "
        f"--size {size}{folds}"
    )


def synthetic_source(config: ConfigDict, source: str) -> pretraining.SyntheticSource:
    """How a demo's stand-in for ``source`` is pre-trained (its own seed each)."""
    return pretraining.SyntheticSource(
        config.init.synthetic_domains[source],
        config.data.size,
        config.init.synthetic_epochs,
        config.seed + SOURCES.index(source),
        config.model.name,
    )


class MissingInputs(FileNotFoundError):
    """Inputs a run needs are missing; the message says where each comes from."""


def ensure_inputs(config: ConfigDict) -> Path:
    """Checks (or, for synthetic demos, creates) every input before any compute.

    Returns the prepared dataset directory.
    """
    problems = []
    for source in config.grid.sources:
        if source == "random":
            continue
        path = Path(config.init[source])
        domain = config.init.synthetic_domains.get(source)
        if domain and processes.is_primary() and not pretrained.is_checkpoint(path):
            pretraining.make(synthetic_source(config, source), path)
        if not domain and not pretrained.is_checkpoint(path):
            problems.append(
                f"config.init.{source} = {path} is not a converted checkpoint. "
                f"Download {WEIGHT_DOWNLOADS[source]} and run: python -m "
                f"converters.keras_h5 --input <file>.h5 --output {path}"
            )
    sizes = [config.data.size]
    if config.analysis.enabled and cca_image_size(config) != config.data.size:
        # the CCA's stimuli (docs/protocol.md#image-sizes)
        sizes.append(cca_image_size(config))
    if config.data.synthetic and processes.is_primary():  # the others wait below
        raw = Path(config.data.manual_dir)
        if not raw.exists():
            synthetic.write_target(
                config.target,
                raw,
                image_size=config.data.size,
                **config.data.synthetic_options.to_dict(),
            )
        for size in sizes:
            prepare.prepare(
                config.data.name, raw, config.data.data_dir, size, show_progress=False
            )
    processes.sync_processes("synthetic inputs and sources written")
    unprepared = [
        size
        for size in sizes
        if not config.data.synthetic and not is_prepared(config, size)
    ]
    if (
        unprepared
        and config.data.paper_folds
        and not splits.has_paper_fold_csvs(config.data.paper_folds)
    ):
        problems.append(
            f"config.data.paper_folds = {config.data.paper_folds} holds no fold "
            "CSVs ({train,val,test}_fold{1..5}.csv). They come with the paper's "
            f"code, {PAPER_CODE} (folder data/{config.target}/); put them there, "
            "or set --config.data.paper_folds='' to make folds with the paper's "
            "procedure (docs/protocol.md#folds: grouped targets then get other folds)"
        )
    for size in unprepared:
        use = "training" if size == config.data.size else "CCA stimuli"
        problems.append(unprepared_message(config, size, use))
    if problems:
        raise MissingInputs("cannot start:\n- " + "\n- ".join(problems))
    return dataset_dir(config)


def load_fold(directory: Path, fold: int, protocol: str) -> tuple[dict, tuple]:
    """The fold's splits in host memory (v1: val = test = held out), class names."""
    parts = {
        name: loader.load_split(directory, f"fold{fold}_{name}")
        for name in ("train", "val", "test")
    }
    class_names = parts["train"].class_names
    if protocol == "v1":
        held_out = {
            field: np.concatenate([getattr(parts[s], field) for s in ("val", "test")])
            for field in ("images", "labels", "paths")
        }
        parts["val"] = parts["test"] = held_out
    else:
        parts = {
            name: {f: getattr(s, f) for f in ("images", "labels", "paths")}
            for name, s in parts.items()
        }
    return parts, class_names
