"""Shared by the builder/prepare/loader tests: synthetic raw downloads, prepared."""

from pathlib import Path

import tensorflow_datasets as tfds

from jaxtransfer.data import builders, sources, synthetic

SIZE = 32
# tfds name -> (sources target, writer, reader kwargs, builder sample_size)
TARGETS = {
    "knee": ("knee", synthetic.write_knee, {}, -1),
    "chest": ("chest", synthetic.write_chest, {}, -1),
    "isic": ("isic", synthetic.write_isic, {}, -1),
    "breast": ("breast", synthetic.write_breast, {}, -1),
    "thyroid": ("thyroid", synthetic.write_thyroid, {}, -1),
    "mammograms": ("mammograms", synthetic.write_mammograms, {}, -1),
    # pcam: every patch (the synthetic downloads hold fewer than 10000); the small
    # one from the converter's PNG folder, the middle one from the HDF5 files.
    "pcam_small": ("pcam-small", synthetic.write_pcam_png, {"sample_size": None}, 0),
    "pcam_middle": ("pcam-middle", synthetic.write_pcam_h5, {"sample_size": None}, 0),
}


def write_raw(name: str, root: Path) -> list[synthetic.SyntheticImage]:
    """The synthetic raw download of tfds dataset `name` under `root`."""
    return TARGETS[name][1](root)


def read_examples(name: str, root: Path) -> list[sources.Example]:
    """The reader's examples, as the builder reads them."""
    target, _, kwargs, _ = TARGETS[name]
    return sources.read_target(target, root, **kwargs)


def prepare(name: str, raw: Path, data_dir: Path, size: int = SIZE, **kwargs):
    """Prepare `name` from `raw` into `data_dir`; returns the builder."""
    builder = builders.make_builder(
        name, data_dir, size, sample_size=TARGETS[name][3], workers=2, **kwargs
    )
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(raw))
    )
    return builder


def records(source) -> list[dict]:
    """Every record of a data source, texts decoded."""
    out = []
    for record in source.__getitems__(list(range(len(source)))):
        out.append(
            {k: v.decode() if isinstance(v, bytes) else v for k, v in record.items()}
        )
    return out
