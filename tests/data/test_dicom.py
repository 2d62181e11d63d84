"""CBIS-DDSM's DICOM tree read straight in: files written by pydicom in TCIA's
layout (full mammogram, cropped ROI and ROI mask series), prepared as the PNGs of
the same images are."""

import csv
import shutil

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from jaxtransfer.data import decode, dicom, loader, prepare, sources, synthetic

MAMMOGRAPHY = "1.2.840.10008.5.1.4.1.1.1.2"  # Digital Mammography X-Ray, presentation


def _write_dicom(path, stored, *, description, photometric="MONOCHROME2", bits=16):
    """A single-frame grey MG file of ``stored`` values, as pydicom writes it."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MAMMOGRAPHY
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID = MAMMOGRAPHY
    dataset.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    dataset.Modality = "MG"
    dataset.SeriesDescription = description
    dataset.Rows, dataset.Columns = stored.shape
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = photometric
    dataset.BitsAllocated, dataset.BitsStored = 16, bits
    dataset.HighBit, dataset.PixelRepresentation = bits - 1, 0
    dataset.PixelData = np.ascontiguousarray(stored, "<u2").tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    dataset.save_as(path, enforce_file_format=True)


def test_grey_is_scaled_from_its_stored_bits_and_monochrome1_inverted(tmp_path):
    stored = np.array([[0, 257, 128 * 257], [65535, 65534, 1000]], np.uint16)
    _write_dicom(tmp_path / "m2.dcm", stored, description=dicom.FULL_MAMMOGRAM)
    expected = np.array([[0, 1, 128], [255, 255, 4]], np.uint8)  # 1000/257 = 3.9
    np.testing.assert_array_equal(dicom.read_grey(tmp_path / "m2.dcm"), expected)
    _write_dicom(tmp_path / "m1.dcm", stored, description="", photometric="MONOCHROME1")
    np.testing.assert_array_equal(dicom.read_grey(tmp_path / "m1.dcm"), 255 - expected)
    twelve = np.array([[0, 4095, 2048]], np.uint16)  # 12 bits stored: 4095 is white
    _write_dicom(tmp_path / "b12.dcm", twelve, description="", bits=12)
    np.testing.assert_array_equal(
        dicom.read_grey(tmp_path / "b12.dcm"), [[0, 255, 128]]
    )
    # Decoded as its 8-bit PNG would be: grey to RGB, nearest resize.
    decoded = decode.load_dicom(tmp_path / "m2.dcm", (4, 6))
    Image.fromarray(expected).save(tmp_path / "m2.png")
    np.testing.assert_array_equal(
        decoded.image, decode.load_image(tmp_path / "m2.png", (4, 6)).image
    )


def _dicom_download(png_root, dicom_root, *, with_mask_inside=()):
    """The same rows as a DICOM tree: each PNG's grey values x 257 (16 bits), every
    second image MONOCHROME1; cropped and mask series beside it, as the CSVs'
    paths say; for the images named in ``with_mask_inside``, a mask series inside
    the full mammogram's own folder as well."""
    source = png_root / sources.MAMMOGRAM_DIR
    target = dicom_root / sources.MAMMOGRAM_DIR
    target.mkdir(parents=True)
    tree = target / sources.MAMMOGRAM_DICOM_DIR
    written = set()
    for csv_name in sources.MAMMOGRAM_CSVS:
        shutil.copy(source / csv_name, target / csv_name)
        with open(source / csv_name, newline="") as f:
            rows = list(csv.DictReader(f))
        for row in rows:
            full = row["image file path"].strip()
            name = full.split("/")[0]
            if name in written:
                continue
            written.add(name)
            grey = np.asarray(Image.open(source / "images" / f"{name}.png"))
            stored = grey.astype(np.uint16) * 257
            photometric = "MONOCHROME1" if len(written) % 2 else "MONOCHROME2"
            if photometric == "MONOCHROME1":
                stored = 65535 - stored
            _write_dicom(
                tree / full, stored, description=dicom.FULL_MAMMOGRAM,
                photometric=photometric,
            )  # fmt: skip
            mask = (grey > grey.mean()).astype(np.uint16) * 65535
            crop = row["cropped image file path"].strip()
            _write_dicom(tree / crop, stored[:8, :8], description="cropped images")
            _write_dicom(
                tree / row["ROI mask file path"].strip(), mask,
                description="ROI mask images",
            )  # fmt: skip
            if name in with_mask_inside:
                _write_dicom(
                    (tree / full).parent.parent / "mask" / "000001.dcm", mask,
                    description="ROI mask images",
                )  # fmt: skip


