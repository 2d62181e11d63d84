"""On-device training augmentation equal to the study's Keras ``ImageDataGenerator``.

The study (docs/protocol.md#augmentation) trains with
``ImageDataGenerator(rotation_range=10,
width_shift_range=0.1, height_shift_range=0.1, shear_range=0.1, zoom_range=0.1,
fill_mode='nearest', horizontal_flip=True)`` (no flip for chest), applied to float
0..255 RGB pixels before the 'caffe' preprocessing. This module reproduces it as pure
``jnp`` functions that run inside a jitted step: no host round-trip, static shapes.

* ``sample_params`` draws what Keras's ``get_random_transform`` draws: theta ~
  U(-10, 10) degrees; tx ~ U(-0.1, 0.1) * height and ty ~ U(-0.1, 0.1) * width, both
  in pixels; shear ~ U(-0.1, 0.1) in **degrees** (Keras applies ``np.deg2rad``); zx and
  zy independently ~ U(0.9, 1.1); flip ~ Bernoulli(0.5) when enabled.
* ``transform_matrix`` composes rotation @ shift @ shear @ zoom, moves it onto the
  image centre as ``transform_matrix_offset_center`` does, and folds the horizontal
  flip in (Keras flips the columns *after* the affine, which is the same as reading
  output column ``W - 1 - j``).
* ``apply`` resamples like ``scipy.ndimage.affine_transform(order=1,
  mode='nearest')``: bilinear, with coordinates outside the image clamped to the edge
  pixel (scipy's 'nearest' extends the border values), one gather shared by all
  channels.

Which Keras. The study ran TF 2.8, whose ``ImageDataGenerator`` is keras-preprocessing
1.1.2's (``keras/preprocessing/image.py`` in Keras 2.8 re-exports it). Keras 2.9 copied
in a later keras-preprocessing master that changed two things, and Keras 3's
``keras.src.legacy`` copy keeps them:

1. Centre: 1.1.2 uses ``o = size / 2 + 0.5``, one pixel past the true centre
   ``(size - 1) / 2``; Keras >= 2.9 uses ``size / 2 - 0.5``. So in the study the
   rotation and zoom pivot sits one pixel down and right of the centre.
2. Axes: 1.1.2 applies the matrix to (row, col) array indices directly, so ``tx``
   (scaled by the height) shifts rows and ``zx`` zooms rows. Keras >= 2.9 conjugates
   it with the x/y swap ``P M P``: ``tx`` then shifts *columns* while still being
   scaled by the height, the rotation runs the other way and, for non-square images,
   the pivot is transposed too.

``convention="keras_preprocessing"`` (the default) is the study's;
``convention="keras3"`` reproduces Keras >= 2.9 / Keras 3, which is what the installed
library can check. Their distributions differ only by the pivot (one pixel, which
moves pixels by at most about 0.25 px at these ranges), the shear axis (negligible at
0.1 degrees) and, for non-square images, shifts scaled by the other side.
"""

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxtransfer.data import preprocess

CONVENTIONS = ("keras_preprocessing", "keras3")
# Targets trained without the horizontal flip (docs/protocol.md#augmentation: chest
# X-rays).
NO_FLIP_TARGETS = frozenset({"chest"})


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """``ImageDataGenerator`` arguments; the defaults are the study's.

    Attributes:
        rotation_range: Degrees; theta ~ U(-rotation_range, rotation_range).
        width_shift_range: Fraction of the width (< 1); column shift in pixels.
        height_shift_range: Fraction of the height (< 1); row shift in pixels.
        shear_range: Degrees (as Keras interprets it); shear ~ U(-range, range).
        zoom_range: A float z for [1 - z, 1 + z] or a (lower, upper) pair; zx and zy
            are drawn independently from it.
        horizontal_flip: Flip the columns with probability 0.5.
        convention: "keras_preprocessing" (TF 2.8, the study) or "keras3".
    """

    rotation_range: float = 10.0
    width_shift_range: float = 0.1
    height_shift_range: float = 0.1
    shear_range: float = 0.1
    zoom_range: float | tuple[float, float] = 0.1
    horizontal_flip: bool = True
    convention: str = "keras_preprocessing"

    def __post_init__(self):
        for name in ("width_shift_range", "height_shift_range"):
            value = getattr(self, name)
            # Keras reads values >= 1 as pixels and int/list values as a discrete
            # choice; the study uses fractions only, so only those are supported.
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be a fraction in [0, 1), got {value}")
        if self.convention not in CONVENTIONS:
            raise ValueError(
                f"unknown convention {self.convention!r}; known: {CONVENTIONS}"
            )
        lower, upper = self.zoom_bounds
        if not 0.0 < lower <= upper:
            raise ValueError(f"bad zoom_range {self.zoom_range!r}")

    @property
    def zoom_bounds(self) -> tuple[float, float]:
        """(lower, upper) of the zoom factors, as Keras derives them."""
        if isinstance(self.zoom_range, int | float):
            return 1.0 - self.zoom_range, 1.0 + self.zoom_range
        lower, upper = self.zoom_range
        return float(lower), float(upper)


