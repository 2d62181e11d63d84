"""The paper's cross-validation folds and an importer of its fold CSVs.

docs/protocol.md#folds

Folds are index arrays into a target's example list (`sources.read_target`). Grouped
targets (chest, thyroid, mammograms, knee) are split by patient: outer
`GroupKFold(5)`, then each held-out part by an inner `GroupKFold(4)` whose *last*
split is kept (val = inner fold 4, test = the other three). Stratified targets
(isic, breast, pcam-*) use an outer `StratifiedKFold(5, shuffle=True,
random_state=2)` and an inner `StratifiedKFold(5)`, again keeping the last split
(val = inner fold 5, test = the rest). v1 kept the whole held-out part as "val".

Regenerated folds match the paper's only when the example order and sklearn's
tie-breaking match. Given the paper's own example order (recoverable from its fold
CSVs for breast and isic, and for pcam-small from a listing of 286452 PNGs) the
stratified folds are reproduced exactly with current sklearn. The grouped folds are
not: sklearn 0.23 ordered equal-sized groups with an unstable argsort, current
sklearn with a stable one. For the paper's exact folds, import its CSVs with
`read_paper_folds`.
"""

from __future__ import annotations

import csv
import dataclasses
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.model_selection import GroupKFold, StratifiedKFold

from jaxtransfer.data import sources

NUM_FOLDS = 5
STRATIFIED_SEED = 2
GROUPED_INNER_SPLITS = 4
STRATIFIED_INNER_SPLITS = 5
SPLIT_NAMES = ("train", "val", "test")
VERSIONS = ("v1", "v2")
# The paper's fold CSVs name every image relative to its scripts' folder.
PAPER_PATH_PREFIX = "../../../data/"


class FoldCheckError(AssertionError):
    """Folds violate a property the split protocol guarantees."""


@dataclasses.dataclass(frozen=True)
class Fold:
    """One cross-validation fold: index arrays into the example list.

    Attributes:
        number: the fold number, 1..5 in the outer splitter's order.
        train: indices of the training examples.
        val: indices of the validation examples (v1: the whole held-out part).
        test: indices of the test examples (v1: empty).
    """

    number: int
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    @property
    def held_out(self) -> np.ndarray:
        """val and test together, sorted: the outer splitter's held-out part."""
        return np.sort(np.concatenate([self.val, self.test]))

    def parts(self) -> dict[str, np.ndarray]:
        """{'train': ..., 'val': ..., 'test': ...}."""
        return {name: getattr(self, name) for name in SPLIT_NAMES}


def _index_array(values) -> np.ndarray:
    return np.asarray(values, dtype=np.int64).reshape(-1)


def _last_split(splits) -> tuple[np.ndarray, np.ndarray]:
    # The reference loop overwrites its variables, so only the last split survives.
    *_, last = splits
    return last


def make_folds(
    labels: Sequence[int],
    groups: Sequence[str] | None = None,
    version: str = "v2",
) -> list[Fold]:
    """The paper's 5 folds: grouped by `groups` if given, else stratified by label.

    Args:
        labels: class index per example.
        groups: patient id per example for grouped targets, None to stratify.
        version: 'v2' (train/val/test) or 'v1' (train/held-out, test empty).

    Returns:
        Five `Fold`s numbered 1..5.
    """
    if version not in VERSIONS:
        raise ValueError(f"version must be one of {VERSIONS}, got {version!r}")
    labels = np.asarray(labels)
    placeholder = np.zeros(len(labels))
    if groups is not None:
        groups = np.asarray(groups)
        outer = GroupKFold(NUM_FOLDS).split(placeholder, groups=groups)
    else:
        outer = StratifiedKFold(
            NUM_FOLDS, shuffle=True, random_state=STRATIFIED_SEED
        ).split(placeholder, labels)
    folds = []
    for number, (train, held_out) in enumerate(outer, 1):
        if version == "v1":
            folds.append(
                Fold(
                    number,
                    _index_array(train),
                    _index_array(held_out),
                    _index_array([]),
                )
            )
            continue
        if groups is not None:
            inner = GroupKFold(GROUPED_INNER_SPLITS).split(
                held_out, groups=groups[held_out]
            )
        else:
            inner = StratifiedKFold(STRATIFIED_INNER_SPLITS).split(
                np.zeros(len(held_out)), labels[held_out]
            )
        test_positions, val_positions = _last_split(inner)
        folds.append(
            Fold(
                number,
                _index_array(train),
                _index_array(held_out[val_positions]),
                _index_array(held_out[test_positions]),
            )
        )
    return folds


