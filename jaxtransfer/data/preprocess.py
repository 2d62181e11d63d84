"""Pixel preprocessing of the pretrained sources, applied to 0..255 RGB images.

``caffe`` is Keras ``imagenet_utils.preprocess_input``'s default mode, used by the
study for ImageNet, RadImageNet and random init alike (docs/protocol.md#preprocessing):
RGB -> BGR,
subtract the BGR means, no scaling. ``torch`` is torchvision's: scale to [0, 1],
subtract the RGB means and divide by the RGB standard deviations.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp

CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
TORCH_RGB_MEAN = (0.485, 0.456, 0.406)
TORCH_RGB_STD = (0.229, 0.224, 0.225)


def caffe(images: jax.Array) -> jax.Array:
    """Keras 'caffe' mode: (..., H, W, 3) RGB in 0..255 -> BGR minus the means."""
    images = jnp.asarray(images, jnp.float32)
    return images[..., ::-1] - jnp.asarray(CAFFE_BGR_MEAN, jnp.float32)


def torch(images: jax.Array) -> jax.Array:
    """torchvision normalisation of (..., H, W, 3) RGB images in 0..255."""
    images = jnp.asarray(images, jnp.float32) / 255.0
    mean = jnp.asarray(TORCH_RGB_MEAN, jnp.float32)
    return (images - mean) / jnp.asarray(TORCH_RGB_STD, jnp.float32)


PREPROCESSORS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "caffe": caffe,
    "torch": torch,
}


def get(mode: str) -> Callable[[jax.Array], jax.Array]:
    """The preprocessing function named ``mode`` (a checkpoint's ``preprocessing``)."""
    if mode not in PREPROCESSORS:
        raise ValueError(
            f"unknown preprocessing {mode!r}; known: {sorted(PREPROCESSORS)}"
        )
    return PREPROCESSORS[mode]
