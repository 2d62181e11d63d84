"""CBIS-DDSM's DICOM files read straight in with pydicom (docs/protocol.md#mammograms).

The paper converted every full mammogram to a PNG by a step it did not record;
reading the DICOM tree as TCIA delivers it removes that step. Two things are read:
a file's series description, which tells the full mammogram from the cropped-ROI
and ROI-mask series of the same download, and its grey pixels, as 8-bit.

Pixels: the stored values (``BitsStored`` bits, 16 in CBIS-DDSM), MONOCHROME1
inverted so that 0 is black as in MONOCHROME2, then scaled linearly from the
stored range to 0..255 and rounded. No VOI window is applied: the linear map keeps
every image's intensities on one scale.
"""

from __future__ import annotations

import os

import numpy as np

# TCIA's series descriptions in CBIS-DDSM.
FULL_MAMMOGRAM = "full mammogram images"
GREY = ("MONOCHROME1", "MONOCHROME2")


def series_description(path: str | os.PathLike) -> str:
    """A DICOM file's SeriesDescription ('' when absent), read without pixels."""
    import pydicom

    header = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=[
        "SeriesDescription"
    ])  # fmt: skip
    return str(header.get("SeriesDescription", "")).strip()


def read_grey(path: str | os.PathLike) -> np.ndarray:
    """A grey DICOM image as uint8 (H, W): inverted if MONOCHROME1, scaled from its
    stored bit range to 0..255.

    Raises:
        ValueError: not a DICOM file, no pixels, or not single-frame grey; the
            message names the file and what was expected.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        dataset = pydicom.dcmread(path)
    except (InvalidDicomError, EOFError, OSError) as error:
        raise ValueError(
            f"{os.fspath(path)} is not a readable DICOM file ({error}); expected a "
            "DICOM file as TCIA delivers CBIS-DDSM"
        ) from error
    photometric = str(dataset.get("PhotometricInterpretation", ""))
    if photometric not in GREY or "PixelData" not in dataset:
        raise ValueError(
            f"{os.fspath(path)}: PhotometricInterpretation {photometric!r}"
            f"{'' if 'PixelData' in dataset else ', no pixel data'}; expected one "
            f"grey frame ({' or '.join(GREY)})"
        )
    try:
        pixels = dataset.pixel_array
    except (ValueError, RuntimeError, NotImplementedError) as error:
        raise ValueError(
            f"{os.fspath(path)}: its pixels cannot be read ({error}); expected the "
            "complete file of an uncompressed or pydicom-decodable grey image "
            "(a truncated download?)"
        ) from error
    if pixels.ndim != 2:
        raise ValueError(
            f"{os.fspath(path)}: pixel array of shape {pixels.shape}; expected one "
            "grey frame (rows, columns)"
        )
    bits = int(dataset.get("BitsStored", 8 * pixels.dtype.itemsize))
    top = (1 << bits) - 1
    # Integers (a full mammogram is some 15 million pixels): round half up, which
    # is exact rounding here, as 255 * value / top never ends in .5 (top is odd).
    values = np.clip(pixels, 0, top).astype(np.uint32)
    if photometric == "MONOCHROME1":  # 0 is white: invert to MONOCHROME2
        values = top - values
    return ((values * 255 + top // 2) // top).astype(np.uint8)