def check_class_sizes(
    examples: Sequence[sources.Example], where: str, every_class: bool = True
) -> None:
    """Raises a LayoutError naming the class if the stratified folds cannot be made.

    `StratifiedKFold(5)` puts some of every class in each of the 5 held-out parts,
    and each part is split again into 5. The largest class needs 25 examples, or
    sklearn cannot split at all. A class with fewer than 5 leaves some test folds
    without it: an error with ``every_class``, else a warning (sklearn's own).
    """
    counts = Counter(e.class_name for e in examples)
    small = {name: n for name, n in sorted(counts.items()) if n < NUM_FOLDS}
    if small and every_class:
        listed = ", ".join(f"class {name!r} has {n}" for name, n in small.items())
        raise sources.LayoutError(
            f"{where}: {listed}; the paper's stratified folds need at least "
            f"{NUM_FOLDS} images in every class (some of each class in each of the "
            f"{NUM_FOLDS} test folds)."
        )
    name, largest = max(counts.items(), key=lambda item: item[1])
    needed = NUM_FOLDS * STRATIFIED_INNER_SPLITS
    if largest < needed:
        raise sources.LayoutError(
            f"{where}: the largest class, {name!r}, has {largest} images; the "
            f"paper's stratified folds need one with at least {needed} (each of "
            f"{NUM_FOLDS} held-out parts is split again into "
            f"{STRATIFIED_INNER_SPLITS})."
        )


def make_target_folds(
    target: str, examples: Sequence[sources.Example], version: str = "v2"
) -> list[Fold]:
    """`make_folds` for a target: grouped by patient or stratified, as the paper."""
    labels = [example.label for example in examples]
    groups = None
    if target in sources.GROUPED_TARGETS:
        groups = [example.group for example in examples]
    else:
        check_class_sizes(examples, f"target {target}", every_class=False)
    return make_folds(labels, groups, version)


def to_v1(folds: Sequence[Fold]) -> list[Fold]:
    """v2 folds in the v1 form: the held-out part (val + test) as val, no test."""
    return [
        Fold(fold.number, fold.train, fold.held_out, _index_array([])) for fold in folds
    ]


def check_folds(
    folds: Sequence[Fold],
    num_examples: int,
    labels: Sequence[int] | None = None,
    groups: Sequence[str] | None = None,
) -> None:
    """Raise `FoldCheckError` unless the folds have the protocol's properties.

    Always: train, val and test of a fold are disjoint and cover every example, and
    the held-out parts of the folds partition the examples. With `groups`: no group
    is in two of train, val, test. With `labels` (stratified targets): each class's
    count in a held-out part is within one example of its share of the whole data,
    and likewise for val within the held-out part (v2).
    """
    every = np.arange(num_examples)
    held_out_all = []
    for fold in folds:
        parts = fold.parts()
        joined = np.concatenate(list(parts.values()))
        if len(joined) != num_examples or not np.array_equal(np.sort(joined), every):
            raise FoldCheckError(
                f"fold {fold.number}: train/val/test overlap or miss examples "
                f"({len(joined)} indices for {num_examples} examples)."
            )
        held_out_all.append(fold.held_out)
        if groups is not None:
            groups = np.asarray(groups)
            names = list(parts)
            for i, first in enumerate(names):
                for second in names[i + 1 :]:
                    shared = set(groups[parts[first]]) & set(groups[parts[second]])
                    if shared:
                        raise FoldCheckError(
                            f"fold {fold.number}: {len(shared)} groups in both "
                            f"{first} and {second}, e.g. {sorted(shared)[:3]}."
                        )
        if labels is not None:
            labels = np.asarray(labels)
            _check_stratified(fold.number, "held-out", labels, fold.held_out, every)
            if len(fold.test):
                _check_stratified(
                    fold.number,
                    "val",
                    labels,
                    fold.val,
                    fold.held_out,
                    STRATIFIED_INNER_SPLITS,
                )
    joined = np.concatenate(held_out_all)
    if len(joined) != num_examples or not np.array_equal(np.sort(joined), every):
        raise FoldCheckError(
            "the held-out parts of the folds do not partition the examples "
            f"({len(joined)} held-out indices, {len(np.unique(joined))} distinct, "
            f"{num_examples} examples)."
        )


def _check_stratified(
    number: int,
    name: str,
    labels: np.ndarray,
    part: np.ndarray,
    parent: np.ndarray,
    num_splits: int = NUM_FOLDS,
) -> None:
    for class_index in np.unique(labels[parent]):
        expected = np.sum(labels[parent] == class_index) / num_splits
        count = np.sum(labels[part] == class_index)
        if abs(count - expected) >= 1:
            raise FoldCheckError(
                f"fold {number}: {name} holds {count} examples of class "
                f"{class_index}, expected {expected:.1f} +- 1 (stratified)."
            )


# ---------------------------------------------------------------------------
# The paper's fold CSVs


@dataclasses.dataclass(frozen=True)
class PaperFoldRow:
    """One row of a paper fold CSV.

    Attributes:
        index: the unnamed first column, the importer's DataFrame index (the row
            within its case CSV for mammograms; not unique there).
        path: the image path relative to the data root (prefix removed).
        class_name: the 'class' column.
        group: the 'pid' column, '' where the CSV has none.
    """

    index: int
    path: str
    class_name: str
    group: str

    @property
    def key(self) -> str:
        """Path plus index: unique within a target even for mammograms."""
        return f"{self.path}#{self.index}"


