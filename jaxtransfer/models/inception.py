"""InceptionV3 and InceptionResNetV2 in Flax NNX, numerically Keras's.

Both are built from Keras's ``conv2d_bn``: a conv without bias, BatchNorm without
a scale (epsilon 1e-3) and a ReLU (``ConvBN``). Keras names those layers itself
(``conv2d_17``, ``batch_normalization_17``), in the order the code creates them,
so each block lists its units in that order (``units``) and the converter matches
a file's layers by their numbers (models/formats/keras_layout.py). Modules are
named after the branch variables of Keras's code (``branch7x7dbl_3``).

Taps: the five stem units (``stem1`` .. ``stem5``) and every block output under its
Keras name (``mixed0`` .. ``mixed10``; ``mixed_5b``, ``block35_1`` .. ``block8_10``,
``mixed_6a``, ``mixed_7a``, ``conv_7b``). The study's five sit at strides 2, 4,
8, 16 and 32, as ResNet50's (docs/analysis.md#backbones).
"""

from collections.abc import Iterator, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxtransfer.models import layers


class ConvBN(nnx.Module):
    """Keras ``conv2d_bn``: conv (no bias), BatchNorm (no scale), optional ReLU."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel: int | Sequence[int],
        *,
        strides: int = 1,
        padding: str = "same",
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
        self.out_features = out_features

    def __call__(self, x: jax.Array, bn_train: bool) -> jax.Array:
        return nnx.relu(self.bn(self.conv(x), use_running_average=not bn_train))


class Block(nnx.Module):
    """A block of ConvBN units in named branches. ``units_spec`` lists them, in the
    order Keras creates them, as ``(name, input, out_features, kernel, strides,
    padding)``, where ``input`` is the unit it reads (None: the block's input);
    a subclass sets the widths it reads before calling ``Block.__init__``."""

    UNITS: tuple = ()

    def __init__(self, in_features: int, *, dtype, rngs):
        features = {None: in_features}
        for name, source, out, kernel, strides, padding in self.units_spec():
            unit = ConvBN(
                features[source], out, kernel, strides=strides, padding=padding,
                dtype=dtype, rngs=rngs,
            )  # fmt: skip
            setattr(self, name, unit)
            features[name] = out

    def units_spec(self) -> tuple:
        return self.UNITS

    def units(self) -> Iterator[tuple[str, ConvBN]]:
        """``(name, unit)`` in Keras's creation order."""
        for name, *_ in self.units_spec():
            yield name, getattr(self, name)

    def _chain(self, x, bn_train, *names):
        for name in names:
            x = getattr(self, name)(x, bn_train)
        return x


def _stem(in_features, *, dtype, rngs) -> list[ConvBN]:
    """The stem both networks share: five ConvBN units (two max pools between)."""
    spec = [(32, 3, 2, "valid"), (32, 3, 1, "valid"), (64, 3, 1, "same"),
            (80, 1, 1, "valid"), (192, 3, 1, "valid")]  # fmt: skip
    units, features = [], in_features
    for out, kernel, strides, padding in spec:
        units.append(
            ConvBN(features, out, kernel, strides=strides, padding=padding,
                   dtype=dtype, rngs=rngs)
        )  # fmt: skip
        features = out
    return units


class _Stemmed(layers.Backbone):
    """The two Inceptions: the shared stem, Keras's minimum size, creation order."""

    min_size = 75  # Keras's
    keras_order = "creation"

    @property
    def architecture(self) -> dict:
        return {}

    @property
    def stem_conv(self) -> nnx.Conv:
        return self.stem1.conv


def _run_stem(model, x, bn_train, acts):
    for k in range(1, 6):
        x = getattr(model, f"stem{k}")(x, bn_train)
        acts[f"stem{k}"] = x
        if k in (3, 5):
            x = layers.max_pool(x)
    return x


S, V = "same", "valid"
V3_UNITS = 94  # InceptionV3's conv2d_bn units: 94 auto-named convs in a Keras file


# --- InceptionV3 -----------------------------------------------------------------


class InceptionA(Block):
    """mixed0-2: 1x1, 5x5, double 3x3 and pooled branches."""

    def __init__(self, in_features, pool_features, *, dtype, rngs):
        self.pool_features = pool_features
        super().__init__(in_features, dtype=dtype, rngs=rngs)

    def units_spec(self):
        pool_features = self.pool_features
        return (
            ("branch1x1", None, 64, 1, 1, S),
            ("branch5x5_1", None, 48, 1, 1, S),
            ("branch5x5_2", "branch5x5_1", 64, 5, 1, S),
            ("branch3x3dbl_1", None, 64, 1, 1, S),
            ("branch3x3dbl_2", "branch3x3dbl_1", 96, 3, 1, S),
            ("branch3x3dbl_3", "branch3x3dbl_2", 96, 3, 1, S),
            ("branch_pool", None, pool_features, 1, 1, S),
        )

    def __call__(self, x, bn_train):
        return jnp.concatenate(
            [
                self.branch1x1(x, bn_train),
                self._chain(x, bn_train, "branch5x5_1", "branch5x5_2"),
                self._chain(
                    x, bn_train, "branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"
                ),
                self.branch_pool(layers.average_pool_same(x), bn_train),
            ],
            axis=-1,
        )


class ReductionA(Block):
    """mixed3: strided 3x3, strided double 3x3 and max-pooled branches."""

    UNITS = (
        ("branch3x3", None, 384, 3, 2, V),
        ("branch3x3dbl_1", None, 64, 1, 1, S),
        ("branch3x3dbl_2", "branch3x3dbl_1", 96, 3, 1, S),
        ("branch3x3dbl_3", "branch3x3dbl_2", 96, 3, 2, V),
    )

    def __call__(self, x, bn_train):
        return jnp.concatenate(
            [
                self.branch3x3(x, bn_train),
                self._chain(
                    x, bn_train, "branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"
                ),
                layers.max_pool(x),
            ],
            axis=-1,
        )


class InceptionC(Block):
    """mixed4-7: 1x1, factorised 7x7, double factorised 7x7 and pooled branches."""

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
            ("branch_pool", None, 192, 1, 1, S),
        )

    def __call__(self, x, bn_train):
        double = [f"branch7x7dbl_{k}" for k in range(1, 6)]
        return jnp.concatenate(
            [
                self.branch1x1(x, bn_train),
                self._chain(x, bn_train, "branch7x7_1", "branch7x7_2", "branch7x7_3"),
                self._chain(x, bn_train, *double),
                self.branch_pool(layers.average_pool_same(x), bn_train),
            ],
            axis=-1,
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

    def __call__(self, x, bn_train):
        seven = [f"branch7x7x3_{k}" for k in range(1, 5)]
        return jnp.concatenate(
            [
                self._chain(x, bn_train, "branch3x3_1", "branch3x3_2"),
                self._chain(x, bn_train, *seven),
                layers.max_pool(x),
            ],
            axis=-1,
        )


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
        ("branch_pool", None, 192, 1, 1, S),
    )

    def __call__(self, x, bn_train):
        split = self.branch3x3_1(x, bn_train)
        double = self._chain(x, bn_train, "branch3x3dbl_1", "branch3x3dbl_2")
        return jnp.concatenate(
            [
                self.branch1x1(x, bn_train),
                self.branch3x3_2a(split, bn_train),
                self.branch3x3_2b(split, bn_train),
                self.branch3x3dbl_3a(double, bn_train),
                self.branch3x3dbl_3b(double, bn_train),
                self.branch_pool(layers.average_pool_same(x), bn_train),
            ],
            axis=-1,
        )


