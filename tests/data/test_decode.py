"""decode.py against Keras' own `load_img` + `img_to_array` on files written by PIL."""

import os

import numpy as np
import pytest
from PIL import Image, ImageFile

from jaxtransfer.data import decode, sources

os.environ.setdefault("KERAS_BACKEND", "jax")
keras = pytest.importorskip("keras")

SIZES = [(32, 32), (17, 23), (64, 48)]  # down, odd non-square, up


def _keras(path, size) -> np.ndarray:
    image = keras.utils.load_img(path, target_size=size)  # interpolation 'nearest'
    return keras.utils.img_to_array(image, dtype="float32")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """PNG and JPEG, grey, 16-bit grey, RGB, CMYK, palette and RGBA, and truncated
    PNG and JPEG."""
    folder = tmp_path_factory.mktemp("decode")
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (41, 37), dtype=np.uint8)
    rgb = rng.integers(0, 256, (30, 45, 3), dtype=np.uint8)
    rgba = rng.integers(0, 256, (33, 33, 4), dtype=np.uint8)
    paths = {}
    for name, pixels in {"grey": grey, "rgb": rgb}.items():
        for suffix in ("png", "jpg"):
            paths[f"{name}.{suffix}"] = folder / f"{name}.{suffix}"
            Image.fromarray(pixels).save(paths[f"{name}.{suffix}"])
    paths["palette.png"] = folder / "palette.png"
    Image.fromarray(rgb).convert("P").save(paths["palette.png"])
    paths["rgba.png"] = folder / "rgba.png"
    Image.fromarray(rgba, mode="RGBA").save(paths["rgba.png"])
    # 16-bit grey (values above 255 included) and CMYK: PIL's conversion to RGB,
    # as Keras's loader does it.
    paths["grey16.png"] = folder / "grey16.png"
    Image.fromarray(rng.integers(0, 1024, (29, 31), dtype=np.uint16)).save(
        paths["grey16.png"]
    )
    paths["cmyk.jpg"] = folder / "cmyk.jpg"
    Image.fromarray(rgb).convert("CMYK").save(paths["cmyk.jpg"])
    for name in ("grey.png", "rgb.jpg"):
        data = paths[name].read_bytes()
        truncated = folder / f"truncated_{name}"
        truncated.write_bytes(data[: len(data) * 2 // 3])
        paths[f"truncated_{name}"] = truncated
    return paths


COMPLETE = [
    "grey.png", "grey.jpg", "grey16.png", "rgb.png", "rgb.jpg", "cmyk.jpg",
    "palette.png", "rgba.png",
]  # fmt: skip


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", COMPLETE)
def test_matches_keras_load_img(files, name, size):
    decoded = decode.load_image(files[name], size)
    assert decoded.image.dtype == np.uint8
    assert decoded.image.shape == (*size, 3)
    assert not decoded.truncated
    np.testing.assert_array_equal(decoded.image, _keras(files[name], size))


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", ["truncated_grey.png", "truncated_rgb.jpg"])
def test_truncated_matches_keras_with_load_truncated_images(files, name, size):
    decoded = decode.load_image(files[name], size)
    assert decoded.truncated
    assert decoded.image.shape == (*size, 3)
    # Keras without the paper's switch cannot read the file at all.
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    with pytest.raises(OSError):
        _keras(files[name], size)
    ImageFile.LOAD_TRUNCATED_IMAGES = True  # what the paper set for mammograms
    try:
        expected = _keras(files[name], size)
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = False
    np.testing.assert_array_equal(decoded.image, expected)


def test_grey_is_replicated_and_nearest_keeps_values(files):
    image = decode.load_image(files["grey.png"], (17, 23)).image
    np.testing.assert_array_equal(image[..., 0], image[..., 1])
    np.testing.assert_array_equal(image[..., 0], image[..., 2])
    grey = np.asarray(Image.open(files["grey.png"]))
    assert set(np.unique(image)) <= set(np.unique(grey))  # nearest: no new values


def test_no_resize_keeps_the_file_size(files):
    image = decode.load_image(files["rgb.png"]).image
    assert image.shape == (30, 45, 3)
    np.testing.assert_array_equal(image, np.asarray(Image.open(files["rgb.png"])))


def test_not_an_image_raises(tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(b"not an image at all")
    with pytest.raises(decode.DecodeError, match="broken.png"):
        decode.load_image(path, 8)


@pytest.mark.parametrize("size", [96, 32])
def test_pcam_h5_patch_is_as_the_converter_png_through_keras(tmp_path, size):
    """An HDF5 patch equals Keras loading the converter's PNG of the same patch."""
    from jaxtransfer.data import synthetic

    synthetic.write_pcam_h5(tmp_path, {"train": [0, 1], "valid": [1], "test": [0]})
    example = sources.read_pcam_h5(tmp_path, sample_size=None)[0]
    with decode.ExampleDecoder(tmp_path, size) as decoder:
        decoded = decoder(example)
    patch = sources.load_image(tmp_path, example)
    png = tmp_path / "patch.png"
    Image.fromarray(patch).save(png)  # what pcam_converter.py wrote
    np.testing.assert_array_equal(decoded.image, _keras(png, (size, size)))
