"""TFDS builders of the targets over their raw downloads, written without TensorFlow.

One `GeneratorBasedBuilder` per target (knee, chest, isic, breast, thyroid,
mammograms, pcam_small, pcam_middle) and one for a target of your own (byo). Each
reads the raw download in `manual_dir` with `sources.py` (or `byo.py`), decodes
every image as the paper's Keras loader (`decode.py`) at the config's size, and
writes `array_record` files. Features: `image` uint8 (S, S, 3) Tensor, `label`
ClassLabel over the sorted class names, `class_name`, `group` ('' where none) and
`path` (relative to the data root, as the paper's fold CSVs name it) as Text,
`index` (position in the reader's example list, which the folds index) and
`truncated` (the file was truncated and decoded as far as it goes).

**No TensorFlow.** tfds 4.9 imports TF lazily; with `file_format='array_record'`
the writer serialises `tf.train.Example` protos with protobuf alone
(`example_serializer`), `Tensor`/`ClassLabel`/`Text` features encode and decode
with NumPy (`encode_example`, `decode_example_np`), and `as_data_source` reads
through `array_record` (`ArrayRecordDataSource`), so preparing and reading never
import `tensorflow` (checked by a test). Only `as_dataset` (tf.data) needs TF.

**Split layout.** tfds reserves the split name `all` (the union of every split), so
each example is stored exactly once, in the held-out part of its fold:
`fold{k}_val` and `fold{k}_test` for k = 1..5 (the held-out parts of the paper's
folds partition the data, docs/protocol.md#targets). Then `all` is the whole dataset and
`fold{k}_train` is the union of the other folds' held-out parts, a tfds split
expression (`split_expression`): `builder.as_data_source(split_expression(
'fold1_train'))` works on a plain `tfds.builder_from_directory` builder and the
expressions are in `info.metadata['splits']`. Storing train copies instead would
take six times the disk and the decoding.

**Folds.** By default the paper's procedure (`splits.make_target_folds`, checked
by `splits.check_folds`); with `paper_folds_dir` the paper's fold CSVs
(`splits.read_paper_folds`), in a config of its own (`..._paperfolds`). Examples in
no paper fold are left out and counted.

**Atomicity.** tfds writes into `<version>.incomplete.<id>/` and renames it when
everything is written; an interrupted prepare leaves no `<version>/`, so the
builder reports not prepared and a re-run starts over.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import inspect
import logging
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from jaxtransfer.data import byo, decode, sources, splits

SIZES = (32, 96, 112, 224, 256)
# The CCA image size per target (docs/protocol.md#cca): the default prepare size.
DEFAULT_SIZES = {
    "pcam_small": 96,
    "pcam_middle": 96,
    "breast": 224,
    "mammograms": 224,
    "thyroid": 224,
}
DEFAULT_SIZE = 112
HELD_OUT_PARTS = ("val", "test")
ALL = "all"
VERSION = "1.0.0"
_FOLD_SPLIT = re.compile(r"^fold([1-9])_(train|val|test)$")

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------
# Split names


def stored_split_names(num_folds: int = splits.NUM_FOLDS) -> list[str]:
    """The splits written to disk: fold{k}_val, fold{k}_test for k = 1..5."""
    return [
        f"fold{k}_{part}" for k in range(1, num_folds + 1) for part in HELD_OUT_PARTS
    ]


def split_expression(name: str, num_folds: int = splits.NUM_FOLDS) -> str:
    """The tfds split string for 'all', 'fold{k}_{train,val,test}' or a stored one.

    `fold{k}_train` becomes the '+'-union of the other folds' stored parts; other
    names (and tfds slices such as 'fold1_val[:10]') pass through.
    """
    match = _FOLD_SPLIT.match(name)
    if not match or match.group(2) != "train":
        return name
    fold = int(match.group(1))
    if fold > num_folds:
        raise ValueError(f"No fold {fold}; there are {num_folds}.")
    return "+".join(
        s for s in stored_split_names(num_folds) if not s.startswith(f"fold{fold}_")
    )


def held_out_layout(
    folds: Sequence[splits.Fold], num_examples: int
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The stored splits of `folds` and the examples they leave out.

    Every example may be in at most one held-out part, and each fold's train part
    must be exactly the other folds' held-out parts, so that the stored splits
    reproduce every fold.

    Returns:
        ({'fold1_val': indices, 'fold1_test': ..., ...}, left_out_indices).

    Raises:
        splits.FoldCheckError: the folds do not have that structure.
    """
    layout = {}
    for fold in folds:
        layout[f"fold{fold.number}_val"] = np.asarray(fold.val, dtype=np.int64)
        layout[f"fold{fold.number}_test"] = np.asarray(fold.test, dtype=np.int64)
    joined = np.concatenate(list(layout.values()))
    if len(np.unique(joined)) != len(joined):
        raise splits.FoldCheckError(
            "An example is in two held-out parts; the folds cannot be stored once."
        )
    for fold in folds:
        others = np.setdiff1d(joined, fold.held_out)
        if not np.array_equal(np.sort(fold.train), np.sort(others)):
            raise splits.FoldCheckError(
                f"fold {fold.number}: train is not the other folds' held-out parts."
            )
    left_out = np.setdiff1d(np.arange(num_examples), joined)
    return layout, left_out


