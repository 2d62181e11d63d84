"""Building blocks every backbone shares, numerically Keras's layers.

``conv`` and ``batch_norm`` make Keras ``Conv2D`` and ``BatchNormalization`` with
Keras's initialisers (docs/protocol.md#model); ``same_padding`` is Keras's 'same'
for a stride-1 conv or pool; ``Backbone`` is the part of every network that is not
its body: tap selection, global average pooling and the study's head.
"""

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from jaxtransfer.models.batch_norm import BatchNorm

# Keras momentum 0.99: moving = 0.99 * moving + 0.01 * batch, the Flax convention.
BN_MOMENTUM = 0.99
KERAS_BN_EPSILON = 1e-3  # keras.layers.BatchNormalization's default
KERAS_INIT = nnx.initializers.glorot_uniform()


class KerasLayer(NamedTuple):
    """A weighted layer under its Keras name, for the HDF5 converters.

    ``kind`` is 'conv', 'bn' or 'dense'. ``auto`` marks a layer Keras names by
    itself (``conv2d_17``, ``batch_normalization_17``): its number, not its name,
    says where it is (models/formats/keras_layout.py).
    """

    name: str
    kind: str
    module: nnx.Module
    auto: bool = False


def pointwise_conv(
    lhs,
    rhs,
    window_strides,
    padding,
    *,
    lhs_dilation=None,
    rhs_dilation=None,
    feature_group_count=1,
    precision=None,
    **layout,
) -> jax.Array:
    """A 1x1 NHWC/HWIO convolution as one (B*H*W, Cin) x (Cin, Cout) matrix product.

    Drop-in for ``lax.conv_general_dilated`` in ``nnx.Conv`` (same parameters, same
    result up to float summation order). XLA:CPU runs the backward pass of a 1x1
    ``conv`` several times slower than the same work as 2-D matrix products, and
    the backbones spend most of their FLOPs in 1x1 convs; on GPUs the products are
    no slower than cuDNN's convolutions.
    """
    unpadded = padding == "VALID" or all(tuple(p) == (0, 0) for p in padding)
    undilated = all(
        d in (None, 1) or set(d) == {1} for d in (lhs_dilation, rhs_dilation)
    )
    if (
        rhs.shape[:2] != (1, 1)
        or not unpadded
        or not undilated
        or feature_group_count != 1
    ):
        raise ValueError(
            "pointwise conv needs a 1x1 kernel, no padding, no dilation and one "
            f"feature group, got kernel {rhs.shape}, padding {padding}, dilations "
            f"{lhs_dilation}/{rhs_dilation}, groups {feature_group_count}"
        )
    del layout  # nnx.Conv's NHWC/HWIO dimension numbers (and output sharding)
    row_stride, col_stride = window_strides
    x = lhs[:, ::row_stride, ::col_stride, :]  # the pixels a strided 1x1 conv reads
    batch, height, width, channels = x.shape
    y = jnp.dot(x.reshape(-1, channels), rhs[0, 0], precision=precision)
    return y.reshape(batch, height, width, -1)


def pad(x: jax.Array, amount: int) -> jax.Array:
    """Symmetric zero padding of the two spatial axes (Keras ZeroPadding2D)."""
    return jnp.pad(x, ((0, 0), (amount, amount), (amount, amount), (0, 0)))


