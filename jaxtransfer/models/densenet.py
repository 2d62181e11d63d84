"""DenseNet in Flax NNX, numerically Keras's `keras.applications.DenseNet121`.

Keras's DenseNet (Huang et al. 2017, "DenseNet-BC"): a 7x7 stem, four dense blocks
of (6, 12, 24, 16) layers for DenseNet121, each layer adding ``growth_rate`` (32)
channels to its input by a BN-ReLU-1x1 conv (4 x growth) then BN-ReLU-3x3 conv,
and between blocks a transition (BN-ReLU, 1x1 conv halving the channels, 2x2
average pool). Convs have no bias, BatchNorm epsilon is 1.001e-5. Modules carry
the Keras names: ``conv2_block1`` holds Keras ``conv2_block1_0_bn``, ``_1_conv``,
``_1_bn`` and ``_2_conv``; ``pool2`` holds ``pool2_bn`` and ``pool2_conv``; the final
``bn`` and ``relu`` follow block ``conv5``.

Taps: ``conv1_relu``, every layer's output (``conv3_block7_concat``) and ``relu``
(the final feature map). The study's five are ``conv1_relu``, the last layer of
blocks conv2 to conv4 and ``relu`` (docs/analysis.md#backbones).
"""

from collections.abc import Iterator, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxtransfer.models import layers

DENSENET121_BLOCKS = (6, 12, 24, 16)
BN_EPSILON = 1.001e-5  # keras.applications.DenseNet's


def _norm(features, dtype, rngs):
    return layers.batch_norm(features, epsilon=BN_EPSILON, dtype=dtype, rngs=rngs)


class DenseLayer(nnx.Module):
    """Keras ``conv_block``: BN-ReLU-1x1 conv, BN-ReLU-3x3 conv, concatenated on."""

    def __init__(self, in_features, growth_rate, *, dtype, rngs):
        bottleneck = 4 * growth_rate
        self.bn0 = _norm(in_features, dtype, rngs)
        self.conv1 = layers.conv(
            in_features, bottleneck, 1, use_bias=False, dtype=dtype, rngs=rngs
        )
        self.bn1 = _norm(bottleneck, dtype, rngs)
        self.conv2 = layers.conv(
            bottleneck, growth_rate, 3, padding="same", use_bias=False,
            dtype=dtype, rngs=rngs,
        )  # fmt: skip

    def __call__(self, x: jax.Array, bn_train: bool) -> jax.Array:
        frozen = not bn_train
        y = nnx.relu(self.bn0(x, use_running_average=frozen))
        y = nnx.relu(self.bn1(self.conv1(y), use_running_average=frozen))
        return jnp.concatenate([x, self.conv2(y)], axis=-1)


class Transition(nnx.Module):
    """Keras ``transition_block``: BN-ReLU, 1x1 conv to half the channels, 2x2 mean."""

    def __init__(self, in_features, out_features, *, dtype, rngs):
        self.bn = _norm(in_features, dtype, rngs)
        self.conv = layers.conv(
            in_features, out_features, 1, use_bias=False, dtype=dtype, rngs=rngs
        )

    def __call__(self, x: jax.Array, bn_train: bool) -> jax.Array:
        x = self.conv(nnx.relu(self.bn(x, use_running_average=not bn_train)))
        return nnx.avg_pool(x, (2, 2), strides=(2, 2), padding="VALID")


def layer_name(block: int, layer: int) -> str:
    """Keras name prefix of a dense layer, e.g. ``conv3_block2`` (0-based args)."""
    return f"conv{block + 2}_block{layer + 1}"