# ---------------------------------------------------------------------------
# Configs


def config_name(size: int, paper_folds: bool = False, sample_size: int = -1) -> str:
    """e.g. 'size112', 'size112_paperfolds', 'size96_sampleall', 'size96_n500'."""
    name = f"size{size}"
    if paper_folds:
        name += "_paperfolds"
    if sample_size == 0:
        name += "_sampleall"
    elif sample_size > 0:
        name += f"_n{sample_size}"
    return name


@dataclasses.dataclass(eq=False)
class TargetConfig(tfds.core.BuilderConfig):
    """Resolution and fold source of a prepared target.

    Attributes:
        size: images are S x S.
        paper_folds: folds from the paper's CSVs (else the paper's procedure).
        sample_size: PCam only: -1 the protocol's sample (10000 / 100000; with
            paper_folds, whatever the fold CSVs name), 0 every patch, n > 0 a
            sample of n (same seed).
    """

    size: int = DEFAULT_SIZE
    paper_folds: bool = False
    sample_size: int = -1


def make_config(
    size: int, paper_folds: bool = False, sample_size: int = -1
) -> TargetConfig:
    """A `TargetConfig` named by `config_name`."""
    return TargetConfig(
        name=config_name(size, paper_folds, sample_size),
        size=size,
        paper_folds=paper_folds,
        sample_size=sample_size,
        description=(
            f"{size}x{size} images, "
            + ("the paper's fold CSVs" if paper_folds else "the paper's fold procedure")
        ),
    )


# ---------------------------------------------------------------------------
# Builders


