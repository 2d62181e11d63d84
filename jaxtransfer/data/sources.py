"""Readers for the targets' raw downloads, in the layouts of docs/protocol.md#targets.

Every reader takes the *data root* (the folder that holds `chest_xray/`, `breast/`,
`ISIC2018/`, ...; the paper's fold CSVs call it `../../../data/`) and returns a list of
`Example` records. The labelling rules are the reference importers' rules, quirks
included (docs/protocol.md#targets). Where the reference listed a folder with
`os.listdir` (whose order depends on the file system), the listing is **sorted** here,
so the example order is reproducible; otherwise the order is the reference importer's
(for example chest: class folder, then train/val/test, then file). Class indices follow
the sorted class names, as Keras assigns them.

A folder that does not match the expected layout raises `LayoutError`, whose message
names the offending path and the layout that was expected.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

# Class names per target, sorted: the position is the label (Keras order).
ISIC_CLASSES = ("AKIEC", "BCC", "BKL", "DF", "MEL", "NV", "VASC")
CHEST_CLASSES = ("NORMAL", "PNEUMONIA")
BREAST_CLASSES = ("benign", "malignant")
THYROID_CLASSES = ("benign", "malignant")
KNEE_CLASSES = ("acl", "meniscus", "normal")
MAMMOGRAM_CLASSES = ("BENIGN", "MALIGNANT")
PCAM_CLASSES = ("no", "yes")

CLASS_NAMES = {
    "isic": ISIC_CLASSES,
    "chest": CHEST_CLASSES,
    "breast": BREAST_CLASSES,
    "thyroid": THYROID_CLASSES,
    "knee": KNEE_CLASSES,
    "mammograms": MAMMOGRAM_CLASSES,
    "pcam-small": PCAM_CLASSES,
    "pcam-middle": PCAM_CLASSES,
}
TARGETS = tuple(CLASS_NAMES)
# Targets split by patient (GroupKFold); the others are split by class
# (docs/protocol.md#folds).
GROUPED_TARGETS = frozenset({"chest", "thyroid", "mammograms", "knee"})

# Where each target lives under the data root.
ISIC_DIR = "ISIC2018"
ISIC_IMAGE_DIR = f"{ISIC_DIR}/ISIC2018_Task3_Training_Input"
ISIC_LABEL_FILE = (
    f"{ISIC_DIR}/ISIC2018_Task3_Training_GroundTruth/"
    "ISIC2018_Task3_Training_GroundTruth.csv"
)
# The reference takes the first of these columns whose value is 1, in this order.
ISIC_LABEL_PRIORITY = ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC")
CHEST_DIR = "chest_xray"
CHEST_SPLITS = ("train", "val", "test")
BREAST_DIR = "breast"
BREAST_KINDS = ("benign", "malignant", "normal")
THYROID_DIR = "thyroid"
# The reference reads TI-RADS from the 8th child of the XML root (pandas row 7).
THYROID_TIRADS_ROW = 7
THYROID_MALIGNANT_FROM = 4
KNEE_DIR = "knee"
# Image sub-folder -> the MRNet label CSVs that label it, in concatenation order. The
# meniscus folder's validation labels come from valid-abnormal.csv (sic;
# docs/protocol.md#label-parsing).
KNEE_LABEL_FILES = {
    "acl": ("train-acl.csv", "valid-acl.csv"),
    "meniscus": ("train-meniscus.csv", "valid-abnormal.csv"),
}
MAMMOGRAM_DIR = "mammograms"
# Concatenated in this order; each row keeps its index within its own CSV.
MAMMOGRAM_CSVS = (
    "calc_case_description_train_set.csv",
    "calc_case_description_test_set.csv",
    "mass_case_description_train_set.csv",
    "mass_case_description_test_set.csv",
)
MAMMOGRAM_PATHOLOGY_TO_CLASS = {
    "BENIGN": "BENIGN",
    "BENIGN_WITHOUT_CALLBACK": "BENIGN",
    "MALIGNANT": "MALIGNANT",
}
PCAM_PNG_DIR = "PCam/png_images"
PCAM_H5_DIR = "PCam_raw"
PCAM_SPLITS = ("train", "valid", "test")  # the order pcam_converter.py wrote them
PCAM_SUBSETS = {"pcam-small": (10_000, 22), "pcam-middle": (100_000, 2)}

# Files a download may carry beside its images and that the readers skip.
_SKIPPED_NAMES = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})
_PCAM_PNG_NAME = re.compile(r"^(\d+)_label=([01])\.png$")

log = logging.getLogger(__name__)


class LayoutError(ValueError):
    """A raw download does not match the layout a reader expects."""


@dataclasses.dataclass(frozen=True)
class Example:
    """One labelled image of a target.

    The fields map onto a TFDS `GeneratorBasedBuilder` example: `path` (plus
    `h5_index` for PCam read from HDF5) is the image source, `label` the class
    index, `class_name` its name, `group` the patient id ('' where the target has
    none), and `key` a unique example key.

    Attributes:
        path: posix path of the image file relative to the data root; for PCam
            read from HDF5, the `_x.h5` file.
        class_name: the class name, one of `CLASS_NAMES[target]`.
        label: index of `class_name` among the sorted class names.
        group: patient id for grouped targets, '' otherwise.
        h5_index: row of the image in the `_x.h5` file, -1 for image files.
        table_row: row of the label table the example comes from where one image
            has several rows (mammograms: the row within its case-description CSV,
            the index the paper's fold CSVs carry), -1 otherwise.
        paper_path: the image path as the paper's fold CSVs name it, relative to
            the data root; equal to `path` except for PCam read from HDF5.
    """

    path: str
    class_name: str
    label: int
    group: str = ""
    h5_index: int = -1
    table_row: int = -1
    paper_path: str = ""

    @property
    def paper_key(self) -> str:
        """The key a row of the paper's fold CSVs is matched on."""
        path = self.paper_path or self.path
        return f"{path}#{self.table_row}" if self.table_row >= 0 else path

    @property
    def key(self) -> str:
        """A key unique within one reader's output."""
        if self.paper_path or self.table_row >= 0:
            return self.paper_key
        if self.h5_index >= 0:
            return f"{self.path}#{self.h5_index}"
        return self.path

    def as_features(self) -> dict[str, str | int]:
        """The example as a flat dict (image source, label, class name, group)."""
        return {
            "image": self.path,
            "h5_index": self.h5_index,
            "label": self.label,
            "class_name": self.class_name,
            "group": self.group,
            "path": self.paper_path or self.path,
        }


def _example(
    target: str, path: str, class_name: str, group: str = "", **fields
) -> Example:
    classes = CLASS_NAMES[target]
    return Example(
        path=path,
        class_name=class_name,
        label=classes.index(class_name),
        group=group,
        paper_path=fields.pop("paper_path", path),
        **fields,
    )


# ---------------------------------------------------------------------------
# Listing helpers


def _require_dir(path: Path, layout: str) -> None:
    if not path.is_dir():
        raise LayoutError(f"Missing folder {path}. Expected layout: {layout}")


def _require_file(path: Path, layout: str) -> None:
    if not path.is_file():
        raise LayoutError(f"Missing file {path}. Expected layout: {layout}")


def _list_files(
    folder: Path,
    suffixes: Sequence[str],
    layout: str,
    ignored_suffixes: Sequence[str] = (),
) -> list[str]:
    """Sorted names of the files in `folder` ending with one of `suffixes`.

    Hidden files and OS litter (`.DS_Store`) are skipped, as are names ending with
    one of `ignored_suffixes`. Any other file, a sub-folder, or an empty result is a
    `LayoutError` naming `folder`.
    """
    _require_dir(folder, layout)
    wanted, unexpected = [], []
    for name in sorted(os.listdir(folder)):
        if name in _SKIPPED_NAMES or name.startswith("."):
            continue
        if name.endswith(tuple(suffixes)) and (folder / name).is_file():
            wanted.append(name)
        elif not name.endswith(tuple(ignored_suffixes)):
            unexpected.append(name)
    if unexpected:
        shown = ", ".join(unexpected[:5])
        raise LayoutError(
            f"Unexpected entries in {folder} ({len(unexpected)}, e.g. {shown}): "
            f"only {'/'.join(suffixes)} files belong there. Expected layout: {layout}"
        )
    if not wanted:
        raise LayoutError(
            f"No {'/'.join(suffixes)} files in {folder}. Expected layout: {layout}"
        )
    return wanted


def _read_csv_rows(path: Path, layout: str, header: bool = True) -> list:
    _require_file(path, layout)
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f) if header else csv.reader(f)
        return list(reader)


