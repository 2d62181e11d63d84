"""The Keras legacy HDF5 weight layout and the Keras order of ResNet50's layers.

Keras (TF-Keras 2 and Keras 3 alike) loads an HDF5 weight file by *layer order*:
the root (or ``model_weights``) attribute ``layer_names`` lists the layer groups,
and each group's ``weight_names`` attribute lists its arrays in order. Names differ
between Keras generations (``conv1_conv/kernel:0`` vs ``conv1_conv/kernel``, or the
old ``res2a_branch2a``), so nothing here depends on them: layers are read in file
order and matched to the ResNet50 topology, with a shape check on every array.

A nested sub-model (the study's fine-tuned models: ResNet50 inside a model with a
Dense head) is stored as one group whose ``weight_names`` hold every array of the
sub-model, trainable ones first. Those are regrouped by their layer prefix.
"""

import dataclasses
import json
import os
from collections.abc import Iterator

import h5py
import numpy as np
from flax import nnx

from jaxtransfer.models import resnet

# Position of each weight role inside its layer, the order Keras writes them in.
_ROLE_ORDER = {
    "kernel": 0,
    "bias": 1,
    "gamma": 0,
    "beta": 1,
    "moving_mean": 2,
    "moving_variance": 3,
}


@dataclasses.dataclass
class FileLayer:
    """One weighted layer as stored in the file.

    Attributes:
      name: the layer name in the file (``parent/name`` inside a nested model).
      weight_names: the stored weight names, in load order.
      arrays: the arrays, in load order.
      nested_in: the name of the sub-model group holding it, or None at top level.
    """

    name: str
    weight_names: list[str]
    arrays: list[np.ndarray]
    nested_in: str | None = None

    @property
    def kind(self) -> str:
        """``conv``, ``bn``, ``dense`` or ``other``, from the array ranks alone."""
        ranks = [a.ndim for a in self.arrays]
        if ranks in ([4], [4, 1]):
            return "conv"
        if ranks == [1, 1, 1, 1]:
            return "bn"
        if ranks in ([2], [2, 1]):
            return "dense"
        return "other"

    def describe(self) -> str:
        shapes = ", ".join(
            f"{n} {tuple(a.shape)}" for n, a in zip(self.weight_names, self.arrays)
        )
        return f"file layer '{self.name}' [{shapes}]"


class KerasFileError(ValueError):
    """The file is not a Keras HDF5 ResNet50 that this converter can read."""


def _decode(names) -> list[str]:
    return [n.decode("utf8") if isinstance(n, bytes) else str(n) for n in names]


def _attr_names(group: h5py.Group, key: str) -> list[str]:
    # Keras splits long attribute lists into key0, key1, ... chunks.
    if key in group.attrs:
        return _decode(group.attrs[key])
    names, chunk = [], 0
    while f"{key}{chunk}" in group.attrs:
        names += _decode(group.attrs[f"{key}{chunk}"])
        chunk += 1
    return names


def _role(weight_name: str) -> str:
    return weight_name.rsplit("/", 1)[-1].split(":", 1)[0]


def _ordered(names: list[str], arrays: list[np.ndarray]):
    """Sorts a layer's arrays into Keras order when every role is a known one."""
    roles = [_role(n) for n in names]
    if all(r in _ROLE_ORDER for r in roles) and len(set(roles)) == len(roles):
        order = sorted(range(len(names)), key=lambda i: _ROLE_ORDER[roles[i]])
        return [names[i] for i in order], [arrays[i] for i in order]
    return names, arrays


def _layer_prefix(weight_name: str) -> str:
    parts = weight_name.split("/")
    if len(parts) < 2:
        raise KerasFileError(
            f"nested weight '{weight_name}' has no layer prefix; expected "
            "'<layer>/<weight>' names inside a sub-model group"
        )
    return parts[-2]


def _read_group(path: str, group: h5py.Group, layer: str) -> Iterator[FileLayer]:
    names = _attr_names(group, "weight_names")
    if not names:
        return
    try:
        arrays = [np.asarray(group[n]) for n in names]
    except (KeyError, OSError) as e:
        raise KerasFileError(
            f"{path}: cannot read weights of layer '{layer}': {e}"
        ) from None
    prefixes = {_layer_prefix(n) for n in names} if len(names) > 4 else set()
    if len(prefixes) <= 1:
        yield FileLayer(layer, *_ordered(names, arrays))
        return
    # A sub-model: regroup its flat (trainable first) list by layer prefix.
    by_layer: dict[str, tuple[list, list]] = {}
    for name, array in zip(names, arrays):
        entry = by_layer.setdefault(_layer_prefix(name), ([], []))
        entry[0].append(name)
        entry[1].append(array)
    for sub, (sub_names, sub_arrays) in by_layer.items():
        yield FileLayer(f"{layer}/{sub}", *_ordered(sub_names, sub_arrays), layer)