class _ReaderNotes(logging.Handler):
    """Collects the readers' warnings (dropped files) for the prepare summary."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _ordered_map(function, items: Sequence, workers: int) -> Iterator:
    """`map(function, items)` on a thread pool, in order, a bounded window ahead."""
    if workers <= 1:
        yield from map(function, items)
        return
    window = 4 * workers
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        pending = collections.deque()
        try:
            for item in items:
                pending.append(pool.submit(function, item))
                if len(pending) >= window:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


class TargetBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Base builder: subclasses set `TARGET` (a `sources.TARGETS` name) and docs."""

    TARGET: ClassVar[str] = ""
    HOMEPAGE: ClassVar[str] = ""
    VERSION = tfds.core.Version(VERSION)
    RELEASE_NOTES: ClassVar[dict[str, str]] = {
        str(VERSION): "Keras-equivalent decoding, the paper's folds, array_record."
    }
    BUILDER_CONFIGS: ClassVar[list[TargetConfig]] = [make_config(s) for s in SIZES]

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        """This module's file.

        tfds 4.9.10's `code_path` evaluates `importlib_resources.abc.Traversable`
        for builders inside a package, and declares `importlib_resources` only for
        Python < 3.9, so on 3.11 it raises ModuleNotFoundError; the fallback it
        would reach anyway is the class's file.
        """
        return epath.Path(inspect.getfile(cls))

    def __init__(
        self,
        *,
        paper_folds_dir: str | os.PathLike | None = None,
        workers: int | None = None,
        show_progress: bool = False,
        **kwargs,
    ):
        """Creates the builder.

        Args:
            paper_folds_dir: the folder with the paper's `{train,val,test}_fold
                {1..5}.csv` for this target; required to prepare a
                `paper_folds` config.
            workers: decoding threads (default: the CPU count, at most 8).
            show_progress: show a tqdm bar over the examples while preparing.
            **kwargs: `tfds.core.GeneratorBasedBuilder` arguments (`data_dir`,
                `config`, `file_format`, ...).
        """
        self._paper_folds_dir = paper_folds_dir
        self._workers = workers or min(os.cpu_count() or 1, 8)
        self._show_progress = show_progress
        self._progress = None
        kwargs.setdefault("file_format", "array_record")
        super().__init__(**kwargs)

    # -- what subclasses may override ------------------------------------

    def class_names(self) -> tuple[str, ...]:
        """The sorted class names; the label is the position."""
        return sources.CLASS_NAMES[self.TARGET]

    def read_examples(self, data_root: Path) -> list[sources.Example]:
        """The target's examples in the raw download under `data_root`."""
        kwargs = {}
        sample_size = self.builder_config.sample_size
        if self.TARGET in sources.PCAM_SUBSETS:
            if sample_size >= 0:
                kwargs["sample_size"] = sample_size or None
            elif self.builder_config.paper_folds:
                # The paper sampled an os.listdir order no one can reproduce
                # (docs/protocol.md#pcam-small): read every patch and let its fold CSVs
                # choose.
                kwargs["sample_size"] = None
        return sources.read_target(self.TARGET, data_root, **kwargs)

    def make_folds(
        self, examples: Sequence[sources.Example], data_root: Path
    ) -> list[splits.Fold]:
        """The paper's folds (its CSVs for a paper_folds config, else the procedure)."""
        if self.builder_config.paper_folds:
            if self._paper_folds_dir is None:
                raise ValueError(
                    f"Config {self.builder_config.name} takes its folds from the "
                    "paper's CSVs: pass paper_folds_dir (--paper_folds DIR)."
                )
            return splits.read_paper_folds(
                self._paper_folds_dir, examples, data_root=data_root
            )
        folds = splits.make_target_folds(self.TARGET, examples)
        labels = np.asarray([e.label for e in examples])
        grouped = self.TARGET in sources.GROUPED_TARGETS
        groups = np.asarray([e.group for e in examples]) if grouped else None
        splits.check_folds(
            folds, len(examples), labels=None if grouped else labels, groups=groups
        )
        return folds

    # -- tfds interface ----------------------------------------------------

    def _info(self) -> tfds.core.DatasetInfo:
        size = self.builder_config.size
        return tfds.core.DatasetInfo(
            builder=self,
            description=(self.__doc__ or "").strip(),
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Tensor(
                        shape=(size, size, 3), dtype=np.uint8
                    ),
                    "label": tfds.features.ClassLabel(names=list(self.class_names())),
                    "class_name": tfds.features.Text(),
                    "group": tfds.features.Text(),
                    "path": tfds.features.Text(),
                    "index": tfds.features.Scalar(dtype=np.int64),
                    "truncated": tfds.features.Scalar(dtype=np.bool_),
                }
            ),
            supervised_keys=("image", "label"),
            homepage=self.HOMEPAGE or None,
            disable_shuffling=True,  # keep the folds' order
            metadata=tfds.core.MetadataDict(),
        )

    def _split_generators(self, dl_manager):
        data_root = Path(dl_manager.manual_dir)
        notes = _ReaderNotes()
        source_log = logging.getLogger(sources.__name__)
        source_log.addHandler(notes)
        try:
            examples = self.read_examples(data_root)
        finally:
            source_log.removeHandler(notes)
        folds = self.make_folds(examples, data_root)
        layout, left_out = held_out_layout(folds, len(examples))
        if len(left_out):
            notes.messages.append(
                f"{len(left_out)} examples are in no fold and left out, e.g. "
                f"{examples[left_out[0]].path}"
            )
        names = self.class_names()
        metadata = self.info.metadata
        metadata.update(
            target=self.TARGET,
            size=self.builder_config.size,
            class_names=list(names),
            fold_source=(
                f"paper fold CSVs ({Path(self._paper_folds_dir).name})"
                if self.builder_config.paper_folds
                else "paper procedure (splits.make_target_folds)"
            ),
            source=self.source_description(data_root),
            num_read=len(examples),
            num_left_out=int(len(left_out)),
            reader_notes=notes.messages,
            truncated=[],
            splits={
                name: split_expression(name)
                for k in range(1, splits.NUM_FOLDS + 1)
                for name in (f"fold{k}_train", f"fold{k}_val", f"fold{k}_test")
            },
            class_counts={
                name: _class_counts(examples, indices, names)
                for name, indices in layout.items()
            },
        )
        if self._show_progress:
            from tqdm.auto import tqdm

            total = sum(len(indices) for indices in layout.values())
            self._progress = tqdm(
                total=total, desc=f"{self.name} {self.builder_config.name}"
            )
        return {
            name: self._generate_examples(data_root, examples, indices)
            for name, indices in layout.items()
        }

    def source_description(self, data_root: Path) -> str:
        """What was read, recorded in the metadata (the raw folder's name)."""
        return f"{self.TARGET} raw download in {data_root.resolve().name}/"

    def _generate_examples(
        self, data_root: Path, examples: Sequence[sources.Example], indices
    ):
        size = self.builder_config.size
        chosen = [examples[i] for i in indices]
        with decode.ExampleDecoder(data_root, size) as decoder:
            decoded_all = _ordered_map(decoder, chosen, self._workers)
            for index, example, decoded in zip(indices, chosen, decoded_all):
                if decoded.truncated:
                    self.info.metadata["truncated"].append(example.path)
                if self._progress is not None:
                    self._progress.update(1)
                yield (
                    int(index),
                    {
                        "image": decoded.image,
                        "label": example.label,
                        "class_name": example.class_name,
                        "group": example.group,
                        "path": example.paper_path or example.path,
                        "index": int(index),
                        "truncated": decoded.truncated,
                    },
                )

    def _download_and_prepare(self, dl_manager, download_config, **kwargs):
        try:
            return super()._download_and_prepare(dl_manager, download_config, **kwargs)
        finally:
            if self._progress is not None:
                self._progress.close()
                self._progress = None


