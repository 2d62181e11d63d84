"""ResNet50 in Flax NNX, numerically the Keras `keras.applications.ResNet50`.

Two layouts share one module:

- ``keras`` (ResNet v1): the stride sits on the first 1x1 conv of a stage, every conv
  has a bias, BatchNorm epsilon is 1.001e-5 (docs/protocol.md#model).
- ``torchvision`` (ResNet "v1.5"): the stride sits on the 3x3 conv, convs have no
  bias, BatchNorm epsilon is 1e-5.

Both pad symmetrically and explicitly before the 7x7 conv and the max pool (never
TF-style 'SAME', which pads strided ops asymmetrically).

Modules are named after the Keras layers (``conv1_conv``, ``conv2_block1`` holding
``conv1``/``bn1`` for Keras ``conv2_block1_1_conv``/``conv2_block1_1_bn``, ...) so
that converted checkpoints and taps read as in Keras. ``__call__`` returns
``(logits, acts)``: ``acts`` maps tap names (Keras layer names plus ``pooled``) to
activations, so analysis code never touches model code.
"""

from collections.abc import Iterator, Sequence
from typing import Literal

import jax
import jax.numpy as jnp
from flax import nnx

from jaxtransfer.models.batch_norm import BatchNorm

Variant = Literal["keras", "torchvision"]

RESNET50_STAGE_SIZES = (3, 4, 6, 3)
KERAS_BN_EPSILON = 1.001e-5
TORCH_BN_EPSILON = 1e-5
# Keras momentum 0.99: moving = 0.99 * moving + 0.01 * batch, the Flax convention.
BN_MOMENTUM = 0.99

_KERAS_INIT = nnx.initializers.glorot_uniform()
# torchvision: kaiming_normal_(mode="fan_out", nonlinearity="relu").
_TORCH_CONV_INIT = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")


def stage_name(stage: int) -> str:
    """Keras name of stage ``stage`` (0-based): ``conv2`` .. ``conv5``."""
    return f"conv{stage + 2}"


def block_name(stage: int, block: int) -> str:
    """Keras name prefix of a bottleneck block, e.g. ``conv3_block2`` (0-based args)."""
    return f"{stage_name(stage)}_block{block + 1}"


def study_taps(stage_sizes: Sequence[int] = RESNET50_STAGE_SIZES) -> tuple[str, ...]:
    """The five taps of the study: ``conv1_relu`` and the last block of each stage."""
    return ("conv1_relu",) + tuple(
        f"{block_name(s, n - 1)}_out" for s, n in enumerate(stage_sizes)
    )


def block_taps(stage_sizes: Sequence[int] = RESNET50_STAGE_SIZES) -> tuple[str, ...]:
    """Every block output (16 for ResNet50), in network order."""
    return tuple(
        f"{block_name(s, b)}_out" for s, n in enumerate(stage_sizes) for b in range(n)
    )


STUDY_TAPS = study_taps()
ALL_TAPS = ("conv1_relu",) + block_taps() + ("pooled",)