@dataclasses.dataclass
class KerasFile:
    """The weighted layers of a Keras HDF5 file and what kind of file it is."""

    path: str
    layout: str  # 'weights_only' | 'full_model' | 'nested'
    layers: list[FileLayer]
    model_config: dict | None
    keras_version: str | None


def read(path: str | os.PathLike) -> KerasFile:
    """Reads every weighted layer of a Keras HDF5 file, in Keras load order."""
    path = str(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such file: {path}")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise KerasFileError(
            f"{path} is not a readable HDF5 file (truncated or corrupt?): {e}"
        ) from None
    with f:
        weights = f["model_weights"] if "model_weights" in f else f
        layer_names = _attr_names(weights, "layer_names")
        if not layer_names:
            raise KerasFileError(
                f"{path} is HDF5 but not a Keras weight file: no 'layer_names' "
                "attribute at the root or in a 'model_weights' group"
            )
        layers = []
        for name in layer_names:
            if name not in weights:
                raise KerasFileError(f"{path}: layer '{name}' is listed but missing")
            layers += _read_group(path, weights[name], name)
        config = f.attrs.get("model_config")
        config = json.loads(config) if config is not None else None
        version = weights.attrs.get("keras_version", f.attrs.get("keras_version"))
    if isinstance(version, bytes):
        version = version.decode()
    nested = any(layer.nested_in for layer in layers)
    layout = "nested" if nested else "full_model" if config else "weights_only"
    return KerasFile(path, layout, layers, config, version)


def backbone_layers(model: resnet.ResNet) -> list[tuple[str, str, nnx.Module]]:
    """``(keras_name, kind, module)`` of every weighted layer, in Keras order.

    Keras orders block1 of each stage as 1_conv, 1_bn, 2_conv, 2_bn, 0_conv, 3_conv,
    0_bn, 3_bn (the projection shortcut after the 3x3), the other blocks 1, 2, 3.
    """
    layers = [
        ("conv1_conv", "conv", model.conv1_conv),
        ("conv1_bn", "bn", model.conv1_bn),
    ]
    for name, block in model.blocks():
        order = [("1_conv", block.conv1), ("1_bn", block.bn1)]
        order += [("2_conv", block.conv2), ("2_bn", block.bn2)]
        if block.conv0 is not None:
            order += [("0_conv", block.conv0), ("3_conv", block.conv3)]
            order += [("0_bn", block.bn0), ("3_bn", block.bn3)]
        else:
            order += [("3_conv", block.conv3), ("3_bn", block.bn3)]
        layers += [(f"{name}_{suffix}", suffix[2:], m) for suffix, m in order]
    return layers


def module_variables(module: nnx.Module) -> list[nnx.Variable]:
    """The variables of a conv, BatchNorm or dense module, in Keras weight order."""
    if isinstance(module, nnx.BatchNorm):
        return [module.scale, module.bias, module.mean, module.var]
    if module.bias is None:
        return [module.kernel]
    return [module.kernel, module.bias]


def write_weights(
    path: str | os.PathLike, layers: list[tuple[str, list[np.ndarray]]]
) -> None:
    """Writes ``(layer_name, arrays)`` as a Keras weights-only HDF5 file.

    The layout is the one Keras writes and reads (``layer_names`` and per-layer
    ``weight_names``, arrays at ``<layer>/<layer>/<weight>``), so
    ``model.load_weights(path)`` loads it in TF-Keras 2 and Keras 3.
    """
    roles = {"conv": ("kernel", "bias"), "dense": ("kernel", "bias")}
    roles["bn"] = ("gamma", "beta", "moving_mean", "moving_variance")
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([n.encode() for n, _ in layers])
        f.attrs["backend"] = b"jax"
        f.attrs["keras_version"] = b"3"
        for name, arrays in layers:
            kind = "bn" if len(arrays) == 4 else "conv"
            weight_names = [f"{name}/{r}" for r in roles[kind][: len(arrays)]]
            group = f.create_group(name)
            group.attrs["weight_names"] = np.array([w.encode() for w in weight_names])
            for weight_name, array in zip(weight_names, arrays):
                group.create_dataset(weight_name, data=array)