class DenseNet(layers.Backbone):
    """Keras's DenseNet with an optional classification head (as ``ResNet``'s)."""

    def __init__(
        self,
        *,
        num_classes: int | None = None,
        head_dropout: float = 0.5,
        blocks: Sequence[int] = DENSENET121_BLOCKS,
        growth_rate: int = 32,
        width: int = 64,
        dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.blocks = tuple(blocks)
        self.growth_rate = growth_rate
        self.width = width
        self.conv1_conv = layers.conv(
            3, width, 7, strides=2, use_bias=False, dtype=dtype, rngs=rngs
        )
        self.conv1_bn = _norm(width, dtype, rngs)
        features = width
        for b, num_layers in enumerate(self.blocks):
            for i in range(num_layers):
                setattr(
                    self,
                    layer_name(b, i),
                    DenseLayer(features, growth_rate, dtype=dtype, rngs=rngs),
                )
                features += growth_rate
            if b < len(self.blocks) - 1:
                # Keras: int(channels * 0.5).
                transition = Transition(features, features // 2, dtype=dtype, rngs=rngs)
                setattr(self, f"pool{b + 2}", transition)
                features //= 2
        self.bn = _norm(features, dtype, rngs)
        self._init_head(features, num_classes, head_dropout, dtype, rngs)

    @property
    def architecture(self) -> dict:
        return {
            "blocks": list(self.blocks),
            "growth_rate": self.growth_rate,
            "width": self.width,
        }

    @property
    def display_name(self) -> str:
        known = {DENSENET121_BLOCKS: "DenseNet121", (6, 12, 32, 32): "DenseNet169",
                 (6, 12, 48, 32): "DenseNet201"}  # fmt: skip
        if (self.growth_rate, self.width) == (32, 64) and self.blocks in known:
            return known[self.blocks]
        return (
            f"DenseNet (blocks {list(self.blocks)}, growth rate {self.growth_rate}, "
            f"width {self.width})"
        )

    def stages(self) -> Iterator[tuple[list[tuple[str, DenseLayer]], Transition]]:
        """Per dense block: its ``(keras_name, layer)`` list and the transition
        after it (None after the last)."""
        for b, num_layers in enumerate(self.blocks):
            names = [layer_name(b, i) for i in range(num_layers)]
            transition = getattr(self, f"pool{b + 2}", None)
            yield [(name, getattr(self, name)) for name in names], transition

    @property
    def study_taps(self) -> tuple[str, ...]:
        last = [f"{layer_name(b, n - 1)}_concat" for b, n in enumerate(self.blocks)]
        return ("conv1_relu", *last[:-1], "relu")

    @property
    def all_taps(self) -> tuple[str, ...]:
        every = [
            f"{layer_name(b, i)}_concat"
            for b, n in enumerate(self.blocks)
            for i in range(n)
        ]
        return ("conv1_relu", *every, "relu", "pooled")

    def keras_layers(self) -> list[layers.KerasLayer]:
        """The weighted layers in Keras order (network order: a chain)."""
        found = [
            layers.KerasLayer("conv1_conv", "conv", self.conv1_conv),
            layers.KerasLayer("conv1_bn", "bn", self.conv1_bn),
        ]
        for b, (dense_layers, transition) in enumerate(self.stages()):
            for name, layer in dense_layers:
                found += [
                    layers.KerasLayer(f"{name}_0_bn", "bn", layer.bn0),
                    layers.KerasLayer(f"{name}_1_conv", "conv", layer.conv1),
                    layers.KerasLayer(f"{name}_1_bn", "bn", layer.bn1),
                    layers.KerasLayer(f"{name}_2_conv", "conv", layer.conv2),
                ]
            if transition is not None:
                found += [
                    layers.KerasLayer(f"pool{b + 2}_bn", "bn", transition.bn),
                    layers.KerasLayer(f"pool{b + 2}_conv", "conv", transition.conv),
                ]
        return found + [layers.KerasLayer("bn", "bn", self.bn)]

    def body(self, x, bn_train, remat, acts):
        frozen = not bn_train
        x = layers.pad(x, 3)
        x = nnx.relu(self.conv1_bn(self.conv1_conv(x), use_running_average=frozen))
        acts["conv1_relu"] = x
        x = layers.max_pool(layers.pad(x, 1))  # post-ReLU: zero padding is -inf's
        for dense_layers, transition in self.stages():
            for name, layer in dense_layers:
                x = layers.run_block(layer, x, bn_train, remat)
                acts[f"{name}_concat"] = x
            if transition is not None:
                x = layers.run_block(transition, x, bn_train, remat)
        x = nnx.relu(self.bn(x, use_running_average=frozen))
        acts["relu"] = x
        return x


def DenseNet121(**kwargs) -> DenseNet:  # noqa: N802 (keras.applications.DenseNet121)
    """Keras's DenseNet121; keyword arguments as for ``DenseNet``."""
    return DenseNet(blocks=DENSENET121_BLOCKS, **kwargs)
