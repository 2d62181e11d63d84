"""The Keras legacy HDF5 weight layout, and how a file's layers meet a model's.

Keras (TF-Keras 2 and Keras 3 alike) loads an HDF5 weight file by *layer order*:
the root (or ``model_weights``) attribute ``layer_names`` lists the layer groups,
and each group's ``weight_names`` attribute lists its arrays in order. That order
is Keras's graph order (by depth from the output, then by traversal). For a chain
(ResNet, DenseNet) it is the network order, and names differ between Keras
generations (``conv1_conv/kernel:0`` vs ``conv1_conv/kernel``, or the old
``res2a_branch2a``), so such files are matched in file order. For a network with
parallel branches (the Inceptions) the graph order interleaves branches, so the
layers are put in the order Keras *created* them (``in_creation_order``): the
layers Keras names itself carry that order in their numbers (``conv2d_17``), even
when other models were built first in the same session (``conv2d_111``).

A nested sub-model (the study's fine-tuned models: ResNet50 inside a model with a
Dense head) is stored as one group whose ``weight_names`` hold every array of the
sub-model, trainable ones first. Those are regrouped by their layer prefix.
"""

import dataclasses
import json
import os
import re
from collections.abc import Iterator

import h5py
import numpy as np
from flax import nnx

from jaxtransfer.models import layers as model_layers

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
        if ranks in ([1, 1, 1, 1], [1, 1, 1]):  # with and without gamma
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
    """The file is not a Keras HDF5 network that this converter can read."""


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


def leaf(name: str) -> str:
    """A layer's own name without the sub-model it is nested in."""
    return name.rsplit("/", 1)[-1]


_AUTO_NAME = re.compile(r"(conv2d|batch_normalization)(?:_(\d+))?")
_AUTO_KIND = {"conv2d": "conv", "batch_normalization": "bn"}


def _auto_number(name: str) -> tuple[str, int] | None:
    """``('conv', 17)`` for Keras's own name ``conv2d_17``; None for other names."""
    match = _AUTO_NAME.fullmatch(leaf(name))
    if not match:
        return None
    return _AUTO_KIND[match[1]], int(match[2] or 0)


def in_creation_order(
    path: str, arch: str, template: list[model_layers.KerasLayer], found: list
) -> tuple[list[FileLayer], list[FileLayer]]:
    """The file layers for ``template``, and the layers left over (a head).

    A template layer Keras names itself takes the file's next auto-named layer of
    its kind by number; a named one (``block35_1_conv``) takes the layer of that
    name. Raises a KerasFileError naming the expected and found layers.
    """
    named = {layer.name for layer in template if not layer.auto}
    by_name = {leaf(layer.name): layer for layer in found if leaf(layer.name) in named}
    queues: dict[str, list[FileLayer]] = {"conv": [], "bn": []}
    numbered = [(n, layer) for layer in found if (n := _auto_number(layer.name))]
    for (kind, _), layer in sorted(numbered, key=lambda item: item[0]):
        queues[kind].append(layer)
    first = ", ".join(leaf(layer.name) for layer in found[:4])
    ordered = []
    for position, expected in enumerate(template):
        if expected.auto:
            queue = queues[expected.kind]
            if not queue:
                raise KerasFileError(
                    f"{path} is not a Keras {arch}: expected its auto-named "
                    f"{expected.kind} layer {expected.name} (layer {position + 1} "
                    f"of {len(template)}), found no more auto-named {expected.kind} "
                    f"layers (the file's layers begin {first})"
                )
            ordered.append(queue.pop(0))
        elif expected.name in by_name:
            ordered.append(by_name.pop(expected.name))
        else:
            raise KerasFileError(
                f"{path} is not a Keras {arch}: expected layer {expected.name}, "
                f"which the file lacks (its layers begin {first})"
            )
    used = {id(layer) for layer in ordered}
    return ordered, [layer for layer in found if id(layer) not in used]


def graph_order(inputs: list[list[int]], output: int) -> list[int]:
    """The nodes of a layer graph in Keras's order (``Functional.layers``).

    ``inputs[n]`` lists node n's inputs in order. Keras (``map_graph`` in Keras
    3, ``_map_graph_network`` in TF-Keras 2) numbers the nodes by a depth-first
    walk from the output, inputs in order, each on its first visit; gives each
    node its longest distance to the output; and lists nodes by decreasing
    distance, ties by number. Keras writes and loads weight files in that order.
    """
    number: dict[int, int] = {}
    finished: list[int] = []  # post-order: every node after its inputs
    stack = [(output, iter(inputs[output]))]
    number[output] = 0
    while stack:
        node, pending = stack[-1]
        child = next(pending, None)
        if child is None:
            stack.pop()
            finished.append(node)
        elif child not in number:
            number[child] = len(number)
            stack.append((child, iter(inputs[child])))
    depth = {node: 0 for node in finished}
    for node in reversed(finished):  # consumers before their inputs
        for child in inputs[node]:
            depth[child] = max(depth[child], depth[node] + 1)
    return sorted(finished, key=lambda node: (-depth[node], number[node]))


def module_variables(module: nnx.Module) -> list[nnx.Variable]:
    """The variables of a conv, BatchNorm or dense module, in Keras weight order."""
    if isinstance(module, nnx.BatchNorm):
        stats = [module.bias, module.mean, module.var]
        return stats if module.scale is None else [module.scale, *stats]
    if module.bias is None:
        return [module.kernel]
    return [module.kernel, module.bias]


_ROLES = {
    "conv": ("kernel", "bias"),
    "dense": ("kernel", "bias"),
    "bn": ("gamma", "beta", "moving_mean", "moving_variance"),
}


def write_weights(
    path: str | os.PathLike, layers: list[tuple[str, str, list[np.ndarray]]]
) -> None:
    """Writes ``(layer_name, kind, arrays)`` as a Keras weights-only HDF5 file.

    The layout is the one Keras writes and reads (``layer_names`` and per-layer
    ``weight_names``, arrays at ``<layer>/<layer>/<weight>``), so
    ``model.load_weights(path)`` loads it in TF-Keras 2 and Keras 3.
    """
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([n.encode() for n, _, _ in layers])
        f.attrs["backend"] = b"jax"
        f.attrs["keras_version"] = b"3"
        for name, kind, arrays in layers:
            roles = _ROLES[kind]
            if kind == "bn" and len(arrays) == 3:
                roles = roles[1:]  # scale=False: no gamma
            weight_names = [f"{name}/{r}" for r in roles[: len(arrays)]]
            group = f.create_group(name)
            group.attrs["weight_names"] = np.array([w.encode() for w in weight_names])
            for weight_name, array in zip(weight_names, arrays):
                group.create_dataset(weight_name, data=array)