# ---------------------------------------------------------------------------
# ISIC 2018 task 3

ISIC_LAYOUT = (
    f"<root>/{ISIC_IMAGE_DIR}/ISIC_xxxxxxx.jpg and <root>/{ISIC_LABEL_FILE} "
    f"(columns image,{','.join(ISIC_LABEL_PRIORITY)}; one-hot floats)"
)


def read_isic(data_root: str | os.PathLike) -> list[Example]:
    """ISIC 2018 task 3 training set: label = first of MEL..VASC whose value is 1."""
    root = Path(data_root)
    names = _list_files(
        root / ISIC_IMAGE_DIR, [".jpg"], ISIC_LAYOUT, ignored_suffixes=[".txt"]
    )
    label_file = root / ISIC_LABEL_FILE
    rows = _read_csv_rows(label_file, ISIC_LAYOUT)
    missing_columns = {"image", *ISIC_LABEL_PRIORITY} - set(rows[0] if rows else ())
    if missing_columns:
        raise LayoutError(
            f"{label_file} lacks columns {sorted(missing_columns)}. "
            f"Expected layout: {ISIC_LAYOUT}"
        )
    class_by_id = {}
    for row in rows:
        # The first class column whose value is 1, in the reference's order.
        firsts = [c for c in ISIC_LABEL_PRIORITY if float(row[c]) == 1.0]
        class_by_id[row["image"]] = firsts[0] if firsts else None
    examples = []
    for name in names:
        image_id = name[-16:-4]  # the reference's 12-character stem
        if image_id not in class_by_id:
            raise LayoutError(f"Image {name} has no row in {label_file}.")
        if class_by_id[image_id] is None:
            raise LayoutError(f"Row {image_id} of {label_file} has no class set to 1.")
        examples.append(
            _example("isic", f"{ISIC_IMAGE_DIR}/{name}", class_by_id[image_id])
        )
    return examples