def _class_counts(
    examples: Sequence[sources.Example], indices, names: Sequence[str]
) -> dict[str, int]:
    counts = collections.Counter(examples[i].class_name for i in indices)
    return {name: counts.get(name, 0) for name in names}


_ROOT = "the folder passed as manual_dir (--manual_dir)"


class Knee(TargetBuilder):
    """MRNet sagittal knee MRI slices (RadImageNet export): acl, meniscus, normal."""

    TARGET = "knee"
    HOMEPAGE = "https://stanfordmlgroup.github.io/competitions/mrnet/"
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
    The sagittal slices come from the RadImageNet authors' repository
    (github.com/BMEII-AI/RadImageNet, ACL and meniscus benchmarks); the labels are
    MRNet's CSVs (stanfordmlgroup.github.io/competitions/mrnet, registration
    needed). In {_ROOT}: {sources.KNEE_LAYOUT}.
    """


class Chest(TargetBuilder):
    """Kermany chest X-rays (pneumonia), the three official splits pooled."""

    TARGET = "chest"
    HOMEPAGE = "https://www.kaggle.com/datasets/paultimothymooney/chest-xray-pneumonia"
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
    Download the Kaggle dataset 'paultimothymooney/chest-xray-pneumonia' and unzip
    it. In {_ROOT}: {sources.CHEST_LAYOUT}.
    """


