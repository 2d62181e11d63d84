"""Keras HDF5 ResNet50 weights -> a jaxtransfer checkpoint.

Reads the three layouts users meet: the weights-only ImageNet ``..._notop.h5``, a
full-model file with ``model_weights`` and ``model_config`` (how
``RadImageNet-ResNet50_notop.h5`` is distributed) and a fine-tuned model whose
ResNet50 is a nested sub-model next to a Dense head (how the study saves its
models). Layers are matched by the ResNet50 topology, every array shape-checked.

``export`` writes the other way: a weights-only file in the layout of the Keras
``..._notop.h5`` downloads, which ``ResNet50(include_top=False).load_weights``
reads (TF-Keras 2 or Keras 3), the head, if any, last as the layer ``dense``.
HDF5 -> Flax -> HDF5 preserves every array bit for bit. The command lines are
``converters.keras_h5`` and ``converters.to_keras_h5``.
"""

import os
import re

import numpy as np
from flax import nnx

from jaxtransfer.models import pretrained, resnet
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


def _architecture(kfile: keras_layout.KerasFile) -> dict:
    """ResNet constructor arguments for the file: ResNet50 unless its names say so.

    Files with Keras 2.2+ layer names (``conv3_block2_1_conv``) may hold a ResNet of
    other depth or width (the demo's small sources); the stage sizes come from the
    block names and the width from ``conv1_conv``. Files with the old names
    (``res2a_branch2a``) are ResNet50.
    """
    blocks = {}
    for layer in kfile.layers:
        match = re.fullmatch(
            r"conv([2-5])_block(\d+)_\d_conv", layer.name.split("/")[-1]
        )
        if match:
            stage, block = int(match[1]), int(match[2])
            blocks[stage] = max(blocks.get(stage, 0), block)
    stem = [
        layer for layer in kfile.layers if layer.name.split("/")[-1] == "conv1_conv"
    ]
    if sorted(blocks) != [2, 3, 4, 5] or not stem:
        return {}
    stage_sizes = tuple(blocks[stage] for stage in (2, 3, 4, 5))
    width = int(stem[0].arrays[0].shape[-1])
    if (stage_sizes, width) == (resnet.RESNET50_STAGE_SIZES, 64):
        return {}
    return {"stage_sizes": stage_sizes, "width": width}


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


def convert(
    path: str | os.PathLike, keep_top: bool = False
) -> tuple[resnet.ResNet, dict]:
    """Loads a Keras HDF5 ResNet50 (or a Keras-named ResNet of other depth) into Flax.

    Args:
      path: the HDF5 file, in any of the three layouts.
      keep_top: keep a 1000-class ImageNet top as the head (dropped by default).

    Returns:
      ``(model, metadata)``; the model has a head when the file had one.
    """
    kfile = keras_layout.read(path)
    architecture = _architecture(kfile)
    layout_model = resnet.ResNet(**architecture, rngs=nnx.Rngs(0))
    template = keras_layout.backbone_layers(layout_model)
    arch = "ResNet50"
    if architecture:
        arch = "ResNet (blocks {stage_sizes}, width {width})".format(**architecture)
    backbone = kfile.layers[: len(template)]
    rest = kfile.layers[len(template) :]
    if len(backbone) < len(template) or len(rest) > 1:
        raise keras_layout.KerasFileError(
            f"{path} is not a Keras {arch}: it has {len(kfile.layers)} weighted "
            f"layers, where {arch} has {len(template)} plus at most one Dense head"
        )
    for (name, kind, _), file_layer in zip(template, backbone):
        if file_layer.kind != kind:
            raise keras_layout.KerasFileError(
                f"{path} is not a Keras {arch}: layer {name} should be a {kind}, "
                f"found {file_layer.describe()}"
            )
    if rest and rest[0].kind != "dense":
        raise keras_layout.KerasFileError(
            f"{path}: after the {arch} backbone expected a Dense head, found "
            f"{rest[0].describe()}"
        )
    for (name, _, module), file_layer in zip(template, backbone):
        _check_shapes(name, file_layer, keras_layout.module_variables(module))

    head = rest[0] if rest else None
    notes = []
    num_classes, dropout, activation = None, 0.0, None
    if head is not None:
        kernel = head.arrays[0]
        features = layout_model.num_features
        if kernel.shape[0] != features:
            raise keras_layout.KerasFileError(
                f"shape mismatch at the head: expected ({features}, classes), "
                f"{head.describe()}"
            )
        nested = any(layer.nested_in for layer in backbone)
        if not nested and kernel.shape[1] == IMAGENET_CLASSES and not keep_top:
            notes.append(
                f"the file holds a {IMAGENET_CLASSES}-class top ('{head.name}'); it "
                "was dropped and the base loaded (pass --keep_top to keep it)"
            )
            head = None
        else:
            num_classes = int(kernel.shape[1])
            dropout, activation = _head_config(kfile.model_config, head.name)
            if not nested:
                dropout = 0.0  # include_top=True: GAP -> Dense, no dropout.

    model = resnet.ResNet(
        **architecture, num_classes=num_classes, head_dropout=dropout, rngs=nnx.Rngs(0)
    )
    for (_, _, module), file_layer in zip(
        keras_layout.backbone_layers(model), backbone
    ):
        _assign(keras_layout.module_variables(module), file_layer.arrays)
    if head is not None:
        _check_shapes("head", head, keras_layout.module_variables(model.head))
        _assign(keras_layout.module_variables(model.head), head.arrays)

    metadata = pretrained.make_metadata(
        model,
        source_file=os.path.basename(str(path)),
        source_sha256=pretrained.sha256_of(path),
        source_format="keras_h5",
        source_layout=kfile.layout,
        source_keras_version=kfile.keras_version,
        head_activation=activation,
        notes=notes,
    )
    return model, metadata


def keras_weights(
    model: resnet.ResNet, include_head: bool = True
) -> list[tuple[str, list[np.ndarray]]]:
    """``(keras_layer_name, arrays)`` for every weighted layer, in Keras order."""
    if model.variant != "keras":
        raise ValueError(
            f"only the Keras layout can be exported to Keras, got {model.variant!r}"
        )
    layers = [
        (
            name,
            [np.asarray(v.get_value()) for v in keras_layout.module_variables(module)],
        )
        for name, _, module in keras_layout.backbone_layers(model)
    ]
    if include_head and model.head is not None:
        head = [
            np.asarray(v.get_value()) for v in keras_layout.module_variables(model.head)
        ]
        layers.append(("dense", head))
    return layers


def export(model: resnet.ResNet, path: str | os.PathLike, include_head=True) -> None:
    """Writes ``model`` as a Keras weights-only HDF5, atomically."""
    with files.atomic_file(path) as partial:
        keras_layout.write_weights(partial, keras_weights(model, include_head))
