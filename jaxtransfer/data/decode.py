"""Image decoding exactly as the paper's Keras loader (docs/protocol.md#preprocessing).

Keras `load_img(path, target_size=(h, w))` (the default of `flow_from_dataframe`):
PIL opens the file, converts it to RGB when its mode is not RGB (greyscale is
replicated, palettes expanded, alpha dropped), and resizes it straight to (w, h)
with `Image.NEAREST`, ignoring the aspect ratio, when its size differs. The paper
set `ImageFile.LOAD_TRUNCATED_IMAGES = True` (for the CBIS-DDSM PNGs), so a truncated
file is decoded as far as it goes, with the missing rows left as PIL fills them.
Here a truncated file is loaded the same way and flagged, so a prepare can count it.

PatchCamelyon patches read from HDF5 are already uint8 96x96x3; the paper read them
as the converter's PNGs, so another size goes through the same nearest resize.
"""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageFile

from jaxtransfer.data import dicom, sources

# PIL reads the truncation switch from this module attribute at load time; a lock
# keeps concurrent decoders from seeing each other's temporary setting.
_TRUNCATION_LOCK = threading.Lock()


class Decoded(NamedTuple):
    """A decoded image.

    Attributes:
        image: uint8 (H, W, 3) RGB pixels.
        truncated: the file was truncated and decoded only as far as it goes.
    """

    image: np.ndarray
    truncated: bool


class DecodeError(ValueError):
    """An image file cannot be decoded at all (not merely truncated)."""


def _load_pil(data: bytes, allow_truncated: bool) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    if allow_truncated:
        with _TRUNCATION_LOCK:
            previous = ImageFile.LOAD_TRUNCATED_IMAGES
            ImageFile.LOAD_TRUNCATED_IMAGES = True
            try:
                image.load()
            finally:
                ImageFile.LOAD_TRUNCATED_IMAGES = previous
    else:
        image.load()
    return image


def _resized(image: Image.Image, size: tuple[int, int] | int | None) -> Image.Image:
    """Nearest-neighbour resize to (height, width), or one int for a square."""
    if size is None:
        return image
    height, width = (size, size) if isinstance(size, int) else size
    if image.size == (width, height):
        return image
    return image.resize((width, height), Image.NEAREST)


def _to_rgb_resized(image: Image.Image, size: tuple[int, int] | None) -> np.ndarray:
    # The order of Keras' load_img: convert first, then resize (nearest).
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.asarray(_resized(image, size), dtype=np.uint8)


def _cannot_decode(name: str, error: Exception) -> str:
    reason = str(error)
    if reason.startswith("cannot identify image file"):  # PIL names its buffer
        reason = "not an image format PIL reads"
    return (
        f"Cannot decode {name}: {reason}; expected an image PIL decodes (PNG, JPEG, "
        "...)"
    )


def decode_bytes(
    data: bytes, size: tuple[int, int] | None = None, name: str = "<bytes>"
) -> Decoded:
    """Decode an encoded image (PNG, JPEG, ...) as Keras' `load_img` would.

    Args:
        data: the file's bytes.
        size: (height, width) to resize to with nearest neighbour; None keeps the
            file's size.
        name: the file's name for error messages.

    Returns:
        The uint8 (H, W, 3) image and whether the file was truncated.

    Raises:
        DecodeError: PIL cannot identify or decode the file even when truncated
            images are allowed.
    """
    if not data:
        raise DecodeError(f"{name} is empty (0 bytes): expected an image file")
    truncated = False
    try:
        image = _load_pil(data, allow_truncated=False)
    except OSError as error:  # PIL: "image file is truncated", "broken data stream"
        try:
            image = _load_pil(data, allow_truncated=True)
        except (OSError, SyntaxError, ValueError) as second:
            raise DecodeError(_cannot_decode(name, second)) from error
        truncated = True
    except (SyntaxError, ValueError) as error:
        raise DecodeError(_cannot_decode(name, error)) from error
    return Decoded(_to_rgb_resized(image, size), truncated)


def load_image(
    path: str | os.PathLike, size: tuple[int, int] | int | None = None
) -> Decoded:
    """Load an image file as Keras' `load_img(path, target_size=size)` + uint8.

    Args:
        path: the image file.
        size: (height, width), or one int for a square, or None for no resize.

    Returns:
        The uint8 (H, W, 3) image and its truncation flag.
    """
    if isinstance(size, int):
        size = (size, size)
    data = Path(path).read_bytes()
    return decode_bytes(data, size, name=os.fspath(path))


def load_dicom(
    path: str | os.PathLike, size: tuple[int, int] | int | None = None
) -> Decoded:
    """A grey DICOM image (``data.dicom.read_grey``) as if loaded from its 8-bit
    PNG: resized with nearest neighbour, grey replicated to RGB (resized first:
    the same pixels, a third of the work on a full mammogram)."""
    try:
        grey = Image.fromarray(dicom.read_grey(path))
    except ValueError as error:
        raise DecodeError(str(error)) from error
    grey = np.asarray(_resized(grey, size))  # the pixels RGB would pick
    return Decoded(np.repeat(grey[..., None], 3, axis=-1), False)


def resize_array(pixels: np.ndarray, size: tuple[int, int] | int | None) -> np.ndarray:
    """A uint8 (H, W, 3) array resized with PIL nearest, as if loaded from a PNG."""
    if isinstance(size, int):
        size = (size, size)
    pixels = np.asarray(pixels, dtype=np.uint8)
    if size is None or pixels.shape[:2] == tuple(size):
        return pixels
    return _to_rgb_resized(Image.fromarray(pixels), size)


class ExampleDecoder:
    """Decodes `sources.Example`s under one data root, keeping HDF5 files open.

    Use as a context manager, or call `close()`; safe to share between threads
    for image files (HDF5 reads take a lock, as h5py serialises them anyway).
    """

    def __init__(self, data_root: str | os.PathLike, size: int | tuple[int, int]):
        self.data_root = Path(data_root)
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        self._h5_files: dict[Path, object] = {}
        self._h5_lock = threading.Lock()

    def __call__(self, example: sources.Example) -> Decoded:
        """The example's image at `size` and its truncation flag."""
        path = self.data_root / example.path
        if example.h5_index >= 0:
            with self._h5_lock:
                patch = np.asarray(self._h5(path)["x"][example.h5_index])
            return Decoded(resize_array(patch, self.size), False)
        if path.suffix.lower() == ".dcm":
            return load_dicom(path, self.size)
        return load_image(path, self.size)

    def _h5(self, path: Path):
        if path not in self._h5_files:
            import h5py

            self._h5_files[path] = h5py.File(path, "r")
        return self._h5_files[path]

    def close(self) -> None:
        """Close the open HDF5 files."""
        for f in self._h5_files.values():
            f.close()
        self._h5_files.clear()

    def __enter__(self) -> ExampleDecoder:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