def config_for_target(target: str, **overrides) -> AugmentConfig:
    """The study's augmentation for ``target`` (no horizontal flip for chest)."""
    fields = {"horizontal_flip": target not in NO_FLIP_TARGETS, **overrides}
    return AugmentConfig(**fields)


class AffineParams(NamedTuple):
    """Per-image parameters in Keras's units; every field has shape (batch,).

    ``theta`` and ``shear`` are degrees, ``tx``/``ty`` pixels (row/column shift in
    the study's convention), ``zx``/``zy`` zoom factors, ``flip`` a bool.
    """

    theta: jax.Array
    tx: jax.Array
    ty: jax.Array
    shear: jax.Array
    zx: jax.Array
    zy: jax.Array
    flip: jax.Array


def sample_params(
    rng: jax.Array,
    batch_size: int,
    config: AugmentConfig,
    *,
    height: int,
    width: int,
) -> AffineParams:
    """Draws ``batch_size`` parameter sets as ``get_random_transform`` does.

    Args:
        rng: A jax PRNG key.
        batch_size: Number of images (static).
        config: The augmentation ranges.
        height: Image height in pixels; scales ``tx`` (Keras's ``img_row_axis``).
        width: Image width in pixels; scales ``ty`` (Keras's ``img_col_axis``).

    Returns:
        AffineParams with float32 (batch,) fields and a bool (batch,) ``flip``.
    """
    keys = jax.random.split(rng, 7)
    shape = (batch_size,)

    def symmetric(key, bound):
        return jax.random.uniform(key, shape, jnp.float32, -bound, bound)

    lower, upper = config.zoom_bounds
    flip = jax.random.bernoulli(keys[6], 0.5, shape)
    return AffineParams(
        theta=symmetric(keys[0], config.rotation_range),
        tx=symmetric(keys[1], config.height_shift_range) * height,
        ty=symmetric(keys[2], config.width_shift_range) * width,
        shear=symmetric(keys[3], config.shear_range),
        zx=jax.random.uniform(keys[4], shape, jnp.float32, lower, upper),
        zy=jax.random.uniform(keys[5], shape, jnp.float32, lower, upper),
        flip=jnp.logical_and(flip, config.horizontal_flip),
    )


def _matrix(rows) -> jax.Array:
    """Stacks nested lists of (batch,) arrays/scalars into (batch, 3, 3)."""
    return jnp.stack([jnp.stack(row, axis=-1) for row in rows], axis=-2)


