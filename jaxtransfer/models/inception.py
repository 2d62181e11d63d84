"""InceptionV3 and InceptionResNetV2 in Flax NNX, numerically Keras's.

Both are built from Keras's ``conv2d_bn``: a conv without bias, BatchNorm without
a scale (epsilon 1e-3) and a ReLU (``ConvBN``). A block is declared once, as data:
its units in the order Keras's code creates them (``UNITS``: name, input, width,
kernel, strides, padding) and how their outputs are concatenated (``OUTPUTS``).
The forward pass and the Keras layer graph (``keras_graph``, which export needs)
both read that declaration. Keras names the units' layers itself (``conv2d_17``,
``batch_normalization_17``) in creation order, and the converter matches a file's
layers by those numbers (models/formats/keras_layout.py). Module names follow the
branch variables of Keras's code (``branch7x7dbl_3``).

Taps: the five stem units (``stem1`` .. ``stem5``) and every block output under its
Keras name (``mixed0`` .. ``mixed10``; ``mixed_5b``, ``block35_1`` .. ``block8_10``,
``mixed_6a``, ``mixed_7a``, ``conv_7b``). The study's five sit at strides 2, 4,
8, 16 and 32, as ResNet50's do (docs/analysis.md#backbones).
"""

from collections.abc import Iterator, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxtransfer.models import layers

S, V = "same", "valid"
AVG = "avg_pool"  # a unit input: the block's input average-pooled (3x3, same)
MAX = "max_pool"  # a block output: the block's input max-pooled (3x3, stride 2)
V3_UNITS = 94  # InceptionV3's conv2d_bn units: 94 auto-named convs in a Keras file


class ConvBN(nnx.Module):
    """Keras ``conv2d_bn``: conv (no bias), BatchNorm (no scale), ReLU."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel: int | Sequence[int],
        *,
        strides: int = 1,
        padding: str = S,
        dtype: jnp.dtype,
        rngs: nnx.Rngs,
    ):
        self.conv = layers.conv(
            in_features, out_features, kernel, strides=strides, padding=padding,
            use_bias=False, dtype=dtype, rngs=rngs,
        )  # fmt: skip
        self.bn = layers.batch_norm(
            out_features, use_scale=False, dtype=dtype, rngs=rngs
        )

    def __call__(self, x: jax.Array, bn_train: bool) -> jax.Array:
        return nnx.relu(self.bn(self.conv(x), use_running_average=not bn_train))

    def keras_graph(self, graph: "KerasGraph", x: int) -> int:
        """Keras's Conv2D, BatchNormalization and Activation: three layers."""
        return graph.add(graph.add(graph.add(x, self.conv), self.bn))


class KerasGraph:
    """Keras's layer graph of a network: every layer (weighted or not) as a node
    with its inputs in order. Keras's order of weighted layers follows from it
    (models/formats/keras_layout.py, ``graph_order``)."""

    def __init__(self):
        self.inputs: list[list[int]] = [[]]  # node 0: the Input layer
        self.modules: list[nnx.Module | None] = [None]

    def add(self, inputs: int | Sequence[int], module: nnx.Module | None = None):
        """A layer reading ``inputs`` (one node or several, in order); its node."""
        self.inputs.append([inputs] if isinstance(inputs, int) else list(inputs))
        self.modules.append(module)
        return len(self.inputs) - 1


class Block(nnx.Module):
    """ConvBN units in named branches, concatenated.

    ``UNITS`` (or ``units_spec()``, for blocks with widths) lists the units in the
    order Keras creates them as ``(name, input, out_features, kernel, strides,
    padding)``; ``input`` is another unit, None (the block's input) or ``AVG``.
    ``OUTPUTS`` lists what is concatenated: units, ``MAX``, or a tuple of units
    concatenated first. A subclass sets the widths it reads before
    ``Block.__init__``.
    """

    UNITS: tuple = ()
    OUTPUTS: tuple = ()

    def __init__(self, in_features: int, *, dtype, rngs):
        features = {None: in_features, AVG: in_features}
        for name, source, out, kernel, strides, padding in self.units_spec():
            unit = ConvBN(
                features[source], out, kernel, strides=strides, padding=padding,
                dtype=dtype, rngs=rngs,
            )  # fmt: skip
            setattr(self, name, unit)
            features[name] = out
        self.out_features = _gather(
            self.OUTPUTS, lambda o: features[None if o == MAX else o], sum
        )

    def units_spec(self) -> tuple:
        return self.UNITS

    def units(self) -> Iterator[tuple[str, ConvBN]]:
        """``(name, unit)`` in Keras's creation order."""
        for name, *_ in self.units_spec():
            yield name, getattr(self, name)

    def __call__(self, x: jax.Array, bn_train: bool) -> jax.Array:
        values = {None: x}
        for name, source, *_ in self.units_spec():
            if source == AVG and AVG not in values:
                values[AVG] = layers.average_pool_same(x)
            values[name] = getattr(self, name)(values[source], bn_train)
        return _gather(
            self.OUTPUTS,
            lambda o: layers.max_pool(x) if o == MAX else values[o],
            lambda parts: jnp.concatenate(parts, axis=-1),
        )

    def keras_graph(self, graph: KerasGraph, x: int) -> int:
        nodes = {None: x}
        for name, source, *_ in self.units_spec():
            if source == AVG and AVG not in nodes:
                nodes[AVG] = graph.add(x)
            nodes[name] = getattr(self, name).keras_graph(graph, nodes[source])
        return _gather(
            self.OUTPUTS, lambda o: graph.add(x) if o == MAX else nodes[o], graph.add
        )