# ---------------------------------------------------------------------------
# Chest X-ray (pneumonia)

CHEST_LAYOUT = (
    f"<root>/{CHEST_DIR}/{{train,val,test}}/{{{','.join(CHEST_CLASSES)}}}/*.jpeg"
)


def chest_patient_id(file_name: str) -> str:
    """The reference's patient id: strip a character *set*, then cut at '-'.

    Leading characters in {I,M,N,O,R,A,L,2} are stripped, then leading characters in
    {-,I,M}; '_' becomes '-' and the text before the first '-' is the id. This
    merges `NORMAL2-IM-0686-0001` with `IM-0686-0001` (both `0686`,
    docs/protocol.md#label-parsing) and gives `person1000` for
    `person1000_bacteria_2931`.
    """
    # Character-set stripping is the point here (it is the reference's rule).
    stripped = file_name.lstrip("IMNORMAL2").lstrip("-IM")  # noqa: B005
    stripped = stripped.replace("_", "-")
    return stripped.split("-")[0]


def read_chest(data_root: str | os.PathLike) -> list[Example]:
    """Kermany chest X-rays: the three official splits pooled, class = folder."""
    root = Path(data_root) / CHEST_DIR
    _require_dir(root / CHEST_SPLITS[0], CHEST_LAYOUT)
    class_dirs = sorted(
        name
        for name in os.listdir(root / CHEST_SPLITS[0])
        if name not in _SKIPPED_NAMES and not name.startswith(".")
    )
    if set(class_dirs) != set(CHEST_CLASSES):
        raise LayoutError(
            f"{root / CHEST_SPLITS[0]} holds {class_dirs}, expected the class "
            f"folders {list(CHEST_CLASSES)}. Expected layout: {CHEST_LAYOUT}"
        )
    examples = []
    for class_name in class_dirs:
        for split in CHEST_SPLITS:
            folder = root / split / class_name
            for name in _list_files(folder, [".jpeg"], CHEST_LAYOUT):
                examples.append(
                    _example(
                        "chest",
                        f"{CHEST_DIR}/{split}/{class_name}/{name}",
                        class_name,
                        group=chest_patient_id(name),
                    )
                )
    return examples


# ---------------------------------------------------------------------------
# Breast ultrasound (BUSI)