def paper_relative_path(paper_path: str) -> str:
    """'../../../data/breast/x.png' -> 'breast/x.png' (relative to the data root)."""
    if not paper_path.startswith(PAPER_PATH_PREFIX):
        raise ValueError(
            f"Paper fold path {paper_path!r} does not start with {PAPER_PATH_PREFIX!r}."
        )
    return paper_path[len(PAPER_PATH_PREFIX) :]


def remap_paper_path(paper_path: str, data_root: str | os.PathLike) -> Path:
    """A paper fold path moved onto the user's data root."""
    return Path(data_root) / paper_relative_path(paper_path)


def read_paper_fold_csv(csv_file: str | os.PathLike) -> list[PaperFoldRow]:
    """Rows of one paper fold CSV, whatever its target's columns.

    breast, isic, pcam-small: `,path,class`; chest: `,path,class,pid`; thyroid and
    mammograms: `,pid,path,class`; knee: `,0,1_x,2,...,7,pid,1_y,class,path`.
    """
    csv_file = Path(csv_file)
    if not csv_file.is_file():
        raise sources.LayoutError(f"Missing paper fold file {csv_file}.")
    with open(csv_file, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"", "path", "class"} - set(reader.fieldnames or ())
        if missing:
            raise sources.LayoutError(
                f"{csv_file} lacks columns {sorted(missing)} (the first column is the "
                "unnamed DataFrame index)."
            )
        return [
            PaperFoldRow(
                index=int(row[""]),
                path=paper_relative_path(row["path"]),
                class_name=row["class"],
                group=row.get("pid", ""),
            )
            for row in reader
        ]


def paper_fold_file(folds_dir: str | os.PathLike, split: str, number: int) -> Path:
    """One CSV of a paper fold folder: `<split>_fold<number>.csv`."""
    return Path(folds_dir) / f"{split}_fold{number}.csv"


def has_paper_fold_csvs(folds_dir: str | os.PathLike) -> bool:
    """Whether `folds_dir` holds every fold CSV of one target."""
    return all(
        paper_fold_file(folds_dir, split, number).is_file()
        for number in range(1, NUM_FOLDS + 1)
        for split in SPLIT_NAMES
    )


def read_paper_fold_rows(
    folds_dir: str | os.PathLike,
) -> list[dict[str, list[PaperFoldRow]]]:
    """The five folds of a paper fold folder: [{'train': rows, 'val': rows, ...}]."""
    folds_dir = Path(folds_dir)
    return [
        {
            split: read_paper_fold_csv(paper_fold_file(folds_dir, split, number))
            for split in SPLIT_NAMES
        }
        for number in range(1, NUM_FOLDS + 1)
    ]


def read_paper_folds(
    folds_dir: str | os.PathLike,
    examples: Sequence[sources.Example],
    version: str = "v2",
    data_root: str | os.PathLike | None = None,
) -> list[Fold]:
    """The paper's folds as index arrays into `examples`, matched by image path.

    Rows are matched on the path relative to the data root (for mammograms, whose
    rows share images, on path and row index). Every row must match an example
    with the same class; the rows keep the CSV order.

    Args:
        folds_dir: the folder with `{train,val,test}_fold{1..5}.csv` of one target.
        examples: the target's examples from `sources.read_target`.
        version: 'v2', or 'v1' to merge val and test into the v1 held-out "val".
        data_root: only to name full paths in the error about missing files.

    Returns:
        Five `Fold`s numbered 1..5.
    """
    if version not in VERSIONS:
        raise ValueError(f"version must be one of {VERSIONS}, got {version!r}")
    by_key = {example.paper_key: position for position, example in enumerate(examples)}
    if len(by_key) != len(examples):
        raise ValueError("Two examples share a path; cannot match fold rows by path.")
    match_rows = any(example.table_row >= 0 for example in examples)
    folds, missing, mismatched = [], [], []
    for number, fold_rows in enumerate(read_paper_fold_rows(folds_dir), 1):
        parts = {}
        for split, rows in fold_rows.items():
            positions = []
            for row in rows:
                position = by_key.get(row.key if match_rows else row.path)
                if position is None:
                    missing.append(row)
                    continue
                if examples[position].class_name != row.class_name:
                    mismatched.append((row, examples[position].class_name))
                positions.append(position)
            parts[split] = _index_array(positions)
        folds.append(Fold(number, parts["train"], parts["val"], parts["test"]))
    if missing:
        root = Path(data_root) if data_root is not None else Path("<data root>")
        unique = sorted({row.path for row in missing})
        shown = "\n  ".join(str(root / path) for path in unique[:10])
        raise sources.LayoutError(
            f"{len(unique)} images named in the fold CSVs of {folds_dir} are not "
            f"among the examples read from the raw download, e.g.:\n  {shown}"
        )
    if mismatched:
        row, found = mismatched[0]
        raise sources.LayoutError(
            f"{len(mismatched)} fold rows of {folds_dir} disagree with the raw "
            f"download's label, e.g. {row.path}: fold CSV {row.class_name!r}, "
            f"read {found!r}."
        )
    return to_v1(folds) if version == "v1" else folds