def _gather(outputs: tuple, value, join):
    """Walks a block's ``OUTPUTS``: ``value(o)`` of each unit name or ``MAX``,
    ``join(parts)`` of each concatenation (a nested tuple is one part)."""
    return join(
        [_gather(o, value, join) if isinstance(o, tuple) else value(o) for o in outputs]
    )


# --- the stem both networks share --------------------------------------------------

_STEM = ((32, 3, 2, V), (32, 3, 1, V), (64, 3, 1, S), (80, 1, 1, V), (192, 3, 1, V))
_POOL_AFTER = (3, 5)  # a 3x3/2 max pool follows stem3 and stem5


class _Inception(layers.Backbone):
    """What the two Inceptions share: the stem, a chain of blocks after it, Keras's
    minimum size and creation-order matching."""

    min_size = 75  # Keras's
    keras_order = "creation"

    def _init_stem(self, dtype, rngs):
        features = 3
        for k, (out, kernel, strides, padding) in enumerate(_STEM, start=1):
            unit = ConvBN(
                features, out, kernel, strides=strides, padding=padding,
                dtype=dtype, rngs=rngs,
            )  # fmt: skip
            setattr(self, f"stem{k}", unit)
            features = out

    @property
    def architecture(self) -> dict:
        return {}

    @property
    def stem_conv(self) -> nnx.Conv:
        return self.stem1.conv

    def blocks(self) -> list[str]:
        """Block names after the stem, in network order."""
        raise NotImplementedError

    @property
    def all_taps(self) -> tuple[str, ...]:
        return (*(f"stem{k}" for k in range(1, 6)), *self.blocks(), "pooled")

    def body(self, x, bn_train, remat, acts):
        for k in range(1, 6):
            x = getattr(self, f"stem{k}")(x, bn_train)
            acts[f"stem{k}"] = x
            if k in _POOL_AFTER:
                x = layers.max_pool(x)
        for name in self.blocks():
            x = layers.run_block(getattr(self, name), x, bn_train, remat)
            acts[name] = x
        return x

    def keras_graph(self) -> tuple[KerasGraph, int]:
        """The Keras layer graph and its output node (the last feature map)."""
        graph, x = KerasGraph(), 0
        for k in range(1, 6):
            x = getattr(self, f"stem{k}").keras_graph(graph, x)
            if k in _POOL_AFTER:
                x = graph.add(x)
        for name in self.blocks():
            x = getattr(self, name).keras_graph(graph, x)
        return graph, x

    def _units(self) -> Iterator[ConvBN | nnx.Conv]:
        """The auto-named ConvBN units and named convs, in Keras's creation order."""
        for k in range(1, 6):
            yield getattr(self, f"stem{k}")
        for name in self.blocks():
            block = getattr(self, name)
            if isinstance(block, ConvBN):
                yield block
                continue
            for _, unit in block.units():
                yield unit
            if isinstance(block, ResidualBlock):
                yield block.conv

    def keras_layers(self) -> list[layers.KerasLayer]:
        """Every weighted layer in Keras's creation order, under Keras's names: the
        auto-named ``conv2d_<k>``/``batch_normalization_<k>`` of each ConvBN unit,
        and the layers Keras names from the block (``block35_1_conv``, ``conv_7b``)."""
        found, count = [], 0
        named = self._named_layers()
        for unit in self._units():
            if id(unit) in named:
                found += named[id(unit)]
                continue
            suffix = f"_{count}" if count else ""
            found += [
                layers.KerasLayer(f"conv2d{suffix}", "conv", unit.conv, auto=True),
                layers.KerasLayer(
                    f"batch_normalization{suffix}", "bn", unit.bn, auto=True
                ),
            ]
            count += 1
        return found

    def _named_layers(self) -> dict[int, list[layers.KerasLayer]]:
        """id(unit) -> its layers, for the units Keras names from the block."""
        return {}