BREAST_LAYOUT = (
    f"<root>/{BREAST_DIR}/{{benign,malignant,normal}} (n).png, one flat folder; "
    "'<name>_mask*.png' segmentation masks are skipped"
)


def read_breast(data_root: str | os.PathLike) -> list[Example]:
    """BUSI: masks skipped; `malignant` if the name says so, else benign (normal too).

    The reference tests the substring 'malignant' on its whole relative path; here
    it is tested on the file name, so a data root whose own path contains
    'malignant' cannot flip every label.
    """
    folder = Path(data_root) / BREAST_DIR
    examples = []
    for name in _list_files(folder, [".png"], BREAST_LAYOUT):
        if "_mask" in name:
            continue  # the committed folds hold no mask files
        if not name.startswith(BREAST_KINDS):
            raise LayoutError(
                f"{folder / name} is not named like a BUSI image. "
                f"Expected layout: {BREAST_LAYOUT}"
            )
        class_name = "malignant" if "malignant" in name else "benign"
        examples.append(_example("breast", f"{BREAST_DIR}/{name}", class_name))
    if not examples:
        raise LayoutError(f"Only mask files in {folder}. Expected: {BREAST_LAYOUT}")
    return examples


# ---------------------------------------------------------------------------
# Thyroid ultrasound (DDTI)

THYROID_LAYOUT = (
    f"<root>/{THYROID_DIR}/<case>_<k>.jpg and <root>/{THYROID_DIR}/<case>.xml in one "
    "flat folder; the XML root's children start with <number> and, where a TI-RADS "
    "value is given, its 8th child is <tirads>"
)


def thyroid_tirads_score(value: str | None) -> int:
    """The reference's integer TI-RADS score for a `<tirads>` text.

    pandas reads a numeric text as a float ('4' -> '4.0'); then trailing 'a', 'b',
    'c' and then trailing '.', '0' characters are stripped: '4a' -> 4, '4.0' -> 4,
    '2' -> 2. A case without a TI-RADS value counts as '1.0' -> 1.
    """
    if value is None:
        value = "1.0"
    try:
        value = str(float(value))  # pandas' numeric type inference
    except ValueError:
        pass
    return int(value.rstrip("abc").rstrip(".0"))


def _xml_rows(root: ET.Element) -> list[dict[str, str | None]]:
    """The rows pandas.read_xml builds: one per child of the root element."""
    rows = []
    for element in root:
        row: dict[str, str | None] = dict(element.attrib)
        if element.text and element.text.strip():
            row[element.tag] = element.text.strip()
        for child in element:
            text = child.text.strip() if child.text and child.text.strip() else None
            row[child.tag] = text
        rows.append(row)
    return rows


def read_thyroid_case(xml_file: str | os.PathLike) -> tuple[str, int]:
    """(case number, TI-RADS score) of one DDTI XML file, as the reference reads it."""
    xml_file = Path(xml_file)
    try:
        rows = _xml_rows(ET.parse(xml_file).getroot())
    except ET.ParseError as error:
        raise LayoutError(f"{xml_file} is not valid XML: {error}") from error
    number = rows[0].get("number") if rows else None
    if number is None:
        raise LayoutError(
            f"{xml_file}: the root's first child is not <number>. "
            f"Expected layout: {THYROID_LAYOUT}"
        )
    case_number = str(int(float(number)))
    if not any("tirads" in row for row in rows):
        return case_number, thyroid_tirads_score(None)
    value = rows[THYROID_TIRADS_ROW].get("tirads") if len(rows) > 7 else None
    if value is None:
        # The reference crashes here (int('nan')): the value is not where it looks.
        raise LayoutError(
            f"{xml_file} has a <tirads> value, but not as child 8 of the root. "
            f"Expected layout: {THYROID_LAYOUT}"
        )
    return case_number, thyroid_tirads_score(value)


