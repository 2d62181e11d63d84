"""Bring your own target: a class-per-folder tree or a CSV, read into `Example`s.

Two layouts are accepted under a data root:

* **folders**: `<root>/<class name>/**/<image>` (png, jpg, jpeg, bmp, tif, tiff);
  every top-level folder is a class, images may sit in sub-folders; no groups.
* **CSV**: a file with columns `path`, `class` and optionally `group` (a patient
  id). `path` is relative to the data root (or absolute). With a `group` column the
  folds are grouped (the paper's `GroupKFold` procedure), otherwise stratified.

The examples then go through the same fold procedure (`splits.make_folds`), the same
fold checks and the same builder as the paper's targets. Class indices follow the
sorted class names, as Keras assigns them.
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from jaxtransfer.data import sources, splits

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
CSV_COLUMNS = ("path", "class")
GROUP_COLUMN = "group"
FOLDER_LAYOUT = (
    "<root>/<class name>/**/<image> with one folder per class (at least two), "
    f"images ending with {'/'.join(IMAGE_SUFFIXES)}"
)
CSV_LAYOUT = (
    "a CSV with columns path,class[,group]; path relative to <root> or absolute; "
    "group (e.g. a patient id) makes the folds grouped"
)


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def _examples(rows: Sequence[tuple[str, str, str]]) -> list[sources.Example]:
    class_names = sorted({class_name for _, class_name, _ in rows})
    return [
        sources.Example(
            path=path,
            class_name=class_name,
            label=class_names.index(class_name),
            group=group,
            paper_path=path,
        )
        for path, class_name, group in rows
    ]


def read_folders(data_root: str | os.PathLike) -> list[sources.Example]:
    """Examples of a class-per-folder tree, in sorted path order."""
    root = Path(data_root)
    if not root.is_dir():
        raise sources.LayoutError(f"Missing folder {root}. Expected: {FOLDER_LAYOUT}")
    class_dirs = sorted(
        p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
    )
    rows = []
    for class_dir in class_dirs:
        files = sorted(p for p in class_dir.rglob("*") if p.is_file() and _is_image(p))
        if not files:
            raise sources.LayoutError(
                f"Class folder {class_dir} holds no image. Expected: {FOLDER_LAYOUT}"
            )
        rows += [(p.relative_to(root).as_posix(), class_dir.name, "") for p in files]
    if len(class_dirs) < 2:
        raise sources.LayoutError(
            f"{root} has {len(class_dirs)} class folder(s). Expected: {FOLDER_LAYOUT}"
        )
    return _examples(rows)


def read_csv(
    csv_file: str | os.PathLike, data_root: str | os.PathLike
) -> list[sources.Example]:
    """Examples of a `path,class[,group]` CSV, in row order; every file must exist."""
    csv_file, root = Path(csv_file), Path(data_root)
    if not csv_file.is_file():
        raise sources.LayoutError(f"Missing CSV {csv_file}. Expected: {CSV_LAYOUT}")
    with open(csv_file, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        missing = set(CSV_COLUMNS) - set(reader.fieldnames or ())
        if missing:
            raise sources.LayoutError(
                f"{csv_file} lacks columns {sorted(missing)}. Expected: {CSV_LAYOUT}"
            )
        grouped = GROUP_COLUMN in (reader.fieldnames or ())
        rows = []
        for line, row in enumerate(reader, 2):
            path, class_name = row["path"].strip(), row["class"].strip()
            group = row[GROUP_COLUMN].strip() if grouped else ""
            if not path or not class_name or (grouped and not group):
                raise sources.LayoutError(f"{csv_file} line {line}: empty field.")
            rows.append((path, class_name, group))
    if not rows:
        raise sources.LayoutError(f"{csv_file} has no rows. Expected: {CSV_LAYOUT}")
    duplicated = [p for p, n in Counter(p for p, _, _ in rows).items() if n > 1]
    if duplicated:
        raise sources.LayoutError(
            f"{csv_file}: {len(duplicated)} paths appear twice, e.g. {duplicated[0]}."
        )
    missing_files = [p for p, _, _ in rows if not (root / p).is_file()]
    if missing_files:
        shown = ", ".join(str(root / p) for p in missing_files[:5])
        raise sources.LayoutError(
            f"{len(missing_files)} files named in {csv_file} are missing under "
            f"{root}, e.g. {shown}. Expected: {CSV_LAYOUT}"
        )
    if len({c for _, c, _ in rows}) < 2:
        raise sources.LayoutError(f"{csv_file} names fewer than two classes.")
    return _examples(rows)


def read_byo(
    data_root: str | os.PathLike, csv_file: str | os.PathLike | None = None
) -> list[sources.Example]:
    """The examples of a BYO target: from `csv_file` if given, else the folders."""
    if csv_file is not None:
        return read_csv(csv_file, data_root)
    return read_folders(data_root)


def class_names(examples: Sequence[sources.Example]) -> tuple[str, ...]:
    """The sorted class names (position = label)."""
    return tuple(sorted({e.class_name for e in examples}))


def is_grouped(examples: Sequence[sources.Example]) -> bool:
    """Whether the examples carry groups (then the folds are grouped)."""
    return any(e.group for e in examples)


def make_byo_folds(examples: Sequence[sources.Example]) -> list[splits.Fold]:
    """The paper's fold procedure on BYO examples, checked like the targets' folds.

    Grouped (`GroupKFold(5)`, inner `GroupKFold(4)`) when the examples carry
    groups, else stratified (`StratifiedKFold(5, shuffle, seed 2)`, inner
    `StratifiedKFold(5)`).

    Raises:
        LayoutError: too few groups or examples per class for the procedure.
    """
    labels = np.asarray([e.label for e in examples])
    if is_grouped(examples):
        groups = np.asarray([e.group for e in examples])
        num_groups = len(set(groups.tolist()))
        needed = splits.NUM_FOLDS * splits.GROUPED_INNER_SPLITS
        if num_groups < needed:
            raise sources.LayoutError(
                f"{num_groups} groups; the grouped fold procedure needs at least "
                f"{needed} (5 outer folds, each split again into 4)."
            )
        folds = splits.make_folds(labels, groups)
        splits.check_folds(folds, len(examples), groups=groups)
        return folds
    splits.check_class_sizes(examples, "byo")
    folds = splits.make_folds(labels)
    splits.check_folds(folds, len(examples), labels=labels)
    return folds