class Isic(TargetBuilder):
    """ISIC 2018 task 3 training set (HAM10000), 7 classes."""

    TARGET = "isic"
    HOMEPAGE = "https://challenge.isic-archive.com/data/#2018"
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
    Download 'ISIC2018_Task3_Training_Input.zip' and
    'ISIC2018_Task3_Training_GroundTruth.zip' from the ISIC 2018 challenge page
    (challenge.isic-archive.com/data/#2018) and unzip both into ISIC2018/. In
    {_ROOT}: {sources.ISIC_LAYOUT}.
    """


class Breast(TargetBuilder):
    """BUSI breast ultrasound: benign (normal included) vs malignant."""

    TARGET = "breast"
    HOMEPAGE = (
        "https://www.kaggle.com/datasets/aryashah2k/breast-ultrasound-images-dataset"
    )
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
    Download the Kaggle BUSI dataset ('Dataset_BUSI_with_GT') and move the images
    of its benign/, malignant/ and normal/ folders into one flat folder breast/
    (masks may stay; they are skipped). In {_ROOT}: {sources.BREAST_LAYOUT}.
    """


class Thyroid(TargetBuilder):
    """DDTI thyroid ultrasound: TI-RADS >= 4 malignant, else benign."""

    TARGET = "thyroid"
    HOMEPAGE = (
        "https://www.kaggle.com/datasets/dasmehdixtr/ddti-thyroid-ultrasound-images"
    )
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
    Download the Kaggle DDTI dataset ('dasmehdixtr/ddti-thyroid-ultrasound-images')
    and put its .jpg and .xml files into one flat folder thyroid/. In {_ROOT}:
    {sources.THYROID_LAYOUT}.
    """


class Mammograms(TargetBuilder):
    """CBIS-DDSM full mammograms, one example per abnormality row."""

    TARGET = "mammograms"
    HOMEPAGE = "https://www.cancerimagingarchive.net/collection/cbis-ddsm/"
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
    Download CBIS-DDSM from The Cancer Imaging Archive (the four case-description
    CSVs and the full mammogram DICOMs) and keep TCIA's CBIS-DDSM/ tree as it
    comes, or put PNGs of the full mammograms (the paper's unrecorded conversion)
    in images/. In {_ROOT}: {sources.MAMMOGRAM_LAYOUT}.
    Truncated PNGs are decoded as far as they go and counted.
    """


class _Pcam(TargetBuilder, skip_registration=True):
    HOMEPAGE = "https://github.com/basveeling/pcam"
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
    Download the PatchCamelyon HDF5 files from github.com/basveeling/pcam (Zenodo)
    and gunzip them into PCam_raw/, or keep the paper's converter output. In
    {_ROOT}: {sources.PCAM_H5_LAYOUT}; or {sources.PCAM_PNG_LAYOUT}.
    """


class PcamSmall(_Pcam):
    """PatchCamelyon, the paper's 10000-patch sample (random_state 22)."""

    TARGET = "pcam-small"
    BUILDER_CONFIGS: ClassVar[list[TargetConfig]] = [make_config(s) for s in SIZES] + [
        make_config(96, sample_size=0)
    ]


class PcamMiddle(_Pcam):
    """PatchCamelyon, the paper's 100000-patch sample (random_state 2)."""

    TARGET = "pcam-middle"


class Byo(TargetBuilder):
    """A target of your own: a class-per-folder tree or a path,class[,group] CSV."""

    TARGET = "byo"
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
    Point manual_dir (--manual_dir) at either {byo.FOLDER_LAYOUT}, or at the folder
    the paths of a CSV are relative to and pass the CSV (--csv): {byo.CSV_LAYOUT}.
    """

    def __init__(
        self,
        *,
        manual_dir: str | os.PathLike | None = None,
        csv_file: str | os.PathLike | None = None,
        **kwargs,
    ):
        """Creates the builder.

        Args:
            manual_dir: the data root; needed to prepare (the class names are read
                from it) but not to read prepared data.
            csv_file: a `path,class[,group]` CSV; None for a class-per-folder tree.
            **kwargs: `TargetBuilder` arguments.
        """
        self._manual_dir = Path(manual_dir) if manual_dir is not None else None
        self._csv_file = Path(csv_file) if csv_file is not None else None
        self._examples = None
        if self._manual_dir is not None:
            self._examples = byo.read_byo(self._manual_dir, self._csv_file)
        super().__init__(**kwargs)

    def class_names(self) -> tuple[str, ...]:
        if self._examples is None:
            prepared = self._prepared_class_names()
            if prepared is None:
                raise ValueError(
                    "Byo needs manual_dir to know its classes; read prepared data "
                    "with tfds.builder_from_directory or jaxtransfer.data.loader."
                )
            return prepared
        return byo.class_names(self._examples)

    def _prepared_class_names(self) -> tuple[str, ...] | None:
        labels_file = Path(os.fspath(self.data_path)) / "label.labels.txt"
        if not labels_file.is_file():
            return None
        return tuple(labels_file.read_text().splitlines())

    def read_examples(self, data_root: Path) -> list[sources.Example]:
        if (
            self._manual_dir is None
            or data_root.resolve() != self._manual_dir.resolve()
        ):
            return byo.read_byo(data_root, self._csv_file)
        return self._examples

    def make_folds(self, examples, data_root):
        if self.builder_config.paper_folds:
            raise ValueError("A BYO target has no paper folds.")
        return byo.make_byo_folds(examples)

    def source_description(self, data_root: Path) -> str:
        kind = f"CSV {self._csv_file.resolve()}" if self._csv_file else "class folders"
        return f"byo {kind} in {data_root.resolve()}/"


BUILDERS: dict[str, type[TargetBuilder]] = {
    "knee": Knee,
    "chest": Chest,
    "isic": Isic,
    "breast": Breast,
    "thyroid": Thyroid,
    "mammograms": Mammograms,
    "pcam_small": PcamSmall,
    "pcam_middle": PcamMiddle,
    "byo": Byo,
}


def dataset_name(name: str) -> str:
    """'pcam-small' -> 'pcam_small' (the tfds name); checks the name."""
    name = name.replace("-", "_")
    if name not in BUILDERS:
        raise ValueError(f"Unknown dataset {name!r}; expected one of {list(BUILDERS)}")
    return name


def default_size(name: str) -> int:
    """The paper's CCA image size for a dataset (96 pcam, 224 breast, ...)."""
    return DEFAULT_SIZES.get(dataset_name(name), DEFAULT_SIZE)


def make_builder(
    name: str,
    data_dir: str | os.PathLike,
    size: int | None = None,
    *,
    paper_folds_dir: str | os.PathLike | None = None,
    sample_size: int = -1,
    manual_dir: str | os.PathLike | None = None,
    csv_file: str | os.PathLike | None = None,
    **kwargs,
) -> TargetBuilder:
    """The builder of dataset `name` at `size` px with the right config.

    Args:
        name: one of `BUILDERS` ('pcam-small' is accepted too).
        data_dir: where prepared datasets live.
        size: image side; default `default_size(name)`.
        paper_folds_dir: the paper's fold CSVs of this target (selects a
            `_paperfolds` config).
        sample_size: PCam sample override (see `TargetConfig`).
        manual_dir, csv_file: BYO only (see `Byo`).
        **kwargs: more `TargetBuilder` arguments (`workers`, `show_progress`).
    """
    name = dataset_name(name)
    size = default_size(name) if size is None else int(size)
    cls = BUILDERS[name]
    config = make_config(size, paper_folds_dir is not None, sample_size)
    registered = {c.name: c for c in cls.BUILDER_CONFIGS}
    config = config.name if config.name in registered else config
    if name == "byo":
        kwargs.update(manual_dir=manual_dir, csv_file=csv_file)
    return cls(
        data_dir=os.fspath(data_dir),
        config=config,
        paper_folds_dir=paper_folds_dir,
        **kwargs,
    )


def other_versions(version_dir: str | os.PathLike) -> list[str]:
    """Builder versions prepared beside ``version_dir`` (a ``prepared_dir``)."""
    version_dir = Path(version_dir)
    if not version_dir.parent.is_dir():
        return []
    return sorted(
        p.name
        for p in version_dir.parent.iterdir()
        if p.name != version_dir.name and (p / "dataset_info.json").is_file()
    )


def prepared_dir(
    data_dir: str | os.PathLike,
    name: str,
    size: int | None = None,
    paper_folds: bool = False,
    sample_size: int = -1,
) -> Path:
    """Where `make_builder(...)` writes: <data_dir>/<name>/<config>/<version>."""
    name = dataset_name(name)
    size = default_size(name) if size is None else int(size)
    config = config_name(size, paper_folds, sample_size)
    return Path(data_dir) / name / config / VERSION