def read_thyroid(data_root: str | os.PathLike) -> list[Example]:
    """DDTI: images inner-joined on the case number with the XMLs' TI-RADS class.

    pid = the image name before '_'. malignant if TI-RADS >= 4, else benign. Images
    whose case has no XML are dropped, as in the reference's inner join (logged).
    """
    folder = Path(data_root) / THYROID_DIR
    names = _list_files(folder, [".jpg", ".xml"], THYROID_LAYOUT)
    score_by_case: dict[str, int] = {}
    for name in names:
        if name.endswith(".xml"):
            case_number, score = read_thyroid_case(folder / name)
            if case_number in score_by_case:
                raise LayoutError(
                    f"{folder / name}: case number {case_number} is in two XML files."
                )
            score_by_case[case_number] = score
    if not score_by_case:
        raise LayoutError(f"No <case>.xml in {folder}. Expected: {THYROID_LAYOUT}")
    examples, unlabelled = [], []
    for name in names:
        if not name.endswith(".jpg"):
            continue
        pid = name.split("_")[0]
        if pid not in score_by_case:
            unlabelled.append(name)
            continue
        score = score_by_case[pid]
        class_name = "malignant" if score >= THYROID_MALIGNANT_FROM else "benign"
        examples.append(
            _example("thyroid", f"{THYROID_DIR}/{name}", class_name, group=pid)
        )
    if unlabelled:
        log.warning(
            "thyroid: %d images in %s have no case XML and are dropped (e.g. %s)",
            len(unlabelled),
            folder,
            unlabelled[0],
        )
    if not examples:
        raise LayoutError(f"No image of {folder} matches a case XML.")
    return examples


# ---------------------------------------------------------------------------
# Knee MRI slices (MRNet, RadImageNet's export)

KNEE_LAYOUT = (
    f"<root>/{KNEE_DIR}/images/{{acl,meniscus}}/<exam>_sagittal_<slice>.png and the "
    f"headerless MRNet CSVs <root>/{KNEE_DIR}/{{train-acl,valid-acl,train-meniscus,"
    "valid-abnormal}.csv (exam id, 0/1)"
)


def _read_knee_labels(folder: Path, file_names: Iterable[str]) -> dict[str, int]:
    labels: dict[str, int] = {}
    for file_name in file_names:
        path = folder / file_name
        for line_number, row in enumerate(
            _read_csv_rows(path, KNEE_LAYOUT, header=False), 1
        ):
            if not row:
                continue
            if len(row) != 2:
                raise LayoutError(
                    f"{path} line {line_number}: expected 'exam id,label', got {row}."
                )
            exam_id, value = row
            if exam_id in labels:
                raise LayoutError(f"{path}: exam {exam_id} is labelled twice.")
            labels[exam_id] = int(value)
    return labels


def read_knee(data_root: str | os.PathLike) -> list[Example]:
    """MRNet slices: acl folder -> acl or normal, meniscus folder -> meniscus or normal.

    Labels are joined on the exam id (the name before '_', read as a string): the
    acl folder from train-acl + valid-acl, the meniscus folder from train-meniscus
    + valid-abnormal (sic). Slices whose exam has no label are dropped (inner join).
    """
    root = Path(data_root) / KNEE_DIR
    examples, unlabelled = [], []
    for sub_folder, label_files in KNEE_LABEL_FILES.items():
        labels = _read_knee_labels(root, label_files)
        folder = root / "images" / sub_folder
        for name in _list_files(folder, [".png"], KNEE_LAYOUT):
            exam_id = name.split("_")[0]
            if exam_id not in labels:
                unlabelled.append(f"{sub_folder}/{name}")
                continue
            class_name = "normal" if labels[exam_id] == 0 else sub_folder
            examples.append(
                _example(
                    "knee",
                    f"{KNEE_DIR}/images/{sub_folder}/{name}",
                    class_name,
                    group=exam_id,
                )
            )
    if unlabelled:
        log.warning(
            "knee: %d slices have no MRNet label and are dropped (e.g. %s)",
            len(unlabelled),
            unlabelled[0],
        )
    return examples


# ---------------------------------------------------------------------------
# Mammograms (CBIS-DDSM)

MAMMOGRAM_DICOM_DIR = "CBIS-DDSM"  # the folder TCIA's download creates
MAMMOGRAM_LAYOUT = (
    f"<root>/{MAMMOGRAM_DIR}/{{calc,mass}}_case_description_{{train,test}}_set.csv "
    "(columns patient_id, pathology, 'image file path', ...) and, for each "
    "row, its full mammogram: "
    f"<root>/{MAMMOGRAM_DIR}/images/<first component of 'image file path'>.png, or "
    f"TCIA's DICOM tree <root>/{MAMMOGRAM_DIR}/{MAMMOGRAM_DICOM_DIR}/<first "
    "component of 'image file path'>/.../*.dcm (the series 'full mammogram "
    "images'; the cropped-ROI and mask folders <name>_<k> beside it are left out)"
)
_MAMMOGRAM_COLUMNS = ("patient_id", "pathology", "image file path")


