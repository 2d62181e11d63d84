"""Flax NNX models: the Keras-layout ResNet50 and its torchvision variant.

``get(name)`` is the one way a config's ``model.name`` becomes a network.
"""

from collections.abc import Callable

from jaxtransfer.models import resnet

# config.model.name -> constructor (keyword arguments as for ``resnet.ResNet``).
MODELS: dict[str, Callable[..., resnet.ResNet]] = {
    "resnet50": resnet.ResNet50,
    "tiny": resnet.ResNetTiny,  # tests and demos
}


def get(name: str) -> Callable[..., resnet.ResNet]:
    """The constructor ``name`` stands for; an unknown name lists the known ones."""
    if name not in MODELS:
        raise ValueError(
            f"config.model.name={name!r}: expected one of {sorted(MODELS)}"
        )
    return MODELS[name]