def _pointwise_conv(
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
    ResNet50 spends most of its FLOPs in 1x1 convs; on GPUs the products are no
    slower than cuDNN's convolutions.
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


def _pad(x: jax.Array, amount: int) -> jax.Array:
    """Symmetric zero padding of the two spatial axes (Keras ZeroPadding2D)."""
    return jnp.pad(x, ((0, 0), (amount, amount), (amount, amount), (0, 0)))


class Bottleneck(nnx.Module):
    """A ResNet bottleneck block; ``conv0``/``bn0`` is the projection shortcut."""

    def __init__(
        self,
        in_features: int,
        filters: int,
        *,
        stride: int,
        projection: bool,
        variant: Variant,
        dtype: jnp.dtype,
        rngs: nnx.Rngs,
    ):
        keras = variant == "keras"
        stride_1x1, stride_3x3 = (stride, 1) if keras else (1, stride)

        def conv(cin, cout, size, s, pad):
            return nnx.Conv(
                cin,
                cout,
                kernel_size=(size, size),
                strides=(s, s),
                padding=((pad, pad), (pad, pad)),
                use_bias=keras,
                kernel_init=_KERAS_INIT if keras else _TORCH_CONV_INIT,
                dtype=dtype,
                conv_general_dilated=(
                    _pointwise_conv if size == 1 else jax.lax.conv_general_dilated
                ),
                rngs=rngs,
            )

        def norm(features):
            return BatchNorm(
                features,
                momentum=BN_MOMENTUM,
                epsilon=KERAS_BN_EPSILON if keras else TORCH_BN_EPSILON,
                dtype=dtype,
                rngs=rngs,
            )

        out_features = 4 * filters
        if projection:
            self.conv0 = conv(in_features, out_features, 1, stride, 0)
            self.bn0 = norm(out_features)
        else:
            self.conv0 = self.bn0 = None
        self.conv1 = conv(in_features, filters, 1, stride_1x1, 0)
        self.bn1 = norm(filters)
        self.conv2 = conv(filters, filters, 3, stride_3x3, 1)
        self.bn2 = norm(filters)
        self.conv3 = conv(filters, out_features, 1, 1, 0)
        self.bn3 = norm(out_features)

    def __call__(self, x: jax.Array, bn_train: bool) -> jax.Array:
        frozen = not bn_train
        shortcut = x
        if self.conv0 is not None:
            shortcut = self.bn0(self.conv0(x), use_running_average=frozen)
        y = nnx.relu(self.bn1(self.conv1(x), use_running_average=frozen))
        y = nnx.relu(self.bn2(self.conv2(y), use_running_average=frozen))
        y = self.bn3(self.conv3(y), use_running_average=frozen)
        return nnx.relu(shortcut + y)


def _run_block(block: Bottleneck, x: jax.Array, bn_train: bool) -> jax.Array:
    return block(x, bn_train)


# Rematerialised: the backward pass recomputes the block from its input.
_remat_block = nnx.remat(_run_block, static_argnums=2)


class ResNet(nnx.Module):
    """ResNet backbone with an optional classification head.

    Attributes mirror Keras layer names: ``conv1_conv``, ``conv1_bn``, one
    ``Bottleneck`` per ``convS_blockB`` and ``head`` for the classifier (Keras
    ``dense`` after Dropout(0.5) for pretrained sources, ``predictions`` without
    dropout for the random baseline; choose with ``head_dropout``).
    """

    def __init__(
        self,
        *,
        num_classes: int | None = None,
        head_dropout: float = 0.5,
        variant: Variant = "keras",
        stage_sizes: Sequence[int] = RESNET50_STAGE_SIZES,
        width: int = 64,
        dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        if variant not in ("keras", "torchvision"):
            raise ValueError(
                f"variant must be 'keras' or 'torchvision', got {variant!r}"
            )
        keras = variant == "keras"
        self.variant = variant
        self.stage_sizes = tuple(stage_sizes)
        self.conv1_conv = nnx.Conv(
            3,
            width,
            kernel_size=(7, 7),
            strides=(2, 2),
            padding="VALID",
            use_bias=keras,
            kernel_init=_KERAS_INIT if keras else _TORCH_CONV_INIT,
            dtype=dtype,
            rngs=rngs,
        )
        self.conv1_bn = BatchNorm(
            width,
            momentum=BN_MOMENTUM,
            epsilon=KERAS_BN_EPSILON if keras else TORCH_BN_EPSILON,
            dtype=dtype,
            rngs=rngs,
        )
        features = width
        for s, num_blocks in enumerate(self.stage_sizes):
            filters = width * 2**s
            for b in range(num_blocks):
                block = Bottleneck(
                    features,
                    filters,
                    stride=(1 if s == 0 else 2) if b == 0 else 1,
                    projection=b == 0,
                    variant=variant,
                    dtype=dtype,
                    rngs=rngs,
                )
                setattr(self, block_name(s, b), block)
                features = 4 * filters
        self.num_features = features
        self.num_classes = num_classes
        if num_classes is None:
            self.dropout = self.head = None
        else:
            # No rng stream inside the model: steps pass a dropout key explicitly.
            self.dropout = nnx.Dropout(head_dropout) if head_dropout else None
            self.head = nnx.Linear(
                features, num_classes, kernel_init=_KERAS_INIT, dtype=dtype, rngs=rngs
            )

    def blocks(self) -> Iterator[tuple[str, Bottleneck]]:
        """Yields ``(keras_block_name, block)`` in network order."""
        for s, num_blocks in enumerate(self.stage_sizes):
            for b in range(num_blocks):
                name = block_name(s, b)
                yield name, getattr(self, name)

    @property
    def study_taps(self) -> tuple[str, ...]:
        return study_taps(self.stage_sizes)

    @property
    def all_taps(self) -> tuple[str, ...]:
        return ("conv1_relu",) + block_taps(self.stage_sizes) + ("pooled",)

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
        acts = {}
        # Keras conv1_pad; torchvision's padding=3 on conv1 is the same.
        x = _pad(x, 3)
        x = nnx.relu(
            self.conv1_bn(self.conv1_conv(x), use_running_average=not bn_train)
        )
        acts["conv1_relu"] = x
        # Zero padding equals -inf padding here: the input is post-ReLU.
        x = nnx.max_pool(_pad(x, 1), (3, 3), strides=(2, 2), padding="VALID")
        run_block = _remat_block if remat else _run_block
        for name, block in self.blocks():
            x = run_block(block, x, bn_train)
            acts[f"{name}_out"] = x
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


def ResNet50(**kwargs) -> ResNet:  # noqa: N802 (mirrors keras.applications.ResNet50)
    """The ResNet50 of the study; keyword arguments as for ``ResNet``."""
    return ResNet(stage_sizes=RESNET50_STAGE_SIZES, width=64, **kwargs)


def ResNetTiny(**kwargs) -> ResNet:  # noqa: N802
    """A tiny ResNet (one block per stage, width 8) for tests and demos."""
    return ResNet(stage_sizes=(1, 1, 1, 1), width=8, **kwargs)