def full_mammogram_dicom(folder: Path) -> Path:
    """The full mammogram's .dcm file in a CBIS-DDSM image folder.

    The folder is named after the first component of a row's 'image file path';
    its file of the series 'full mammogram images' is the one (a lone .dcm file
    without a series description is taken as it). Cropped-ROI and ROI-mask series
    are told apart by their descriptions and left out.
    """
    from jaxtransfer.data import dicom

    files = sorted(folder.rglob("*.dcm"))
    described = {path: dicom.series_description(path) for path in files}
    full = [p for p, d in described.items() if d.lower() == dicom.FULL_MAMMOGRAM]
    if len(full) == 1:
        return full[0]
    if len(files) == 1 and not described[files[0]]:
        return files[0]
    found = sorted({d or "(none)" for d in described.values()}) or ["no .dcm file"]
    raise LayoutError(
        f"{folder}: expected one DICOM file of the series "
        f"{dicom.FULL_MAMMOGRAM!r}, found {len(full)} among {len(files)} .dcm "
        f"files (series descriptions: {', '.join(found)}). Expected layout: "
        f"{MAMMOGRAM_LAYOUT}"
    )


def read_mammograms(
    data_root: str | os.PathLike, require_images: bool = True
) -> list[Example]:
    """CBIS-DDSM: one example per abnormality row of the four case CSVs, in order.

    BENIGN_WITHOUT_CALLBACK counts as BENIGN; group = patient_id. Several rows can
    share one image (and 17 real images carry conflicting labels:
    docs/protocol.md#label-parsing); each keeps its row index within its CSV in
    `table_row`. A row's image is its PNG, or where there is none its full
    mammogram in TCIA's DICOM tree; either way the example's `paper_path` is the
    PNG's, so both layouts give the same examples and folds.

    Args:
        data_root: the data root.
        require_images: raise if a row's image is missing (the reference's Keras
            loader silently dropped such rows).
    """
    root = Path(data_root) / MAMMOGRAM_DIR
    dicoms: dict[str, str] = {}  # image name -> its .dcm, relative to the data root
    examples = []
    for csv_name in MAMMOGRAM_CSVS:
        csv_path = root / csv_name
        rows = _read_csv_rows(csv_path, MAMMOGRAM_LAYOUT)
        missing = [c for c in _MAMMOGRAM_COLUMNS if rows and c not in rows[0]]
        if missing or not rows:
            raise LayoutError(
                f"{csv_path} lacks columns {missing or list(_MAMMOGRAM_COLUMNS)}. "
                f"Expected layout: {MAMMOGRAM_LAYOUT}"
            )
        for row_index, row in enumerate(rows):
            pathology = row["pathology"]
            if pathology not in MAMMOGRAM_PATHOLOGY_TO_CLASS:
                raise LayoutError(
                    f"{csv_path} row {row_index}: unknown pathology {pathology!r}."
                )
            name = row["image file path"].split("/")[0]
            png = f"{MAMMOGRAM_DIR}/images/{name}.png"
            folder = root / MAMMOGRAM_DICOM_DIR / name
            if name not in dicoms and not (root / "images" / f"{name}.png").is_file():
                if folder.is_dir():  # else the missing PNG is reported below
                    found = full_mammogram_dicom(folder)
                    dicoms[name] = found.relative_to(data_root).as_posix()
            examples.append(
                _example(
                    "mammograms",
                    dicoms.get(name, png),
                    MAMMOGRAM_PATHOLOGY_TO_CLASS[pathology],
                    group=row["patient_id"],
                    table_row=row_index,
                    paper_path=png,
                )
            )
    if require_images:
        _require_images(Path(data_root), examples, MAMMOGRAM_LAYOUT)
    return examples


def _require_images(root: Path, examples: Sequence[Example], layout: str) -> None:
    missing = sorted({e.path for e in examples if not (root / e.path).is_file()})
    if missing:
        shown = ", ".join(str(root / p) for p in missing[:5])
        raise LayoutError(
            f"{len(missing)} image files are missing, e.g. {shown}. "
            f"Expected layout: {layout}"
        )