# --- InceptionV3 -------------------------------------------------------------------


class InceptionA(Block):
    """mixed0-2: 1x1, 5x5, double 3x3 and pooled branches."""

    OUTPUTS = ("branch1x1", "branch5x5_2", "branch3x3dbl_3", "branch_pool")

    def __init__(self, in_features, pool_features, *, dtype, rngs):
        self.pool_features = pool_features
        super().__init__(in_features, dtype=dtype, rngs=rngs)

    def units_spec(self):
        return (
            ("branch1x1", None, 64, 1, 1, S),
            ("branch5x5_1", None, 48, 1, 1, S),
            ("branch5x5_2", "branch5x5_1", 64, 5, 1, S),
            ("branch3x3dbl_1", None, 64, 1, 1, S),
            ("branch3x3dbl_2", "branch3x3dbl_1", 96, 3, 1, S),
            ("branch3x3dbl_3", "branch3x3dbl_2", 96, 3, 1, S),
            ("branch_pool", AVG, self.pool_features, 1, 1, S),
        )


class ReductionA(Block):
    """mixed3: strided 3x3, strided double 3x3 and max-pooled branches."""

    UNITS = (
        ("branch3x3", None, 384, 3, 2, V),
        ("branch3x3dbl_1", None, 64, 1, 1, S),
        ("branch3x3dbl_2", "branch3x3dbl_1", 96, 3, 1, S),
        ("branch3x3dbl_3", "branch3x3dbl_2", 96, 3, 2, V),
    )
    OUTPUTS = ("branch3x3", "branch3x3dbl_3", MAX)


class InceptionC(Block):
    """mixed4-7: 1x1, factorised 7x7, double factorised 7x7 and pooled branches."""

    OUTPUTS = ("branch1x1", "branch7x7_3", "branch7x7dbl_5", "branch_pool")

    def __init__(self, in_features, channels_7x7, *, dtype, rngs):
        self.channels_7x7 = channels_7x7
        super().__init__(in_features, dtype=dtype, rngs=rngs)

    def units_spec(self):
        c7 = self.channels_7x7
        return (
            ("branch1x1", None, 192, 1, 1, S),
            ("branch7x7_1", None, c7, 1, 1, S),
            ("branch7x7_2", "branch7x7_1", c7, (1, 7), 1, S),
            ("branch7x7_3", "branch7x7_2", 192, (7, 1), 1, S),
            ("branch7x7dbl_1", None, c7, 1, 1, S),
            ("branch7x7dbl_2", "branch7x7dbl_1", c7, (7, 1), 1, S),
            ("branch7x7dbl_3", "branch7x7dbl_2", c7, (1, 7), 1, S),
            ("branch7x7dbl_4", "branch7x7dbl_3", c7, (7, 1), 1, S),
            ("branch7x7dbl_5", "branch7x7dbl_4", 192, (1, 7), 1, S),
            ("branch_pool", AVG, 192, 1, 1, S),
        )


class ReductionB(Block):
    """mixed8: strided 3x3, strided 7x7x3 and max-pooled branches."""

    UNITS = (
        ("branch3x3_1", None, 192, 1, 1, S),
        ("branch3x3_2", "branch3x3_1", 320, 3, 2, V),
        ("branch7x7x3_1", None, 192, 1, 1, S),
        ("branch7x7x3_2", "branch7x7x3_1", 192, (1, 7), 1, S),
        ("branch7x7x3_3", "branch7x7x3_2", 192, (7, 1), 1, S),
        ("branch7x7x3_4", "branch7x7x3_3", 192, 3, 2, V),
    )
    OUTPUTS = ("branch3x3_2", "branch7x7x3_4", MAX)