def same_padding(kernel: Sequence[int]) -> tuple[tuple[int, int], ...]:
    """Keras 'same' padding, stride 1: (k - 1) // 2 before, the rest after."""
    return tuple(((k - 1) // 2, k // 2) for k in kernel)


def conv(
    in_features: int,
    out_features: int,
    kernel: int | Sequence[int],
    *,
    strides: int = 1,
    padding: int | str = 0,
    use_bias: bool = True,
    kernel_init=KERAS_INIT,
    dtype: jnp.dtype,
    rngs: nnx.Rngs,
) -> nnx.Conv:
    """A Keras Conv2D: ``padding`` is an amount on every side, 'same' or 'valid'.

    1x1 kernels run as matrix products (``pointwise_conv``).
    """
    kernel = (kernel, kernel) if isinstance(kernel, int) else tuple(kernel)
    if padding == "same":
        if strides != 1:
            raise ValueError("Keras 'same' padding is used here with stride 1 only")
        explicit = same_padding(kernel)
    elif padding == "valid":
        explicit = ((0, 0), (0, 0))
    else:
        explicit = ((padding, padding), (padding, padding))
    pointwise = kernel == (1, 1) and explicit == ((0, 0), (0, 0))
    return nnx.Conv(
        in_features,
        out_features,
        kernel_size=kernel,
        strides=(strides, strides),
        padding=explicit,
        use_bias=use_bias,
        kernel_init=kernel_init,
        dtype=dtype,
        conv_general_dilated=(
            pointwise_conv if pointwise else jax.lax.conv_general_dilated
        ),
        rngs=rngs,
    )


def batch_norm(
    features: int,
    *,
    epsilon: float = KERAS_BN_EPSILON,
    use_scale: bool = True,
    dtype: jnp.dtype,
    rngs: nnx.Rngs,
) -> BatchNorm:
    """A Keras BatchNormalization (momentum 0.99); ``use_scale=False`` has no gamma."""
    return BatchNorm(
        features,
        momentum=BN_MOMENTUM,
        epsilon=epsilon,
        use_scale=use_scale,
        dtype=dtype,
        rngs=rngs,
    )


def max_pool(x: jax.Array, window: int = 3, stride: int = 2) -> jax.Array:
    """Keras MaxPooling2D with 'valid' padding."""
    return nnx.max_pool(x, (window, window), strides=(stride, stride), padding="VALID")


def average_pool_same(x: jax.Array, window: int = 3) -> jax.Array:
    """Keras AveragePooling2D(window, strides=1, padding='same'): the mean over the
    window's pixels inside the image (padding is not counted)."""
    padding = same_padding((window, window))
    return nnx.avg_pool(
        x, (window, window), strides=(1, 1), padding=padding, count_include_pad=False
    )


def _run_block(block: nnx.Module, x: jax.Array, bn_train: bool) -> jax.Array:
    return block(x, bn_train)


# Rematerialised: the backward pass recomputes the block from its input.
_remat_block = nnx.remat(_run_block, static_argnums=2)


def run_block(
    block: nnx.Module, x: jax.Array, bn_train: bool, remat: bool = False
) -> jax.Array:
    """``block(x, bn_train)``; with ``remat`` only the block's input is kept for the
    backward pass and its inside is recomputed (less memory, more compute)."""
    return (_remat_block if remat else _run_block)(block, x, bn_train)


class Backbone(nnx.Module):
    """What every network shares around its body: taps, pooling and the head.

    A subclass builds its layers, calls ``_init_head`` and implements ``body``
    (filling the activations at its taps) and the properties ``study_taps`` and
    ``all_taps`` (every tap in network order, ``pooled`` last), ``architecture``
    (its constructor arguments, for checkpoints) and ``keras_layers`` (its
    weighted layers under their Keras names, for the HDF5 converters).
    """

    @property
    def display_name(self) -> str:
        """The architecture in words, for messages and figures."""
        return type(self).__name__

    @property
    def stem_conv(self) -> nnx.Conv:
        """The first conv, the one that reads the pixels."""
        return self.conv1_conv

    # 'keras' networks read 'caffe'-preprocessed images (docs/protocol.md#model).
    variant = "keras"
    # Keras's smallest input for the network.
    min_size = 32
    # Keras writes a chain's weighted layers in network order ('file'); a network
    # with parallel branches is matched by the order Keras created them in
    # ('creation'): models/formats/keras_layout.py.
    keras_order = "file"

    def _init_head(
        self,
        num_features: int,
        num_classes: int | None,
        head_dropout: float,
        dtype: jnp.dtype,
        rngs: nnx.Rngs,
    ) -> None:
        """Global average pooling, then Dropout (pretrained sources) and Dense."""
        self.num_features = num_features
        self.num_classes = num_classes
        if num_classes is None:
            self.dropout = self.head = None
        else:
            # No rng stream inside the model: steps pass a dropout key explicitly.
            self.dropout = nnx.Dropout(head_dropout) if head_dropout else None
            self.head = nnx.Linear(
                num_features, num_classes, kernel_init=KERAS_INIT, dtype=dtype,
                rngs=rngs,
            )  # fmt: skip

    def body(
        self, x: jax.Array, bn_train: bool, remat: bool, acts: dict[str, jax.Array]
    ) -> jax.Array:
        """The network up to its last feature map, storing every tap in ``acts``."""
        raise NotImplementedError

    def __call__(
        self,
        x: jax.Array,
        *,
        train: bool = False,
        bn_train: bool | None = None,
        dropout_rng: jax.Array | None = None,
        taps: Sequence[str] | None = None,
        remat: bool = False,
    ) -> tuple[jax.Array | None, dict[str, jax.Array]]:
        """Runs the network on preprocessed NHWC images.

        Args:
          x: (batch, height, width, 3) preprocessed images.
          train: dropout active (needs ``dropout_rng``) and, unless ``bn_train``
            says otherwise, BatchNorm on batch statistics, updating its moving
            averages. Otherwise inference mode.
          bn_train: BatchNorm mode on its own: False keeps a frozen backbone's
            BatchNorm in inference mode while the head trains.
          dropout_rng: key for the head's dropout mask.
          taps: names to return in ``acts`` (any of ``all_taps``); defaults to the
            study's five taps plus ``pooled``.
          remat: under differentiation, keep only each block's input and recompute
            its inside during the backward pass (less memory, more compute).

        Returns:
          ``(logits, acts)``: logits (batch, num_classes) or None without a head.
        """
        bn_train = train if bn_train is None else bn_train
        taps = (*self.study_taps, "pooled") if taps is None else tuple(taps)
        unknown = sorted(set(taps) - set(self.all_taps))
        if unknown:
            raise ValueError(f"unknown taps {unknown}; available: {self.all_taps}")
        acts: dict[str, jax.Array] = {}
        x = self.body(x, bn_train, remat, acts)
        acts["pooled"] = x.mean(axis=(1, 2))
        logits = None
        if self.head is not None:
            features = acts["pooled"]
            if self.dropout is not None:
                features = self.dropout(
                    features, deterministic=not train, rngs=dropout_rng
                )
            logits = self.head(features)
        return logits, {name: acts[name] for name in taps}
