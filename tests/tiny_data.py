"""Tiny learnable splits on device for training tests (class = brightness)."""

import jax.numpy as jnp
import numpy as np

from jaxtransfer.training import engine


def split(rng: np.random.Generator, n: int, size: int = 32) -> engine.Split:
    """``n`` uint8 images of ``size`` px, two classes: dark (0) and bright (1)."""
    labels = rng.integers(0, 2, n)
    images = rng.integers(0, 60, (n, size, size, 3)) + labels[:, None, None, None] * 120
    return engine.Split(
        jnp.asarray(images.astype(np.uint8)), jnp.asarray(labels.astype(np.int32))
    )
