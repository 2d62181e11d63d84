"""Small synthetic raw downloads in each target's real layout, for tests and demos.

Each `write_<target>(data_root, spec=None, ...)` writes the files a user would have
after downloading that target (docs/protocol.md#targets): the same folders, file names,
label
CSVs, XML and HDF5 files, quirks included (chest `NORMAL2-IM-x` next to `IM-x` and
`.DS_Store` litter, BUSI `_mask` files and `normal (n).png`, DDTI XML with and without
TI-RADS, MRNet's `valid-abnormal.csv`, CBIS-DDSM's `BENIGN_WITHOUT_CALLBACK` and
shared images, PCam's HDF5 files and the converter's colliding PNG names).

Images are drawn so that the class is learnable: the mean intensity rises with the
class index, a stripe pattern's frequency encodes it too, and Gaussian noise is added.
`write_breast` can make the task harder (`class_signal` < 1 shrinks both cues,
`brightness_jitter` hides the brightness cue behind a random per-image offset), so
that a demo's settings differ in AUC instead of all scoring 100.
They are greyscale where the real images are (chest, knee, mammograms) and RGB
otherwise. A spec argument fixes exactly what is written; the default specs are small.

Every writer returns the `SyntheticImage`s it wrote with the class and group it meant
them to have. Those truths come from the spec and from literal tables here, never
from the readers in `sources.py`, so tests can compare the two.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from jaxtransfer.data import sources
from jaxtransfer.runtime import files as runtime_files

DEFAULT_IMAGE_SIZE = 32
PCAM_IMAGE_SIZE = 96


@dataclasses.dataclass(frozen=True)
class SyntheticImage:
    """One image a writer produced, with the class and group it was meant to have.

    Attributes:
        path: posix path relative to the data root (the `_x.h5` file for PCam HDF5).
        class_name: the intended class.
        group: the intended patient id ('' where none).
        table_row: row within its label CSV (mammograms), -1 otherwise.
        h5_index: row in the HDF5 file, -1 for image files.
    """

    path: str
    class_name: str
    group: str = ""
    table_row: int = -1
    h5_index: int = -1


def draw_image(
    class_index: int,
    num_classes: int,
    size: int,
    rng: np.random.Generator,
    channels: int = 1,
    class_signal: float = 1.0,
    brightness_jitter: float = 0.0,
) -> np.ndarray:
    """A uint8 (size, size[, 3]) image whose brightness and stripes encode the class.

    `class_signal` scales the class's brightness offset from mid-grey (125) and its
    stripes' amplitude; `brightness_jitter` is the sd of a random per-image offset.
    The defaults draw exactly the images of earlier versions (same random stream).
    """
    level = 50.0 + 150.0 * class_index / max(num_classes - 1, 1)
    columns = np.arange(size)[None, :]
    stripes = 20.0 * np.sin(2 * np.pi * (class_index + 1) * columns / size)
    if class_signal != 1.0:  # both cues shrink towards mid-grey
        level = 125.0 + class_signal * (level - 125.0)
        stripes = class_signal * stripes
    noise = rng.normal(0.0, 12.0, (size, size))
    grey = level + stripes + noise  # (size, size)
    if brightness_jitter:
        grey = grey + rng.normal(0.0, brightness_jitter)
    if channels == 3:
        tint = rng.normal(0.0, 4.0, (1, 1, 3))
        grey = grey[..., None] + tint  # (size, size, 3)
    return np.clip(np.rint(grey), 0, 255).astype(np.uint8)


def _save(
    path: Path,
    class_name: str,
    classes: Sequence[str],
    size: int,
    rng: np.random.Generator,
    channels: int,
    **style: float,
) -> None:
    from PIL import Image

    pixels = draw_image(
        classes.index(class_name), len(classes), size, rng, channels, **style
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    with runtime_files.naming(path):
        Image.fromarray(pixels).save(path)


def _write_csv(path: Path, rows: Sequence[Sequence[object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)


# ---------------------------------------------------------------------------
# ISIC


def default_isic_labels(
    num_nevi: int = 25, num_per_other_class: int = 3
) -> list[tuple[str, ...]]:
    """One class per image, NV dominant as in HAM10000 (the inner stratified split
    needs one class with at least 25 images)."""
    counts = {c: num_per_other_class for c in sources.ISIC_CLASSES} | {"NV": num_nevi}
    labels = [(c,) for c in sources.ISIC_CLASSES for _ in range(counts[c])]
    return labels[::2] + labels[1::2]


def write_isic(
    data_root: str | os.PathLike,
    labels: Sequence[Sequence[str]] | None = None,
    *,
    image_size: int = DEFAULT_IMAGE_SIZE,
    seed: int = 0,
) -> list[SyntheticImage]:
    """ISIC 2018 task 3: JPEGs, the one-hot ground-truth CSV, LICENSE/ATTRIBUTION.

    Args:
        data_root: where to write (`ISIC2018/` is created inside).
        labels: per image, the classes whose column is 1.0. One class is the real
            case; several make a multi-hot row, where the reader's first-of
            MEL..VASC rule decides. The returned class (and the drawn image) is the
            first one named.
        image_size: image side in pixels.
        seed: seed of the pixel noise.
    """
    root, rng = Path(data_root), np.random.default_rng(seed)
    labels = default_isic_labels() if labels is None else labels
    header = ["image", *sources.ISIC_LABEL_PRIORITY]
    rows, written = [header], []
    for i, positives in enumerate(labels):
        image_id = f"ISIC_{24306 + i:07d}"
        path = f"{sources.ISIC_IMAGE_DIR}/{image_id}.jpg"
        _save(root / path, positives[0], sources.ISIC_CLASSES, image_size, rng, 3)
        columns = ["1.0" if c in positives else "0.0" for c in header[1:]]
        rows.append([image_id, *columns])
        written.append(SyntheticImage(path, positives[0]))
    _write_csv(root / sources.ISIC_LABEL_FILE, rows)
    for name in ("LICENSE.txt", "ATTRIBUTION.txt"):
        (root / sources.ISIC_IMAGE_DIR / name).write_text("synthetic\n")
    return written


# ---------------------------------------------------------------------------
# Chest X-ray


class ChestFile(NamedTuple):
    """One chest JPEG: its split folder, class folder, name and intended patient id."""

    split: str
    class_name: str
    file_name: str
    patient_id: str


def default_chest_files(num_patients: int = 24) -> list[ChestFile]:
    """Normal patients as `IM-<id>-<k>` and `NORMAL2-IM-<id>-<k>`, pneumonia as
    `person<n>_{bacteria,virus}_<k>`; every class folder of every split non-empty."""
    files = []
    for n in range(num_patients):
        split = sources.CHEST_SPLITS[n % 3]
        if n % 2 == 0:
            pid = f"{686 + n:04d}"
            files.append(ChestFile(split, "NORMAL", f"IM-{pid}-0001.jpeg", pid))
            # the same patient under the NORMAL2- prefix
            # (docs/protocol.md#label-parsing)
            if n % 4 == 0:
                files.append(
                    ChestFile(split, "NORMAL", f"NORMAL2-IM-{pid}-0001.jpeg", pid)
                )
        else:
            pid = f"person{1000 + n}"
            kind = "bacteria" if n % 3 else "virus"
            files.append(
                ChestFile(split, "PNEUMONIA", f"{pid}_{kind}_{2931 + n}.jpeg", pid)
            )
            files.append(
                ChestFile(split, "PNEUMONIA", f"{pid}_{kind}_{2932 + n}.jpeg", pid)
            )
    return files


def write_chest(
    data_root: str | os.PathLike,
    files: Sequence[ChestFile] | None = None,
    *,
    image_size: int = DEFAULT_IMAGE_SIZE,
    seed: int = 0,
) -> list[SyntheticImage]:
    """chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}/*.jpeg plus `.DS_Store` litter."""
    root, rng = Path(data_root), np.random.default_rng(seed)
    files = default_chest_files() if files is None else files
    written = []
    for file in files:
        path = f"{sources.CHEST_DIR}/{file.split}/{file.class_name}/{file.file_name}"
        _save(root / path, file.class_name, sources.CHEST_CLASSES, image_size, rng, 1)
        written.append(SyntheticImage(path, file.class_name, file.patient_id))
    chest = root / sources.CHEST_DIR
    for folder in (chest, chest / "train", chest / "train" / "NORMAL"):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    return written


# ---------------------------------------------------------------------------
# Breast ultrasound (BUSI)

# BUSI's three kinds and the class each gets (normal counts as benign).
BREAST_KIND_CLASS = {"benign": "benign", "malignant": "malignant", "normal": "benign"}


def write_breast(
    data_root: str | os.PathLike,
    counts: Mapping[str, int] | None = None,
    *,
    masks: bool = True,
    image_size: int = DEFAULT_IMAGE_SIZE,
    seed: int = 0,
    class_signal: float = 1.0,
    brightness_jitter: float = 0.0,
) -> list[SyntheticImage]:
    """breast/{benign,malignant,normal} (n).png with their `_mask` files.

    Args:
        data_root: where to write.
        counts: images per kind, default benign 16, malignant 12, normal 10.
        masks: also write `<name>_mask.png` (and `_mask_1.png` for every third).
        image_size: image side in pixels.
        seed: seed of the pixel noise.
        class_signal: strength of the class cues (`draw_image`); 1 is easy.
        brightness_jitter: sd of a random per-image brightness offset.
    """
    root, rng = Path(data_root), np.random.default_rng(seed)
    counts = {"benign": 16, "malignant": 12, "normal": 10} if counts is None else counts
    folder = root / sources.BREAST_DIR
    written = []
    for kind, count in counts.items():
        class_name = BREAST_KIND_CLASS[kind]
        for n in range(1, count + 1):
            name = f"{kind} ({n})"
            _save(
                folder / f"{name}.png",
                class_name,
                sources.BREAST_CLASSES,
                image_size,
                rng,
                3,
                class_signal=class_signal,
                brightness_jitter=brightness_jitter,
            )
            written.append(
                SyntheticImage(f"{sources.BREAST_DIR}/{name}.png", class_name)
            )
            if masks:
                mask_names = [f"{name}_mask.png"] + [f"{name}_mask_1.png"] * (
                    n % 3 == 0
                )
                for mask_name in mask_names:
                    _save(
                        folder / mask_name,
                        "malignant",
                        sources.BREAST_CLASSES,
                        image_size,
                        rng,
                        1,
                    )
    return written


# ---------------------------------------------------------------------------
# Thyroid ultrasound (DDTI)

# TI-RADS texts the writer knows, with the class the paper's rule gives them
# (malignant from 4 up); None is an empty <tirads/>.
THYROID_TIRADS_CLASS = {
    "2": "benign",
    "3": "benign",
    "4": "malignant",
    "4.0": "malignant",
    "4a": "malignant",
    "4b": "malignant",
    "4c": "malignant",
    "5": "malignant",
    None: "benign",
}


class ThyroidCase(NamedTuple):
    """One DDTI case: `<number>.xml` plus `<number>_<k>.jpg` for k = 1..num_images.

    Attributes:
        number: the case number (XML `<number>` and image name prefix).
        tirads: the `<tirads>` text, a key of `THYROID_TIRADS_CLASS`.
        num_images: images of the case (0: an XML without images).
        tirads_element: False leaves `<tirads>` out of the XML altogether.
        tirads_child: 0-based position of `<tirads>` among the root's children
            (the reference reads position 7).
    """

    number: int
    tirads: str | None
    num_images: int = 1
    tirads_element: bool = True
    tirads_child: int = 7


def default_thyroid_cases(num_cases: int = 24) -> list[ThyroidCase]:
    """Cases cycling through every TI-RADS text, with 1-2 images each, one XML-only
    case and one case without a `<tirads>` element."""
    texts = list(THYROID_TIRADS_CLASS)
    cases = [
        ThyroidCase(n, texts[n % len(texts)], num_images=1 + n % 2)
        for n in range(1, num_cases + 1)
    ]
    cases.append(ThyroidCase(num_cases + 1, None, tirads_element=False))
    cases.append(ThyroidCase(num_cases + 2, "4a", num_images=0))
    return cases


def _thyroid_xml(case: ThyroidCase) -> str:
    children = [
        f"<number>{case.number}</number>",
        "<age>49</age>",
        "<sex>F</sex>",
        "<composition>solid</composition>",
        "<echogenicity>hypoechogenicity</echogenicity>",
        "<margins>well defined</margins>",
        "<calcifications>non</calcifications>",
        "<reportbacaf></reportbacaf>",
        "<reporteco></reporteco>",
    ]
    if case.tirads_element:
        text = "" if case.tirads is None else case.tirads
        children.insert(case.tirads_child, f"<tirads>{text}</tirads>")
    for k in range(1, max(case.num_images, 1) + 1):
        svg = '[{"points": [{"x": 10, "y": 12}, {"x": 20, "y": 22}]}]'
        children.append(f"<mark><image>{k}</image><svg>{svg}</svg></mark>")
    body = "\n  ".join(children)
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<case>\n  {body}\n</case>\n'


def write_thyroid(
    data_root: str | os.PathLike,
    cases: Sequence[ThyroidCase] | None = None,
    *,
    orphan_images: int = 1,
    image_size: int = DEFAULT_IMAGE_SIZE,
    seed: int = 0,
) -> list[SyntheticImage]:
    """thyroid/<case>.xml and thyroid/<case>_<k>.jpg in one flat folder.

    Args:
        data_root: where to write.
        cases: the cases, default `default_thyroid_cases()`.
        orphan_images: extra images whose case has no XML (the reader's inner
            join drops them; they are not in the returned list).
        image_size: image side in pixels.
        seed: seed of the pixel noise.
    """
    root, rng = Path(data_root), np.random.default_rng(seed)
    cases = default_thyroid_cases() if cases is None else cases
    folder = root / sources.THYROID_DIR
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for case in cases:
        (folder / f"{case.number}.xml").write_text(_thyroid_xml(case))
        class_name = THYROID_TIRADS_CLASS[case.tirads]
        for k in range(1, case.num_images + 1):
            name = f"{case.number}_{k}.jpg"
            _save(
                folder / name, class_name, sources.THYROID_CLASSES, image_size, rng, 3
            )
            written.append(
                SyntheticImage(
                    f"{sources.THYROID_DIR}/{name}", class_name, str(case.number)
                )
            )
    last = max((case.number for case in cases), default=0)
    for n in range(orphan_images):
        name = f"{last + 100 + n}_1.jpg"
        _save(folder / name, "benign", sources.THYROID_CLASSES, image_size, rng, 3)
    return written


# ---------------------------------------------------------------------------
# Knee (MRNet sagittal slices)

# (image sub-folder, MRNet 0/1 label in the file the paper reads) -> class.
KNEE_FOLDER_LABEL_CLASS = {
    ("acl", 1): "acl",
    ("acl", 0): "normal",
    ("meniscus", 1): "meniscus",
    ("meniscus", 0): "normal",
}


class KneeExam(NamedTuple):
    """One MRNet exam exported into one image sub-folder.

    Attributes:
        exam_id: the MRNet exam number (4-digit prefix of the slice names).
        folder: 'acl' or 'meniscus'.
        split: 'train' or 'valid' (which MRNet CSV holds its label).
        label: the 0/1 label in the CSV the paper reads for that folder and split
            (valid meniscus exams: valid-abnormal.csv; valid-meniscus.csv gets the
            opposite value as a decoy).
        num_slices: slices written.
    """

    exam_id: int
    folder: str
    split: str
    label: int
    num_slices: int = 1


def default_knee_exams(num_exams: int = 24) -> list[KneeExam]:
    """Exams alternating between the folders and labels, a few valid ones, and one
    exam id exported into both folders."""
    exams = []
    for n in range(num_exams):
        folder = ("acl", "meniscus")[n % 2]
        split = "valid" if n % 5 == 4 else "train"
        exam_id = 1130 + n if split == "valid" else n
        exams.append(KneeExam(exam_id, folder, split, (n // 2) % 2, 1 + n % 2))
    exams.append(KneeExam(0, "meniscus", "train", 1, 1))  # exam 0 is in both folders
    return exams


def write_knee(
    data_root: str | os.PathLike,
    exams: Sequence[KneeExam] | None = None,
    *,
    unlabelled_slices: int = 1,
    image_size: int = DEFAULT_IMAGE_SIZE,
    seed: int = 0,
) -> list[SyntheticImage]:
    """knee/images/{acl,meniscus}/<exam>_sagittal_<slice>.png and the MRNet CSVs.

    Writes the headerless train-acl, valid-acl, train-meniscus, valid-abnormal and
    (decoy) valid-meniscus CSVs, with rows also for exams that have no slices.

    Args:
        data_root: where to write.
        exams: the exams, default `default_knee_exams()`.
        unlabelled_slices: extra slices of an exam in no CSV (dropped by the
            reader's inner join; not returned).
        image_size: image side in pixels.
        seed: seed of the pixel noise.
    """
    root, rng = Path(data_root), np.random.default_rng(seed)
    exams = default_knee_exams() if exams is None else exams
    folder = root / sources.KNEE_DIR
    label_of = {(e.exam_id, e.folder): e.label for e in exams}
    split_of = {e.exam_id: e.split for e in exams}
    # Every exam of a split is in each of that split's CSVs, as in MRNet; plus two
    # exams without slices.
    split_of.update({990: "train", 1990: "valid"})
    csv_rows: dict[str, list[list[str]]] = {}
    for exam_id, split in sorted(split_of.items()):
        acl = label_of.get((exam_id, "acl"), exam_id % 2)
        meniscus = label_of.get((exam_id, "meniscus"), (exam_id + 1) % 2)
        if split == "train":
            csv_rows.setdefault("train-acl.csv", []).append([f"{exam_id:04d}", acl])
            csv_rows.setdefault("train-meniscus.csv", []).append(
                [f"{exam_id:04d}", meniscus]
            )
        else:
            csv_rows.setdefault("valid-acl.csv", []).append([f"{exam_id:04d}", acl])
            csv_rows.setdefault("valid-abnormal.csv", []).append(
                [f"{exam_id:04d}", meniscus]
            )
            csv_rows.setdefault("valid-meniscus.csv", []).append(
                [f"{exam_id:04d}", 1 - meniscus]
            )
    for name in (
        "train-acl.csv",
        "valid-acl.csv",
        "train-meniscus.csv",
        "valid-abnormal.csv",
        "valid-meniscus.csv",
    ):
        _write_csv(folder / name, csv_rows.get(name, []))
    written = []
    for exam in exams:
        class_name = KNEE_FOLDER_LABEL_CLASS[(exam.folder, exam.label)]
        for k in range(exam.num_slices):
            name = f"{exam.exam_id:04d}_sagittal_{10 + k:.6f}.png"
            path = f"{sources.KNEE_DIR}/images/{exam.folder}/{name}"
            _save(root / path, class_name, sources.KNEE_CLASSES, image_size, rng, 1)
            written.append(SyntheticImage(path, class_name, f"{exam.exam_id:04d}"))
    for k in range(unlabelled_slices):
        path = folder / "images" / "acl" / f"9999_sagittal_{k:.6f}.png"
        _save(path, "normal", sources.KNEE_CLASSES, image_size, rng, 1)
    return written


# ---------------------------------------------------------------------------
# Mammograms (CBIS-DDSM)

MAMMOGRAM_IMAGE_PREFIX = {
    "calc_case_description_train_set.csv": "Calc-Training",
    "calc_case_description_test_set.csv": "Calc-Test",
    "mass_case_description_train_set.csv": "Mass-Training",
    "mass_case_description_test_set.csv": "Mass-Test",
}
_CALC_COLUMNS = [
    "patient_id",
    "breast density",
    "left or right breast",
    "image view",
    "abnormality id",
    "abnormality type",
    "calc type",
    "calc distribution",
    "assessment",
    "pathology",
    "subtlety",
    "image file path",
    "cropped image file path",
    "ROI mask file path",
]
_MASS_COLUMNS = [
    "patient_id",
    "breast_density",
    "left or right breast",
    "image view",
    "abnormality id",
    "abnormality type",
    "mass shape",
    "mass margins",
    "assessment",
    "pathology",
    "subtlety",
    "image file path",
    "cropped image file path",
    "ROI mask file path",
]
# CBIS-DDSM pathologies and the class the paper gives them.
MAMMOGRAM_PATHOLOGY_CLASS = {
    "BENIGN": "BENIGN",
    "BENIGN_WITHOUT_CALLBACK": "BENIGN",
    "MALIGNANT": "MALIGNANT",
}


class MammogramRow(NamedTuple):
    """One abnormality row of a CBIS-DDSM case-description CSV.

    Attributes:
        csv_name: one of `sources.MAMMOGRAM_CSVS`.
        patient_id: e.g. 'P_00005'.
        side: 'LEFT' or 'RIGHT'.
        view: 'CC' or 'MLO'.
        pathology: 'BENIGN', 'BENIGN_WITHOUT_CALLBACK' or 'MALIGNANT'.
    """

    csv_name: str
    patient_id: str
    side: str
    view: str
    pathology: str


def mammogram_image_stem(row: MammogramRow) -> str:
    """e.g. 'Calc-Training_P_00005_RIGHT_CC' (the image's DICOM folder name)."""
    prefix = MAMMOGRAM_IMAGE_PREFIX[row.csv_name]
    return f"{prefix}_{row.patient_id}_{row.side}_{row.view}"


def default_mammogram_rows(num_patients: int = 24) -> list[MammogramRow]:
    """Patients spread over the four CSVs with one or two views; some images with
    two abnormality rows (one pair with conflicting pathologies)."""
    pathologies = list(MAMMOGRAM_PATHOLOGY_CLASS)
    rows = []
    for n in range(num_patients):
        csv_name = sources.MAMMOGRAM_CSVS[n % 4]
        patient_id = f"P_{5 + 3 * n:05d}"
        pathology = pathologies[n % 3]
        for view in ("CC", "MLO")[: 1 + n % 2]:
            rows.append(MammogramRow(csv_name, patient_id, "RIGHT", view, pathology))
        if n % 5 == 0:  # a second abnormality on the same image
            rows.append(MammogramRow(csv_name, patient_id, "RIGHT", "CC", pathology))
        if n == 7:  # conflicting labels on one image (docs/protocol.md#label-parsing)
            rows.append(MammogramRow(csv_name, patient_id, "RIGHT", "CC", "MALIGNANT"))
    return rows


def write_mammograms(
    data_root: str | os.PathLike,
    rows: Sequence[MammogramRow] | None = None,
    *,
    image_size: int = DEFAULT_IMAGE_SIZE,
    seed: int = 0,
) -> list[SyntheticImage]:
    """mammograms/{calc,mass}_case_description_{train,test}_set.csv and images/*.png.

    The CSVs carry the real column sets (calc and mass differ), DICOM-style
    'image file path' values and 'cropped image file path' values with an embedded
    newline, as in the real files. Every CSV is written, empty ones with a header.
    """
    root, rng = Path(data_root), np.random.default_rng(seed)
    rows = default_mammogram_rows() if rows is None else rows
    folder = root / sources.MAMMOGRAM_DIR
    by_csv: dict[str, list[MammogramRow]] = {
        name: [] for name in sources.MAMMOGRAM_CSVS
    }
    for row in rows:
        by_csv[row.csv_name].append(row)
    written, drawn = [], set()
    for csv_name, csv_rows in by_csv.items():
        columns = _CALC_COLUMNS if csv_name.startswith("calc") else _MASS_COLUMNS
        table = [columns]
        for row_index, row in enumerate(csv_rows):
            stem = mammogram_image_stem(row)
            uid = f"1.3.6.1.4.1.9590.100.1.2.{zlib.crc32(stem.encode())}"
            values = {
                "patient_id": row.patient_id,
                "left or right breast": row.side,
                "image view": row.view,
                "abnormality id": 1,
                "abnormality type": "calcification" if "calc" in csv_name else "mass",
                "assessment": 4,
                "pathology": row.pathology,
                "subtlety": 3,
                "image file path": f"{stem}/{uid}.1/{uid}.2/000000.dcm",
                "cropped image file path": f"{stem}_1/{uid}.3/{uid}.4/000000.dcm\n",
                "ROI mask file path": f"{stem}_1/{uid}.3/{uid}.5/000001.dcm",
            }
            table.append([values.get(column, "") for column in columns])
            class_name = MAMMOGRAM_PATHOLOGY_CLASS[row.pathology]
            path = f"{sources.MAMMOGRAM_DIR}/images/{stem}.png"
            if path not in drawn:  # an image shared by rows is drawn once
                drawn.add(path)
                _save(
                    root / path,
                    class_name,
                    sources.MAMMOGRAM_CLASSES,
                    image_size,
                    rng,
                    1,
                )
            written.append(SyntheticImage(path, class_name, row.patient_id, row_index))
        _write_csv(folder / csv_name, table)
    return written


# ---------------------------------------------------------------------------
# PatchCamelyon


def default_pcam_labels(
    sizes: Mapping[str, int] | None = None, seed: int = 0
) -> dict[str, list[int]]:
    """Random 0/1 labels per split (default train 60, valid 12, test 12)."""
    sizes = {"train": 60, "valid": 12, "test": 12} if sizes is None else sizes
    rng = np.random.default_rng(seed + 1)
    return {split: rng.integers(0, 2, size=n).tolist() for split, n in sizes.items()}


def pcam_patches(
    labels: Mapping[str, Sequence[int]],
    image_size: int = PCAM_IMAGE_SIZE,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """The RGB patches (N, size, size, 3) uint8 per split, for the given labels."""
    rng = np.random.default_rng(seed)
    return {
        split: np.stack(
            [draw_image(y, 2, image_size, rng, channels=3) for y in split_labels]
        ).reshape(-1, image_size, image_size, 3)
        for split, split_labels in labels.items()
    }


def write_pcam_h5(
    data_root: str | os.PathLike,
    labels: Mapping[str, Sequence[int]] | None = None,
    *,
    image_size: int = PCAM_IMAGE_SIZE,
    seed: int = 0,
) -> list[SyntheticImage]:
    """PCam_raw/camelyonpatch_level_2_split_{train,valid,test}_{x,y}.h5 via h5py.

    x: (N, size, size, 3) uint8, y: (N, 1, 1, 1) uint8, as the original files.
    """
    import h5py

    root = Path(data_root)
    labels = default_pcam_labels(seed=seed) if labels is None else labels
    patches = pcam_patches(labels, image_size, seed)
    written = []
    for split in sources.PCAM_SPLITS:
        split_labels = np.asarray(labels[split], dtype=np.uint8).reshape(-1, 1, 1, 1)
        x_file, y_file = (
            sources.pcam_h5_file(split, "x"),
            sources.pcam_h5_file(split, "y"),
        )
        (root / x_file).parent.mkdir(parents=True, exist_ok=True)
        with h5py.File(root / x_file, "w") as f:
            f.create_dataset("x", data=patches[split])
        with h5py.File(root / y_file, "w") as f:
            f.create_dataset("y", data=split_labels)
        for index, y in enumerate(labels[split]):
            written.append(
                SyntheticImage(x_file, sources.PCAM_CLASSES[y], h5_index=index)
            )
    return written


def write_pcam_png(
    data_root: str | os.PathLike,
    labels: Mapping[str, Sequence[int]] | None = None,
    *,
    image_size: int = PCAM_IMAGE_SIZE,
    seed: int = 0,
) -> list[SyntheticImage]:
    """PCam/png_images/<i>_label=<y>.png as pcam_converter.py writes them.

    The same patches as `write_pcam_h5` with the same labels and seed. i restarts in
    every split and the splits go into one folder in train, valid, test order, so a
    later patch overwrites an earlier one with the same index and label
    (docs/protocol.md#pcam-small). The
    returned list holds the surviving files.
    """
    from PIL import Image

    root = Path(data_root)
    labels = default_pcam_labels(seed=seed) if labels is None else labels
    patches = pcam_patches(labels, image_size, seed)
    folder = root / sources.PCAM_PNG_DIR
    folder.mkdir(parents=True, exist_ok=True)
    surviving: dict[str, str] = {}
    for split in sources.PCAM_SPLITS:
        for index, y in enumerate(labels[split]):
            name = f"{index}_label={y}.png"
            Image.fromarray(patches[split][index]).save(folder / name)
            surviving[name] = sources.PCAM_CLASSES[y]
    return [
        SyntheticImage(f"{sources.PCAM_PNG_DIR}/{name}", class_name)
        for name, class_name in surviving.items()
    ]


# ---------------------------------------------------------------------------

WRITERS = {
    "isic": write_isic,
    "chest": write_chest,
    "breast": write_breast,
    "thyroid": write_thyroid,
    "knee": write_knee,
    "mammograms": write_mammograms,
    "pcam-small": write_pcam_png,
    "pcam-middle": write_pcam_png,
}


def write_target(
    target: str, data_root: str | os.PathLike, **kwargs
) -> list[SyntheticImage]:
    """A small raw download of `target` under `data_root` (PCam: the PNG layout)."""
    if target not in WRITERS:
        raise ValueError(f"Unknown target {target!r}; expected one of {tuple(WRITERS)}")
    return WRITERS[target](data_root, **kwargs)