# ---------------------------------------------------------------------------
# PatchCamelyon (pcam-small, pcam-middle)

PCAM_PNG_LAYOUT = (
    f"<root>/{PCAM_PNG_DIR}/<i>_label=<0|1>.png (pcam_converter.py's output: i is "
    "the index within its split, train/valid/test written into one folder)"
)
PCAM_H5_LAYOUT = (
    f"<root>/{PCAM_H5_DIR}/camelyonpatch_level_2_split_{{train,valid,test}}_{{x,y}}.h5"
    " (keys x: (N, 96, 96, 3) uint8, y: (N, 1, 1, 1))"
)


def pcam_h5_file(split: str, kind: str) -> str:
    """Path of one PatchCamelyon HDF5 file relative to the data root."""
    return f"{PCAM_H5_DIR}/camelyonpatch_level_2_split_{split}_{kind}.h5"


def pcam_png_name(index: int, label: int) -> str:
    """The PNG name pcam_converter.py gives patch `index` (within its split)."""
    return f"{index}_label={label}.png"


def sample_listing(num_files: int, sample_size: int | None, random_state: int):
    """Positions of pandas' `DataFrame.sample(n, replace=False, random_state)`.

    pandas draws `RandomState(random_state).choice(num_files, n, replace=False)`
    and keeps that order. `sample_size=None` keeps every position in order.
    """
    if sample_size is None:
        return np.arange(num_files)
    if sample_size > num_files:
        raise LayoutError(
            f"Cannot sample {sample_size} PCam patches from {num_files} files."
        )
    rng = np.random.RandomState(random_state)
    return rng.choice(num_files, size=sample_size, replace=False)


def read_pcam_png(
    data_root: str | os.PathLike,
    sample_size: int | None = PCAM_SUBSETS["pcam-small"][0],
    random_state: int = PCAM_SUBSETS["pcam-small"][1],
) -> list[Example]:
    """PCam PNGs as pcam_converter.py wrote them, sampled like the reference.

    The label is the character before '.png' (1 -> yes, 0 -> no). The sample is
    drawn from the **sorted** listing: the reference sampled `os.listdir` order,
    which no one can reproduce, so the same seed picks other files than in the
    paper (docs/protocol.md#pcam-small). pcam-small: n=10000, random_state=22;
    pcam-middle: 100000, 2.
    """
    folder = Path(data_root) / PCAM_PNG_DIR
    names = _list_files(folder, [".png"], PCAM_PNG_LAYOUT)
    bad = [n for n in names if not _PCAM_PNG_NAME.match(n)]
    if bad:
        raise LayoutError(
            f"{folder / bad[0]} is not named <i>_label=<0|1>.png "
            f"({len(bad)} such files). Expected layout: {PCAM_PNG_LAYOUT}"
        )
    examples = []
    for position in sample_listing(len(names), sample_size, random_state):
        name = names[position]
        class_name = PCAM_CLASSES[int(name[-5])]
        examples.append(_example("pcam-small", f"{PCAM_PNG_DIR}/{name}", class_name))
    return examples


def _read_pcam_h5_labels(root: Path, split: str) -> np.ndarray:
    import h5py

    x_path, y_path = root / pcam_h5_file(split, "x"), root / pcam_h5_file(split, "y")
    _require_file(x_path, PCAM_H5_LAYOUT)
    _require_file(y_path, PCAM_H5_LAYOUT)
    with h5py.File(y_path, "r") as f:
        if "y" not in f:
            raise LayoutError(f"{y_path} has no dataset 'y'. Expected {PCAM_H5_LAYOUT}")
        labels = np.asarray(f["y"]).reshape(-1).astype(np.int64)
    with h5py.File(x_path, "r") as f:
        if "x" not in f or f["x"].shape[0] != len(labels):
            raise LayoutError(
                f"{x_path} needs a dataset 'x' with {len(labels)} patches, one per "
                f"label of {y_path}. Expected layout: {PCAM_H5_LAYOUT}"
            )
    if not np.isin(labels, (0, 1)).all():
        raise LayoutError(f"{y_path}: labels other than 0/1.")
    return labels


