"""Keras HDF5 weights -> a jaxtransfer checkpoint, for every backbone of the registry.

Reads the three layouts users meet: the weights-only ImageNet ``..._notop.h5``, a
full-model file with ``model_weights`` and ``model_config`` (how RadImageNet's
``RadImageNet-<backbone>_notop.h5`` files are distributed) and a fine-tuned model
whose backbone is a nested sub-model next to a Dense head (how the study saves
its models). The architecture is told from the file's layer names (ResNet50 or a
Keras-named ResNet of other depth, DenseNet121/169/201, InceptionV3,
InceptionResNetV2), or named with ``model=`` (``--model``); layers are matched to
it (models/formats/keras_layout.py), every array shape-checked.

``export`` writes the other way: a weights-only file in the layout of the Keras
``..._notop.h5`` downloads, which ``ResNet50(include_top=False).load_weights``
(or ``DenseNet121``'s) reads in TF-Keras 2 or Keras 3, the head, if any, last as
the layer ``dense``. HDF5 -> Flax -> HDF5 preserves every array bit for bit. The
command lines are ``converters.keras_h5`` and ``converters.to_keras_h5``.
"""

import os
import re
from collections.abc import Callable

import jax
import numpy as np
from flax import nnx

from jaxtransfer import models
from jaxtransfer.models import densenet, inception, layers, pretrained, resnet
from jaxtransfer.models.formats import keras_layout
from jaxtransfer.runtime import files

IMAGENET_CLASSES = 1000


def _head_config(model_config: dict | None, dense_name: str) -> tuple[float, str]:
    """Dropout rate before the head and the head's activation, from model_config."""
    dropout, activation = 0.0, "softmax"
    if not model_config:
        return dropout, activation
    for layer in model_config.get("config", {}).get("layers", []):
        config = layer.get("config", {})
        if layer.get("class_name") == "Dropout":
            dropout = float(config.get("rate", 0.0))
        if layer.get("class_name") == "Dense" and config.get("name") == dense_name:
            activation = config.get("activation", activation)
    return dropout, activation


def _blocks(names: set[str], pattern: str) -> dict[int, int]:
    """Stage -> its number of blocks, from names like ``conv3_block4_...``."""
    blocks: dict[int, int] = {}
    for name in names:
        match = re.fullmatch(pattern, name)
        if match:
            stage, block = int(match[1]), int(match[2])
            blocks[stage] = max(blocks.get(stage, 0), block)
    return blocks


def _out_channels(kfile: keras_layout.KerasFile, name: str) -> int | None:
    for layer in kfile.layers:
        if keras_layout.leaf(layer.name) == name:
            return int(layer.arrays[0].shape[-1])
    return None


def _detect(kfile: keras_layout.KerasFile) -> Callable[..., layers.Backbone]:
    """The constructor of the file's architecture, told from its layer names.

    Keras 2.2+ names tell a ResNet's depth and width (``conv3_block2_1_conv``) and
    a DenseNet's blocks and growth rate; files with names this cannot read (the
    old ``res2a_branch2a``, renamed layers) are taken for ResNet50.
    """
    names = {keras_layout.leaf(layer.name) for layer in kfile.layers}
    if any(re.fullmatch(r"block(35|17|8)_\d+_conv|conv_7b", n) for n in names):
        return models.get("inception_resnet_v2")
    dense = _blocks(names, r"conv(\d)_block(\d+)_0_bn")
    transitions = {n for n in names if re.fullmatch(r"pool[2-4]_conv", n)}
    if sorted(dense) == [2, 3, 4, 5] and transitions:
        blocks = [dense[stage] for stage in (2, 3, 4, 5)]
        growth = _out_channels(kfile, "conv2_block1_2_conv") or 32
        width = int(kfile.layers[0].arrays[0].shape[-1])
        return lambda **kw: densenet.DenseNet(
            blocks=blocks, growth_rate=growth, width=width, **kw
        )
    residual = _blocks(names, r"conv([2-5])_block(\d+)_\d_conv")
    width = _out_channels(kfile, "conv1_conv")
    if sorted(residual) == [2, 3, 4, 5] and width:
        stage_sizes = [residual[stage] for stage in (2, 3, 4, 5)]
        return lambda **kw: resnet.ResNet(stage_sizes=stage_sizes, width=width, **kw)
    auto_convs = sum(1 for n in names if re.fullmatch(r"conv2d(_\d+)?", n))
    if auto_convs == inception.V3_UNITS:
        return models.get("inception_v3")
    return models.get("resnet50")


