"""torchvision ResNet50 state dict (``.pth``) -> a jaxtransfer checkpoint.

torchvision's ResNet50 is ResNet "v1.5" (stride on the 3x3 conv, no conv bias),
loaded into the ``torchvision`` variant of the model. Conv weights are OIHW in
torch and HWIO in Flax; ``fc`` becomes the head. torch is needed for this converter
only (``pip install 'jaxtransfer[torch]'``) and is imported lazily. The command
line is ``converters.torch_pth``.
"""

import os
import re

import numpy as np
from flax import nnx

from jaxtransfer.models import pretrained, resnet

IMAGENET_CLASSES = 1000
_BN_KEYS = ("weight", "bias", "running_mean", "running_var")
_BOOKKEEPING = ("num_batches_tracked",)


def _torch_layers(model: resnet.ResNet) -> list[tuple[str, str, nnx.Module]]:
    """``(torch_prefix, kind, module)`` for every weighted layer of the backbone."""
    layers = [("conv1", "conv", model.conv1_conv), ("bn1", "bn", model.conv1_bn)]
    for s, num_blocks in enumerate(model.stage_sizes):
        for b in range(num_blocks):
            block = getattr(model, resnet.block_name(s, b))
            prefix = f"layer{s + 1}.{b}"
            for i in (1, 2, 3):
                layers.append((f"{prefix}.conv{i}", "conv", getattr(block, f"conv{i}")))
                layers.append((f"{prefix}.bn{i}", "bn", getattr(block, f"bn{i}")))
            if block.conv0 is not None:
                layers.append((f"{prefix}.downsample.0", "conv", block.conv0))
                layers.append((f"{prefix}.downsample.1", "bn", block.bn0))
    return layers


def _load_state_dict(path: str) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError:
        raise ImportError(
            "converting .pth files needs torch: pip install 'jaxtransfer[torch]'"
        ) from None
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such file: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for a bad file
        raise ValueError(_load_error(path, e)) from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict, found {type(state).__name__}")
    # Checkpoints saved from DataParallel prefix every key with 'module.'.
    return {
        k.removeprefix("module."): v.detach().cpu().numpy()
        for k, v in state.items()
        if not k.endswith(_BOOKKEEPING)
    }


def _load_error(path: str, error: Exception) -> str:
    """What went wrong reading `path`, without torch's advice to load it unsafely."""
    message = str(error)
    # The file pickles Python objects (a whole model, an optimizer, ...).
    found = re.search(r"Unsupported global: GLOBAL (\S+)", message)
    if found:
        return (
            f"{path} is not a plain state dict of tensors (it holds a "
            f"{found.group(1)}); the converter reads tensors only and never "
            "unpickles Python objects. Save the weights with "
            "torch.save(model.state_dict(), path)."
        )
    cause = re.search(
        r"WeightsUnpickler error:(.*?)(Check the documentation|$)", message, re.S
    )
    if cause:
        message = " ".join(cause.group(1).split())
    return f"{path} is not a readable torch state dict: {message}"


def _take(state: dict, key: str, shape: tuple, used: set) -> np.ndarray:
    if key not in state:
        raise ValueError(f"missing '{key}' (expected shape {shape}) in the state dict")
    array = state[key]
    if array.ndim == 4:  # OIHW -> HWIO
        array = array.transpose(2, 3, 1, 0)
    if tuple(array.shape) != tuple(shape):
        raise ValueError(
            f"shape mismatch at '{key}': ResNet50 expects {tuple(shape)}, "
            f"the file has {tuple(array.shape)} (after OIHW->HWIO)"
        )
    used.add(key)
    return np.asarray(array, dtype=np.float32)


def convert(path: str | os.PathLike, keep_top: bool = False):
    """Loads a torchvision ResNet50 state dict; returns ``(model, metadata)``.

    A fine-tuned ``fc`` becomes the head; the 1000-class ImageNet ``fc`` is dropped
    unless ``keep_top``, as in the Keras converter.
    """
    path = str(path)
    state = _load_state_dict(path)
    has_fc = "fc.weight" in state and (
        keep_top or state["fc.weight"].shape[0] != IMAGENET_CLASSES
    )
    num_classes = int(state["fc.weight"].shape[0]) if has_fc else None
    model = resnet.ResNet50(
        variant="torchvision",
        num_classes=num_classes,
        head_dropout=0.0,
        rngs=nnx.Rngs(0),
    )
    used: set[str] = set()
    for prefix, kind, module in _torch_layers(model):
        if kind == "conv":
            module.kernel.set_value(
                _take(state, f"{prefix}.weight", module.kernel.get_value().shape, used)
            )
        else:
            for variable, key in zip(
                (module.scale, module.bias, module.mean, module.var), _BN_KEYS
            ):
                variable.set_value(
                    _take(state, f"{prefix}.{key}", variable.get_value().shape, used)
                )
    notes = []
    if has_fc:
        model.head.kernel.set_value(state["fc.weight"].T.astype(np.float32))
        model.head.bias.set_value(
            _take(state, "fc.bias", model.head.bias.get_value().shape, used)
        )
        used.add("fc.weight")
    elif "fc.weight" in state:
        notes.append(
            f"the {IMAGENET_CLASSES}-class fc layer was dropped and the base loaded "
            "(pass --keep_top to keep it)"
        )
        used.update({"fc.weight", "fc.bias"})
    unused = sorted(set(state) - used)
    if unused:
        raise ValueError(
            f"{path} is not a torchvision ResNet50: unexpected keys {unused[:5]}"
            + (" ..." if len(unused) > 5 else "")
        )
    metadata = pretrained.make_metadata(
        model,
        source_file=os.path.basename(path),
        source_sha256=pretrained.sha256_of(path),
        source_format="torch_pth",
        source_layout="state_dict",
        head_activation="softmax" if has_fc else None,
        notes=notes,
    )
    return model, metadata