class InceptionE(Block):
    """mixed9-10: 1x1, split 3x3, split double 3x3 and pooled branches."""

    UNITS = (
        ("branch1x1", None, 320, 1, 1, S),
        ("branch3x3_1", None, 384, 1, 1, S),
        ("branch3x3_2a", "branch3x3_1", 384, (1, 3), 1, S),
        ("branch3x3_2b", "branch3x3_1", 384, (3, 1), 1, S),
        ("branch3x3dbl_1", None, 448, 1, 1, S),
        ("branch3x3dbl_2", "branch3x3dbl_1", 384, 3, 1, S),
        ("branch3x3dbl_3a", "branch3x3dbl_2", 384, (1, 3), 1, S),
        ("branch3x3dbl_3b", "branch3x3dbl_2", 384, (3, 1), 1, S),
        ("branch_pool", AVG, 192, 1, 1, S),
    )
    OUTPUTS = (
        "branch1x1",
        ("branch3x3_2a", "branch3x3_2b"),
        ("branch3x3dbl_3a", "branch3x3dbl_3b"),
        "branch_pool",
    )


class InceptionV3(_Inception):
    """Keras's InceptionV3 with an optional classification head (as ``ResNet``'s)."""

    def __init__(
        self,
        *,
        num_classes: int | None = None,
        head_dropout: float = 0.5,
        dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        self._init_stem(dtype, rngs)
        kw = dict(dtype=dtype, rngs=rngs)
        self.mixed0 = InceptionA(192, 32, **kw)
        self.mixed1 = InceptionA(256, 64, **kw)
        self.mixed2 = InceptionA(288, 64, **kw)
        self.mixed3 = ReductionA(288, **kw)
        self.mixed4 = InceptionC(768, 128, **kw)
        self.mixed5 = InceptionC(768, 160, **kw)
        self.mixed6 = InceptionC(768, 160, **kw)
        self.mixed7 = InceptionC(768, 192, **kw)
        self.mixed8 = ReductionB(768, **kw)
        self.mixed9 = InceptionE(1280, **kw)
        self.mixed10 = InceptionE(2048, **kw)
        self._init_head(self.mixed10.out_features, num_classes, head_dropout, **kw)

    def blocks(self) -> list[str]:
        return [f"mixed{k}" for k in range(11)]

    @property
    def study_taps(self) -> tuple[str, ...]:
        return ("stem1", "stem5", "mixed2", "mixed7", "mixed10")


# --- InceptionResNetV2 -------------------------------------------------------------


class Mixed5b(Block):
    """mixed_5b: 1x1, 5x5, double 3x3 and pooled branches (320 channels)."""

    UNITS = (
        ("branch_0", None, 96, 1, 1, S),
        ("branch_1_1", None, 48, 1, 1, S),
        ("branch_1_2", "branch_1_1", 64, 5, 1, S),
        ("branch_2_1", None, 64, 1, 1, S),
        ("branch_2_2", "branch_2_1", 96, 3, 1, S),
        ("branch_2_3", "branch_2_2", 96, 3, 1, S),
        ("branch_pool", AVG, 64, 1, 1, S),
    )
    OUTPUTS = ("branch_0", "branch_1_2", "branch_2_3", "branch_pool")


class Mixed6a(Block):
    """mixed_6a: strided 3x3, strided double 3x3 and max-pooled branches."""

    UNITS = (
        ("branch_0", None, 384, 3, 2, V),
        ("branch_1_1", None, 256, 1, 1, S),
        ("branch_1_2", "branch_1_1", 256, 3, 1, S),
        ("branch_1_3", "branch_1_2", 384, 3, 2, V),
    )
    OUTPUTS = ("branch_0", "branch_1_3", MAX)


class Mixed7a(Block):
    """mixed_7a: three strided branches and a max-pooled one."""

    UNITS = (
        ("branch_0_1", None, 256, 1, 1, S),
        ("branch_0_2", "branch_0_1", 384, 3, 2, V),
        ("branch_1_1", None, 256, 1, 1, S),
        ("branch_1_2", "branch_1_1", 288, 3, 2, V),
        ("branch_2_1", None, 256, 1, 1, S),
        ("branch_2_2", "branch_2_1", 288, 3, 1, S),
        ("branch_2_3", "branch_2_2", 320, 3, 2, V),
    )
    OUTPUTS = ("branch_0_2", "branch_1_2", "branch_2_3", MAX)


# block type -> (units, outputs) of its residual branch.
_RESIDUAL = {
    "block35": (
        (
            ("branch_0", None, 32, 1, 1, S),
            ("branch_1_1", None, 32, 1, 1, S),
            ("branch_1_2", "branch_1_1", 32, 3, 1, S),
            ("branch_2_1", None, 32, 1, 1, S),
            ("branch_2_2", "branch_2_1", 48, 3, 1, S),
            ("branch_2_3", "branch_2_2", 64, 3, 1, S),
        ),
        ("branch_0", "branch_1_2", "branch_2_3"),
    ),
    "block17": (
        (
            ("branch_0", None, 192, 1, 1, S),
            ("branch_1_1", None, 128, 1, 1, S),
            ("branch_1_2", "branch_1_1", 160, (1, 7), 1, S),
            ("branch_1_3", "branch_1_2", 192, (7, 1), 1, S),
        ),
        ("branch_0", "branch_1_3"),
    ),
    "block8": (
        (
            ("branch_0", None, 192, 1, 1, S),
            ("branch_1_1", None, 192, 1, 1, S),
            ("branch_1_2", "branch_1_1", 224, (1, 3), 1, S),
            ("branch_1_3", "branch_1_2", 256, (3, 1), 1, S),
        ),
        ("branch_0", "branch_1_3"),
    ),
}


class ResidualBlock(Block):
    """Keras ``inception_resnet_block``: the branches, concatenated (Keras
    ``<block>_mixed``), a 1x1 conv with bias back to the input's width (``conv``,
    Keras ``<block>_conv``), added to the input times ``scale``, then a ReLU
    unless ``activation`` is False (the last block8)."""

    def __init__(self, in_features, block_type, scale, activation, *, dtype, rngs):
        self.block_type = block_type
        self.OUTPUTS = _RESIDUAL[block_type][1]
        super().__init__(in_features, dtype=dtype, rngs=rngs)
        mixed = self.out_features
        self.conv = layers.conv(mixed, in_features, 1, dtype=dtype, rngs=rngs)
        self.out_features = in_features
        self.scale = scale
        self.activation = activation

    def units_spec(self):
        return _RESIDUAL[self.block_type][0]

    def __call__(self, x, bn_train):
        up = self.conv(super().__call__(x, bn_train))
        x = x + up * self.scale  # Keras CustomScaleLayer: inputs[0] + inputs[1] * s
        return nnx.relu(x) if self.activation else x

    def keras_graph(self, graph, x):
        up = graph.add(super().keras_graph(graph, x), self.conv)
        out = graph.add([x, up])  # the scaled sum
        return graph.add(out) if self.activation else out


class InceptionResNetV2(_Inception):
    """Keras's InceptionResNetV2 with an optional head (as ``ResNet``'s)."""

    # (block type, count, residual scale); the last block8 has scale 1, no ReLU.
    REPEATS = (("block35", 10, 0.17), ("block17", 20, 0.1), ("block8", 10, 0.2))
    REDUCTIONS = {"block35": ("mixed_6a", Mixed6a), "block17": ("mixed_7a", Mixed7a)}

    def __init__(
        self,
        *,
        num_classes: int | None = None,
        head_dropout: float = 0.5,
        dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        self._init_stem(dtype, rngs)
        kw = dict(dtype=dtype, rngs=rngs)
        self.mixed_5b = Mixed5b(192, **kw)
        features = self.mixed_5b.out_features
        for block_type, count, scale in self.REPEATS:
            for k in range(1, count + 1):
                last = block_type == "block8" and k == count
                block = ResidualBlock(
                    features, block_type, 1.0 if last else scale, not last, **kw
                )
                setattr(self, f"{block_type}_{k}", block)
            if block_type in self.REDUCTIONS:
                name, make = self.REDUCTIONS[block_type]
                setattr(self, name, make(features, **kw))
                features = getattr(self, name).out_features
        self.conv_7b = ConvBN(features, 1536, 1, **kw)
        self._init_head(1536, num_classes, head_dropout, **kw)

    def blocks(self) -> list[str]:
        names = ["mixed_5b"]
        for block_type, count, _ in self.REPEATS:
            names += [f"{block_type}_{k}" for k in range(1, count + 1)]
            if block_type in self.REDUCTIONS:
                names.append(self.REDUCTIONS[block_type][0])
        return names + ["conv_7b"]

    @property
    def study_taps(self) -> tuple[str, ...]:
        return ("stem1", "stem5", "block35_10", "block17_20", "conv_7b")

    def _named_layers(self):
        named = {
            id(self.conv_7b): [
                layers.KerasLayer("conv_7b", "conv", self.conv_7b.conv),
                layers.KerasLayer("conv_7b_bn", "bn", self.conv_7b.bn),
            ]
        }
        for name in self.blocks():
            block = getattr(self, name)
            if isinstance(block, ResidualBlock):
                named[id(block.conv)] = [
                    layers.KerasLayer(f"{name}_conv", "conv", block.conv)
                ]
        return named