class InceptionV3(_Stemmed):
    """Keras's InceptionV3 with an optional classification head (as ``ResNet``'s)."""

    BLOCKS = ("mixed0", "mixed1", "mixed2", "mixed3", "mixed4", "mixed5", "mixed6",
              "mixed7", "mixed8", "mixed9", "mixed10")  # fmt: skip

    def __init__(
        self,
        *,
        num_classes: int | None = None,
        head_dropout: float = 0.5,
        dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        for k, unit in enumerate(_stem(3, dtype=dtype, rngs=rngs), start=1):
            setattr(self, f"stem{k}", unit)
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
        self._init_head(2048, num_classes, head_dropout, dtype, rngs)

    @property
    def study_taps(self) -> tuple[str, ...]:
        return ("stem1", "stem5", "mixed2", "mixed7", "mixed10")

    @property
    def all_taps(self) -> tuple[str, ...]:
        return (*(f"stem{k}" for k in range(1, 6)), *self.BLOCKS, "pooled")

    def keras_layers(self) -> list[layers.KerasLayer]:
        """Every ConvBN unit's conv and BatchNorm, in Keras's creation order."""
        units = [getattr(self, f"stem{k}") for k in range(1, 6)]
        for name in self.BLOCKS:
            units += [unit for _, unit in getattr(self, name).units()]
        return _auto_named(units)

    def body(self, x, bn_train, remat, acts):
        x = _run_stem(self, x, bn_train, acts)
        for name in self.BLOCKS:
            x = layers.run_block(getattr(self, name), x, bn_train, remat)
            acts[name] = x
        return x


def _auto_named(units: Sequence[ConvBN], start: int = 0) -> list[layers.KerasLayer]:
    """Keras's own names for ConvBN units created in this order, the first of them
    Keras's ``start``-th auto-named conv and BatchNorm."""
    found = []
    for k, unit in enumerate(units, start=start):
        suffix = f"_{k}" if k else ""
        found += [
            layers.KerasLayer(f"conv2d{suffix}", "conv", unit.conv, auto=True),
            layers.KerasLayer(f"batch_normalization{suffix}", "bn", unit.bn, auto=True),
        ]
    return found


# --- InceptionResNetV2 -----------------------------------------------------------


class Mixed5b(Block):
    """mixed_5b: 1x1, 5x5, double 3x3 and pooled branches (320 channels)."""

    UNITS = (
        ("branch_0", None, 96, 1, 1, S),
        ("branch_1_1", None, 48, 1, 1, S),
        ("branch_1_2", "branch_1_1", 64, 5, 1, S),
        ("branch_2_1", None, 64, 1, 1, S),
        ("branch_2_2", "branch_2_1", 96, 3, 1, S),
        ("branch_2_3", "branch_2_2", 96, 3, 1, S),
        ("branch_pool", None, 64, 1, 1, S),
    )

    def __call__(self, x, bn_train):
        return jnp.concatenate(
            [
                self.branch_0(x, bn_train),
                self._chain(x, bn_train, "branch_1_1", "branch_1_2"),
                self._chain(x, bn_train, "branch_2_1", "branch_2_2", "branch_2_3"),
                self.branch_pool(layers.average_pool_same(x), bn_train),
            ],
            axis=-1,
        )


class Mixed6a(Block):
    """mixed_6a: strided 3x3, strided double 3x3 and max-pooled branches."""

    UNITS = (
        ("branch_0", None, 384, 3, 2, V),
        ("branch_1_1", None, 256, 1, 1, S),
        ("branch_1_2", "branch_1_1", 256, 3, 1, S),
        ("branch_1_3", "branch_1_2", 384, 3, 2, V),
    )

    def __call__(self, x, bn_train):
        return jnp.concatenate(
            [
                self.branch_0(x, bn_train),
                self._chain(x, bn_train, "branch_1_1", "branch_1_2", "branch_1_3"),
                layers.max_pool(x),
            ],
            axis=-1,
        )


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

    def __call__(self, x, bn_train):
        return jnp.concatenate(
            [
                self._chain(x, bn_train, "branch_0_1", "branch_0_2"),
                self._chain(x, bn_train, "branch_1_1", "branch_1_2"),
                self._chain(x, bn_train, "branch_2_1", "branch_2_2", "branch_2_3"),
                layers.max_pool(x),
            ],
            axis=-1,
        )


# block type -> (residual scale, branches as (name, input, out, kernel)).
_RESIDUAL_BRANCHES = {
    "block35": (
        ("branch_0", None, 32, 1),
        ("branch_1_1", None, 32, 1),
        ("branch_1_2", "branch_1_1", 32, 3),
        ("branch_2_1", None, 32, 1),
        ("branch_2_2", "branch_2_1", 48, 3),
        ("branch_2_3", "branch_2_2", 64, 3),
    ),
    "block17": (
        ("branch_0", None, 192, 1),
        ("branch_1_1", None, 128, 1),
        ("branch_1_2", "branch_1_1", 160, (1, 7)),
        ("branch_1_3", "branch_1_2", 192, (7, 1)),
    ),
    "block8": (
        ("branch_0", None, 192, 1),
        ("branch_1_1", None, 192, 1),
        ("branch_1_2", "branch_1_1", 224, (1, 3)),
        ("branch_1_3", "branch_1_2", 256, (3, 1)),
    ),
}


class ResidualBlock(Block):
    """Keras ``inception_resnet_block``: branches, concatenated, a 1x1 conv with
    bias back to the input's width (``conv``, Keras ``<block>_conv``), added to the
    input times ``scale``, then a ReLU unless ``activation`` is False."""

    def __init__(self, in_features, block_type, scale, activation, *, dtype, rngs):
        self.block_type = block_type
        super().__init__(in_features, dtype=dtype, rngs=rngs)
        mixed = sum(
            out
            for name, _, out, _ in _RESIDUAL_BRANCHES[block_type]
            if not self._feeds_another(name, block_type)
        )
        self.conv = layers.conv(mixed, in_features, 1, dtype=dtype, rngs=rngs)
        self.scale = scale
        self.activation = activation

    @staticmethod
    def _feeds_another(name, block_type):
        return any(src == name for _, src, _, _ in _RESIDUAL_BRANCHES[block_type])

    def units_spec(self):
        return tuple(
            (name, src, out, kernel, 1, S)
            for name, src, out, kernel in _RESIDUAL_BRANCHES[self.block_type]
        )

    def __call__(self, x, bn_train):
        outputs = {None: x}
        branches = []
        for name, src, _, _ in _RESIDUAL_BRANCHES[self.block_type]:
            outputs[name] = getattr(self, name)(outputs[src], bn_train)
            if not self._feeds_another(name, self.block_type):
                branches.append(outputs[name])
        up = self.conv(jnp.concatenate(branches, axis=-1))
        x = x + up * self.scale  # Keras CustomScaleLayer: inputs[0] + inputs[1] * s
        return nnx.relu(x) if self.activation else x


class InceptionResNetV2(_Stemmed):
    """Keras's InceptionResNetV2 with an optional head (as ``ResNet``'s)."""

    # (block type, count, residual scale); the last block8 has no ReLU.
    REPEATS = (("block35", 10, 0.17), ("block17", 20, 0.1), ("block8", 10, 0.2))

    def __init__(
        self,
        *,
        num_classes: int | None = None,
        head_dropout: float = 0.5,
        dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        for k, unit in enumerate(_stem(3, dtype=dtype, rngs=rngs), start=1):
            setattr(self, f"stem{k}", unit)
        kw = dict(dtype=dtype, rngs=rngs)
        self.mixed_5b = Mixed5b(192, **kw)
        reductions = {"block35": ("mixed_6a", Mixed6a, 1088),
                      "block17": ("mixed_7a", Mixed7a, 2080)}  # fmt: skip
        features = 320
        for block_type, count, scale in self.REPEATS:
            for k in range(1, count + 1):
                last = block_type == "block8" and k == count
                block = ResidualBlock(
                    features, block_type, 1.0 if last else scale, not last, **kw
                )
                setattr(self, f"{block_type}_{k}", block)
            if block_type in reductions:
                name, make, out = reductions[block_type]
                setattr(self, name, make(features, **kw))
                features = out
        self.conv_7b = ConvBN(2080, 1536, 1, **kw)
        self._init_head(1536, num_classes, head_dropout, dtype, rngs)

    def blocks(self) -> list[str]:
        """Block names in network order, from ``mixed_5b`` to ``conv_7b``."""
        names = ["mixed_5b"]
        after = {"block35": "mixed_6a", "block17": "mixed_7a", "block8": "conv_7b"}
        for block_type, count, _ in self.REPEATS:
            names += [f"{block_type}_{k}" for k in range(1, count + 1)]
            names.append(after[block_type])
        return names

    @property
    def study_taps(self) -> tuple[str, ...]:
        return ("stem1", "stem5", "block35_10", "block17_20", "conv_7b")

    @property
    def all_taps(self) -> tuple[str, ...]:
        return (*(f"stem{k}" for k in range(1, 6)), *self.blocks(), "pooled")

    def keras_layers(self) -> list[layers.KerasLayer]:
        """In Keras's creation order: auto-named ConvBN units, each residual
        block's ``<block>_conv`` after its branches, ``conv_7b`` and its BN last."""
        found, count = [], 0
        pending = [getattr(self, f"stem{k}") for k in range(1, 6)]
        for name in self.blocks()[:-1]:
            block = getattr(self, name)
            pending += [unit for _, unit in block.units()]
            if isinstance(block, ResidualBlock):
                found += _auto_named(pending, start=count)
                count += len(pending)
                pending = []
                found.append(layers.KerasLayer(f"{name}_conv", "conv", block.conv))
        found += _auto_named(pending, start=count)
        return found + [
            layers.KerasLayer("conv_7b", "conv", self.conv_7b.conv),
            layers.KerasLayer("conv_7b_bn", "bn", self.conv_7b.bn),
        ]

    def body(self, x, bn_train, remat, acts):
        x = _run_stem(self, x, bn_train, acts)
        for name in self.blocks():
            x = layers.run_block(getattr(self, name), x, bn_train, remat)
            acts[name] = x
        return x