def transform_matrix(
    params: AffineParams,
    height: int,
    width: int,
    convention: str = "keras_preprocessing",
) -> jax.Array:
    """Per-image 3x3 maps from output (row, col, 1) to input (row, col, 1).

    This is the matrix Keras hands to ``scipy.ndimage.affine_transform`` (offset in
    the last column), with the horizontal flip folded in.

    Args:
        params: AffineParams with (batch,) fields.
        height: Image height (Keras's ``h``).
        width: Image width (Keras's ``w``).
        convention: "keras_preprocessing" (the study) or "keras3"; see the module
            docstring.

    Returns:
        (batch, 3, 3) float32 matrices.
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown convention {convention!r}; known: {CONVENTIONS}")
    theta = jnp.deg2rad(jnp.asarray(params.theta, jnp.float32))
    shear = jnp.deg2rad(jnp.asarray(params.shear, jnp.float32))
    tx = jnp.asarray(params.tx, jnp.float32)
    ty = jnp.asarray(params.ty, jnp.float32)
    zx = jnp.asarray(params.zx, jnp.float32)
    zy = jnp.asarray(params.zy, jnp.float32)
    one, zero = jnp.ones_like(theta), jnp.zeros_like(theta)
    cos, sin = jnp.cos(theta), jnp.sin(theta)
    rotation = _matrix([[cos, -sin, zero], [sin, cos, zero], [zero, zero, one]])
    shift = _matrix([[one, zero, tx], [zero, one, ty], [zero, zero, one]])
    shearing = _matrix(
        [[one, -jnp.sin(shear), zero], [zero, jnp.cos(shear), zero], [zero] * 2 + [one]]
    )
    zoom = _matrix([[zx, zero, zero], [zero, zy, zero], [zero, zero, one]])
    matrix = rotation @ shift @ shearing @ zoom  # (batch, 3, 3)

    # transform_matrix_offset_center(matrix, h, w): o_x pairs with h, o_y with w.
    # keras-preprocessing 1.1.2 centres on size / 2 + 0.5 (one pixel past the true
    # centre (size - 1) / 2); Keras >= 2.9 on size / 2 - 0.5.
    half = 0.5 if convention == "keras_preprocessing" else -0.5
    o_x, o_y = height / 2 + half, width / 2 + half
    offset = jnp.array([[1.0, 0.0, o_x], [0.0, 1.0, o_y], [0.0, 0.0, 1.0]])
    reset = jnp.array([[1.0, 0.0, -o_x], [0.0, 1.0, -o_y], [0.0, 0.0, 1.0]])
    matrix = offset @ matrix @ reset
    if convention == "keras3":
        # Keras >= 2.9: M' = P M P with P swapping the first two coordinates.
        swap = jnp.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
        matrix = swap @ matrix @ swap

    # The flip reads output column W - 1 - j of the affine's result.
    flip = jnp.asarray(params.flip, bool)
    sign = jnp.where(flip, -1.0, 1.0)
    col_offset = jnp.where(flip, width - 1.0, 0.0)
    flipping = _matrix([[one, zero, zero], [zero, sign, col_offset], [zero, zero, one]])
    return matrix @ flipping


def _resample(image: jax.Array, matrix: jax.Array) -> jax.Array:
    """Bilinear resampling of one (H, W, C) image, edge-clamped like scipy 'nearest'.

    Output pixel (i, j) reads the input at ``matrix @ (i, j, 1)``. Both neighbours of
    a coordinate are clamped into the image, which equals scipy's order-1 spline with
    mode='nearest' (the image extended by its border values) everywhere, including
    exactly on and beyond the edges.
    """
    height, width, channels = image.shape
    rows, cols = jnp.meshgrid(
        jnp.arange(height, dtype=jnp.float32),
        jnp.arange(width, dtype=jnp.float32),
        indexing="ij",
    )
    src_row = matrix[0, 0] * rows + matrix[0, 1] * cols + matrix[0, 2]  # (H, W)
    src_col = matrix[1, 0] * rows + matrix[1, 1] * cols + matrix[1, 2]  # (H, W)
    row0, col0 = jnp.floor(src_row), jnp.floor(src_col)
    frac_row = (src_row - row0)[..., None]  # (H, W, 1)
    frac_col = (src_col - col0)[..., None]
    row0, col0 = row0.astype(jnp.int32), col0.astype(jnp.int32)
    r0 = jnp.clip(row0, 0, height - 1)
    r1 = jnp.clip(row0 + 1, 0, height - 1)
    c0 = jnp.clip(col0, 0, width - 1)
    c1 = jnp.clip(col0 + 1, 0, width - 1)
    flat = image.reshape(height * width, channels)
    # Each neighbour gathered once: reading one twice made XLA:CPU's program for the
    # batch twice as slow (benchmarks/RESULTS.md).
    v00, v01, v10, v11 = (
        flat[r * width + c] for r, c in ((r0, c0), (r0, c1), (r1, c0), (r1, c1))
    )  # (H, W, C) each
    top = v00 + frac_col * (v01 - v00)
    bottom = v10 + frac_col * (v11 - v10)
    return top + frac_row * (bottom - top)


def apply(
    images: jax.Array,
    params: AffineParams,
    convention: str = "keras_preprocessing",
) -> jax.Array:
    """Applies the per-image affine and flip to a batch, as ``apply_transform`` does.

    Args:
        images: (B, H, W, C) pixels (any real dtype; computed in float32).
        params: AffineParams with (B,) fields.
        convention: "keras_preprocessing" (the study) or "keras3".

    Returns:
        (B, H, W, C) float32 augmented images.
    """
    images = jnp.asarray(images, jnp.float32)
    _, height, width, _ = images.shape
    matrices = transform_matrix(params, height, width, convention)  # (B, 3, 3)
    return jax.vmap(_resample)(images, matrices)


def augment(rng: jax.Array, images: jax.Array, config: AugmentConfig) -> jax.Array:
    """Random Keras-equivalent augmentation of (B, H, W, C) 0..255 images.

    Jit with ``config`` static (it is hashable), e.g.
    ``jax.jit(augment, static_argnums=2)``.
    """
    batch_size, height, width, _ = images.shape
    params = sample_params(rng, batch_size, config, height=height, width=width)
    return apply(images, params, config.convention)


def augment_and_preprocess(
    rng: jax.Array,
    images: jax.Array,
    config: AugmentConfig,
    preprocessing: str = "caffe",
) -> jax.Array:
    """The study's training transform: augment 0..255 RGB, then preprocess.

    Keras's ``DataFrameIterator`` runs ``apply_transform`` before ``standardize``
    (where ``preprocess_input`` lives), so the affine's fill and interpolation see
    raw pixels, not mean-subtracted ones.
    """
    return preprocess.get(preprocessing)(augment(rng, images, config))