def test_the_dicom_tree_prepares_as_the_png_layout_of_the_same_images(tmp_path):
    png_raw, dicom_raw = tmp_path / "png", tmp_path / "dicom"
    synthetic.write_mammograms(png_raw, image_size=48)
    first = sorted((png_raw / "mammograms" / "images").glob("*.png"))[0].stem
    _dicom_download(png_raw, dicom_raw, with_mask_inside={first})
    assert not (dicom_raw / "mammograms" / "images").exists()
    examples = sources.read_mammograms(dicom_raw)
    assert all(e.path.endswith(".dcm") for e in examples)
    assert all("_1/" not in e.path for e in examples)  # no crop or mask folder
    prepared = {}
    for name, raw in (("png", png_raw), ("dicom", dicom_raw)):
        builder = prepare.prepare(
            "mammograms", raw, tmp_path / f"out_{name}", 32, show_progress=False
        )
        prepared[name] = {
            split: loader.load_split(builder, split)
            for fold in range(1, 6)
            for split in (f"fold{fold}_train", f"fold{fold}_val", f"fold{fold}_test")
        }
    for split, png in prepared["png"].items():
        read = prepared["dicom"][split]
        np.testing.assert_array_equal(read.paths, png.paths)  # the PNGs' names
        np.testing.assert_array_equal(read.groups, png.groups)
        np.testing.assert_array_equal(read.labels, png.labels)
        np.testing.assert_array_equal(read.images, png.images)


@pytest.mark.bad_input
def test_a_folder_without_its_full_mammogram_is_named(tmp_path):
    png_raw, dicom_raw = tmp_path / "png", tmp_path / "dicom"
    synthetic.write_mammograms(png_raw, image_size=48)
    _dicom_download(png_raw, dicom_raw)
    tree = dicom_raw / "mammograms" / sources.MAMMOGRAM_DICOM_DIR
    folder = sorted(p for p in tree.iterdir() if not p.name.endswith("_1"))[0]
    for path in folder.rglob("*.dcm"):
        path.unlink()
    _write_dicom(
        folder / "s" / "1.dcm",
        np.zeros((4, 4), np.uint16),
        description="cropped images",
    )
    with pytest.raises(sources.LayoutError) as error:
        sources.read_mammograms(dicom_raw)
    message = str(error.value)
    assert str(folder) in message and "'full mammogram images'" in message
    assert "cropped images" in message


@pytest.mark.bad_input
def test_a_file_that_is_not_dicom_truncated_or_not_grey_is_named(tmp_path):
    path = tmp_path / "000000.dcm"
    path.write_text("<html>Not found</html>")
    with pytest.raises(decode.DecodeError, match=f"{path} is not a readable DICOM"):
        decode.load_dicom(path, 32)
    whole = tmp_path / "whole.dcm"
    _write_dicom(whole, np.zeros((64, 64), np.uint16), description="")
    truncated = tmp_path / "truncated.dcm"
    truncated.write_bytes(whole.read_bytes()[:-3000])
    with pytest.raises(decode.DecodeError, match=f"{truncated}: its pixels cannot"):
        decode.load_dicom(truncated, 32)
    _write_dicom(
        tmp_path / "rgb.dcm", np.zeros((2, 2), np.uint16), description="",
        photometric="YBR_FULL",
    )  # fmt: skip
    with pytest.raises(decode.DecodeError, match="'YBR_FULL'.*expected one grey frame"):
        decode.load_dicom(tmp_path / "rgb.dcm", 32)
    assert pydicom.dcmread(tmp_path / "rgb.dcm").PhotometricInterpretation == "YBR_FULL"