def read_pcam_h5(
    data_root: str | os.PathLike,
    sample_size: int | None = PCAM_SUBSETS["pcam-small"][0],
    random_state: int = PCAM_SUBSETS["pcam-small"][1],
    emulate_png_folder: bool = True,
) -> list[Example]:
    """PCam from the original HDF5 files, sampled as from the converter's PNG folder.

    With `emulate_png_folder`, the patches are first named as pcam_converter.py
    named them (`<i>_label=<y>.png`, i restarting per split, later splits
    overwriting earlier ones with the same name: docs/protocol.md#pcam-small), then
    sampled from the sorted names exactly as `read_pcam_png` does. So both readers
    pick the same patches from the same data, and `paper_path` names the PNG.
    Without it every patch of the three splits is kept, in split order, before
    sampling.
    """
    root = Path(data_root)
    entries: dict[str, tuple[str, int, int]] = {}  # key -> (split, index, label)
    for split in PCAM_SPLITS:
        for index, label in enumerate(_read_pcam_h5_labels(root, split)):
            key = (
                pcam_png_name(index, int(label))
                if emulate_png_folder
                else f"{split}#{index}"
            )
            entries[key] = (split, index, int(label))
    keys = sorted(entries) if emulate_png_folder else list(entries)
    examples = []
    for position in sample_listing(len(keys), sample_size, random_state):
        split, index, label = entries[keys[position]]
        paper_path = f"{PCAM_PNG_DIR}/{keys[position]}" if emulate_png_folder else ""
        examples.append(
            _example(
                "pcam-small",
                pcam_h5_file(split, "x"),
                PCAM_CLASSES[label],
                h5_index=index,
                paper_path=paper_path,
            )
        )
    return examples


def read_pcam(
    data_root: str | os.PathLike, subset: str = "pcam-small", **kwargs
) -> list[Example]:
    """pcam-small or pcam-middle from the PNG folder if present, else from HDF5."""
    sample_size, random_state = PCAM_SUBSETS[subset]
    kwargs = {"sample_size": sample_size, "random_state": random_state, **kwargs}
    root = Path(data_root)
    if (root / PCAM_PNG_DIR).is_dir():
        return read_pcam_png(root, **kwargs)
    if (root / PCAM_H5_DIR).is_dir():
        return read_pcam_h5(root, **kwargs)
    raise LayoutError(
        f"Neither {root / PCAM_PNG_DIR} nor {root / PCAM_H5_DIR} exists. Expected "
        f"layout: {PCAM_PNG_LAYOUT}, or {PCAM_H5_LAYOUT}"
    )


# ---------------------------------------------------------------------------
# Dispatch and image loading

READERS = {
    "isic": read_isic,
    "chest": read_chest,
    "breast": read_breast,
    "thyroid": read_thyroid,
    "knee": read_knee,
    "mammograms": read_mammograms,
}


# The folders a target's download puts under the data root.
TOP_FOLDERS = {
    "isic": (ISIC_DIR,),
    "chest": (CHEST_DIR,),
    "breast": (BREAST_DIR,),
    "thyroid": (THYROID_DIR,),
    "knee": (KNEE_DIR,),
    "mammograms": (MAMMOGRAM_DIR,),
    **{subset: (PCAM_PNG_DIR.split("/")[0], PCAM_H5_DIR) for subset in PCAM_SUBSETS},
}


def data_root(target: str, folder: str | os.PathLike) -> Path:
    """The data root of ``target``'s download given either the root or the
    download's own top folder (``.../chest_xray`` as well as its parent)."""
    folder = Path(folder)
    tops = TOP_FOLDERS.get(target, ())
    if folder.name in tops and not any((folder / top).exists() for top in tops):
        return folder.parent
    return folder


def read_target(target: str, data_root: str | os.PathLike, **kwargs) -> list[Example]:
    """The examples of `target` (one of `TARGETS`) under `data_root`."""
    if target in PCAM_SUBSETS:
        return read_pcam(data_root, subset=target, **kwargs)
    if target not in READERS:
        raise ValueError(f"Unknown target {target!r}; expected one of {TARGETS}.")
    return READERS[target](data_root, **kwargs)


def load_image(data_root: str | os.PathLike, example: Example) -> np.ndarray:
    """The example's image as a uint8 RGB array (H, W, 3), greyscale replicated."""
    from PIL import Image

    path = Path(data_root) / example.path
    if example.h5_index >= 0:
        import h5py

        with h5py.File(path, "r") as f:
            return np.asarray(f["x"][example.h5_index], dtype=np.uint8)
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)
