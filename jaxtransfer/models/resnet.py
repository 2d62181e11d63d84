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

from jaxtransfer.models import layers

Variant = Literal["keras", "torchvision"]

RESNET50_STAGE_SIZES = (3, 4, 6, 3)
KERAS_BN_EPSILON = 1.001e-5  # keras.applications.ResNet50's
TORCH_BN_EPSILON = 1e-5
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
            return layers.conv(
                cin, cout, size, strides=s, padding=pad, use_bias=keras,
                kernel_init=layers.KERAS_INIT if keras else _TORCH_CONV_INIT,
                dtype=dtype, rngs=rngs,
            )  # fmt: skip

        def norm(features):
            return layers.batch_norm(
                features,
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


class ResNet(layers.Backbone):
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
        self.width = width
        self.conv1_conv = layers.conv(
            3, width, 7, strides=2, use_bias=keras,
            kernel_init=layers.KERAS_INIT if keras else _TORCH_CONV_INIT,
            dtype=dtype, rngs=rngs,
        )  # fmt: skip
        self.conv1_bn = layers.batch_norm(
            width,
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
        self._init_head(features, num_classes, head_dropout, dtype, rngs)

    @property
    def architecture(self) -> dict:
        return {
            "variant": self.variant,
            "stage_sizes": list(self.stage_sizes),
            "width": self.width,
        }

    @property
    def display_name(self) -> str:
        if (self.stage_sizes, self.width) == (RESNET50_STAGE_SIZES, 64):
            return "ResNet50"
        return f"ResNet (blocks {list(self.stage_sizes)}, width {self.width})"

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

    def keras_layers(self) -> list[layers.KerasLayer]:
        """The weighted layers in Keras order.

        Keras orders block1 of each stage as 1_conv, 1_bn, 2_conv, 2_bn, 0_conv,
        3_conv, 0_bn, 3_bn (the projection shortcut after the 3x3), the other
        blocks 1, 2, 3.
        """
        found = [
            layers.KerasLayer("conv1_conv", "conv", self.conv1_conv),
            layers.KerasLayer("conv1_bn", "bn", self.conv1_bn),
        ]
        for name, block in self.blocks():
            order = [("1_conv", block.conv1), ("1_bn", block.bn1)]
            order += [("2_conv", block.conv2), ("2_bn", block.bn2)]
            if block.conv0 is not None:
                order += [("0_conv", block.conv0), ("3_conv", block.conv3)]
                order += [("0_bn", block.bn0), ("3_bn", block.bn3)]
            else:
                order += [("3_conv", block.conv3), ("3_bn", block.bn3)]
            found += [
                layers.KerasLayer(f"{name}_{suffix}", suffix[2:], module)
                for suffix, module in order
            ]
        return found

    def body(self, x, bn_train, remat, acts):
        # Keras conv1_pad; torchvision's padding=3 on conv1 is the same.
        x = layers.pad(x, 3)
        x = nnx.relu(
            self.conv1_bn(self.conv1_conv(x), use_running_average=not bn_train)
        )
        acts["conv1_relu"] = x
        # Zero padding equals -inf padding here: the input is post-ReLU.
        x = layers.max_pool(layers.pad(x, 1))
        for name, block in self.blocks():
            x = layers.run_block(block, x, bn_train, remat)
            acts[f"{name}_out"] = x
        return x


def ResNet50(**kwargs) -> ResNet:  # noqa: N802 (mirrors keras.applications.ResNet50)
    """The ResNet50 of the study; keyword arguments as for ``ResNet``."""
    return ResNet(stage_sizes=RESNET50_STAGE_SIZES, width=64, **kwargs)


def ResNetTiny(**kwargs) -> ResNet:  # noqa: N802
    """A tiny ResNet (one block per stage, width 8) for tests and demos."""
    return ResNet(stage_sizes=(1, 1, 1, 1), width=8, **kwargs)