def _check_shapes(expected_name: str, file_layer, variables) -> None:
    if len(file_layer.arrays) != len(variables):
        raise keras_layout.KerasFileError(
            f"layer {expected_name}: expected {len(variables)} arrays, found "
            f"{file_layer.describe()}"
        )
    for variable, array in zip(variables, file_layer.arrays):
        if tuple(array.shape) != tuple(variable.get_value().shape):
            raise keras_layout.KerasFileError(
                f"shape mismatch at layer {expected_name}: the model expects "
                f"{tuple(variable.get_value().shape)}, {file_layer.describe()}"
            )


def _assign(variables, arrays) -> None:
    for variable, array in zip(variables, arrays):
        variable.set_value(np.asarray(array, dtype=np.float32))


def _match(
    path: str, arch: str, model: layers.Backbone, kfile: keras_layout.KerasFile
) -> tuple[list[keras_layout.FileLayer], list[keras_layout.FileLayer]]:
    """The file layers for ``model.keras_layers()`` and the rest (a head, if any),
    kind- and shape-checked; errors name the expected and the found layer."""
    template = model.keras_layers()
    if model.keras_order == "creation":
        backbone, rest = keras_layout.in_creation_order(
            path, arch, template, kfile.layers
        )
    else:
        backbone, rest = kfile.layers[: len(template)], kfile.layers[len(template) :]
    for expected, file_layer in zip(template, backbone):
        if file_layer.kind != expected.kind:
            raise keras_layout.KerasFileError(
                f"{path} is not a Keras {arch}: layer {expected.name} should be a "
                f"{expected.kind}, found {file_layer.describe()}"
            )
    if len(backbone) < len(template) or len(rest) > 1:
        extra = ", ".join(keras_layout.leaf(layer.name) for layer in rest[:4])
        raise keras_layout.KerasFileError(
            f"{path} is not a Keras {arch}: it has {len(kfile.layers)} weighted "
            f"layers, where {arch} has {len(template)} plus at most one Dense head"
            + (f" (left over: {extra}, ...)" if len(rest) > 1 else "")
        )
    if rest and rest[0].kind != "dense":
        raise keras_layout.KerasFileError(
            f"{path}: after the {arch} backbone expected a Dense head, found "
            f"{rest[0].describe()}"
        )
    for expected, file_layer in zip(template, backbone):
        variables = keras_layout.module_variables(expected.module)
        _check_shapes(expected.name, file_layer, variables)
    return backbone, rest


