"""Flax NNX models: the study's ResNet50 and RadImageNet's other backbones.

``get(name)`` is the one way a config's ``model.name`` becomes a network;
``ARCHITECTURES`` rebuilds a network from a checkpoint's metadata.
"""

import functools
from collections.abc import Callable

from flax import nnx

from jaxtransfer.models import densenet, inception, layers, resnet

# config.model.name -> constructor (keyword arguments as for ``resnet.ResNet``:
# num_classes, head_dropout, dtype, rngs).
MODELS: dict[str, Callable[..., layers.Backbone]] = {
    "resnet50": resnet.ResNet50,
    "densenet121": densenet.DenseNet121,
    "inception_v3": inception.InceptionV3,
    "inception_resnet_v2": inception.InceptionResNetV2,
    "tiny": resnet.ResNetTiny,  # tests and demos
}

# A checkpoint's metadata 'architecture' -> the class its 'architecture_args' fit.
ARCHITECTURES: dict[str, type[layers.Backbone]] = {
    "resnet": resnet.ResNet,
    "densenet": densenet.DenseNet,
    "inception_v3": inception.InceptionV3,
    "inception_resnet_v2": inception.InceptionResNetV2,
}


def get(name: str) -> Callable[..., layers.Backbone]:
    """The constructor ``name`` stands for; an unknown name lists the known ones."""
    if name not in MODELS:
        raise ValueError(
            f"config.model.name={name!r}: expected one of {sorted(MODELS)}"
        )
    return MODELS[name]


def architecture_name(model: layers.Backbone) -> str:
    """The ``ARCHITECTURES`` key of ``model``'s class."""
    for name, cls in ARCHITECTURES.items():
        if type(model) is cls:
            return name
    raise ValueError(f"{type(model).__name__} is not in models.ARCHITECTURES")


@functools.cache
def abstract(name: str) -> layers.Backbone:
    """The network ``name``, shapes only (no weights): its taps, sizes, names."""
    make = get(name)
    return nnx.eval_shape(lambda: make(rngs=nnx.Rngs(0)))


def min_size(name: str) -> int:
    """The smallest image side the network ``name`` takes (Keras's minimum)."""
    return abstract(name).min_size