def convert(
    path: str | os.PathLike, keep_top: bool = False, model: str | None = None
) -> tuple[layers.Backbone, dict]:
    """Loads a Keras HDF5 backbone (and its head, if any) into Flax.

    Args:
      path: the HDF5 file, in any of the three layouts.
      keep_top: keep a 1000-class ImageNet top as the head (dropped by default).
      model: a ``models.MODELS`` name; by default told from the file's names.

    Returns:
      ``(model, metadata)``; the model has a head when the file had one.
    """
    path = str(path)
    kfile = keras_layout.read(path)
    make = models.get(model) if model else _detect(kfile)
    # The backbones have no Dense layer: a file's one Dense layer is its head
    # (the matching below refuses any other layer left over).
    dense = [layer for layer in kfile.layers if layer.kind == "dense"]
    head = dense[0] if len(dense) == 1 else None
    nested = any(layer.nested_in for layer in kfile.layers)
    notes = []
    num_classes, dropout, activation = None, 0.0, None
    if head is not None:
        if not nested and head.arrays[0].shape[1] == IMAGENET_CLASSES and not keep_top:
            notes.append(
                f"the file holds a {IMAGENET_CLASSES}-class top ('{head.name}'); it "
                "was dropped and the base loaded (pass --keep_top to keep it)"
            )
            head = None
        else:
            num_classes = int(head.arrays[0].shape[1])
            dropout, activation = _head_config(kfile.model_config, head.name)
            if not nested:
                dropout = 0.0  # include_top=True: GAP -> Dense, no dropout.

    # Every variable comes from the file: the model is built from shapes alone
    # (no random init).
    network = nnx.eval_shape(
        lambda: make(num_classes=num_classes, head_dropout=dropout, rngs=nnx.Rngs(0))
    )
    arch = network.display_name
    backbone, _ = _match(path, arch, network, kfile)
    for expected, file_layer in zip(network.keras_layers(), backbone):
        _assign(keras_layout.module_variables(expected.module), file_layer.arrays)
    if head is not None:
        features = network.num_features
        if head.arrays[0].shape[0] != features:
            raise keras_layout.KerasFileError(
                f"shape mismatch at the head: expected ({features}, classes), "
                f"{head.describe()}"
            )
        _check_shapes("head", head, keras_layout.module_variables(network.head))
        _assign(keras_layout.module_variables(network.head), head.arrays)
    unset = [
        ".".join(map(str, key))
        for key, value in nnx.to_flat_state(nnx.state(network))
        if isinstance(value.get_value(), jax.ShapeDtypeStruct)
    ]
    if unset:  # a model with variables outside keras_layers()
        raise RuntimeError(f"{arch}: the file sets no value for {unset[:5]}")

    metadata = pretrained.make_metadata(
        network,
        source_file=os.path.basename(path),
        source_sha256=pretrained.sha256_of(path),
        source_format="keras_h5",
        source_layout=kfile.layout,
        source_keras_version=kfile.keras_version,
        head_activation=activation,
        notes=notes,
    )
    return network, metadata


def _in_load_order(model: layers.Backbone) -> list[layers.KerasLayer]:
    """The weighted layers in the order Keras loads a weights file: the network
    order for a chain, Keras's graph order for a network with branches."""
    template = model.keras_layers()
    if model.keras_order == "file":
        return template
    graph, output = model.keras_graph()
    by_module = {id(layer.module): layer for layer in template}
    order = keras_layout.graph_order(graph.inputs, output)
    modules = [graph.modules[node] for node in order]
    return [by_module[id(m)] for m in modules if m is not None]


def keras_weights(
    model: layers.Backbone, include_head: bool = True
) -> list[tuple[str, str, list[np.ndarray]]]:
    """``(keras_layer_name, kind, arrays)`` for every weighted layer, in the order
    Keras loads them."""
    if model.variant != "keras":
        raise ValueError(
            f"only the Keras layout can be exported to Keras, got {model.variant!r}"
        )
    found = [
        (
            layer.name,
            layer.kind,
            [
                np.asarray(v.get_value())
                for v in keras_layout.module_variables(layer.module)
            ],
        )
        for layer in _in_load_order(model)
    ]
    if include_head and model.head is not None:
        head = [
            np.asarray(v.get_value()) for v in keras_layout.module_variables(model.head)
        ]
        found.append(("dense", "dense", head))
    return found


def export(model: layers.Backbone, path: str | os.PathLike, include_head=True) -> None:
    """Writes ``model`` as a Keras weights-only HDF5, atomically."""
    with files.atomic_file(path) as partial:
        keras_layout.write_weights(partial, keras_weights(model, include_head))
