"""Keras 3 (JAX backend) as the oracle: networks with random weights, saved by Keras.

Every HDF5 file the converter tests read is written by Keras itself, through its
own legacy HDF5 writers, in the layouts users download.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import h5py  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras.src.legacy.saving import legacy_h5_format  # noqa: E402

from jaxtransfer.models.resnet import STUDY_TAPS  # noqa: E402


def randomize(model: keras.Model, seed: int) -> keras.Model:
    """Non-trivial weights everywhere: biases, BN affine and moving statistics
    (BatchNormalization without a scale, as the Inceptions', has no gamma)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.moving_mean.shape[0]
            gamma = [rng.uniform(0.7, 1.3, c)] if layer.scale else []
            layer.set_weights(
                gamma
                + [rng.normal(0, 0.1, c), rng.normal(0, 0.2, c)]
                + [rng.uniform(0.5, 1.5, c)]
            )
        elif layer.weights:
            kernel, *bias = layer.get_weights()
            layer.set_weights([kernel] + [rng.normal(0, 0.05, b.shape) for b in bias])
    return model


def application(name: str, seed: int = 0) -> keras.Model:
    """``keras.applications.<name>`` without weights or top, GAP-pooled, any input
    size, randomized."""
    model = getattr(keras.applications, name)(
        weights=None, include_top=False, input_shape=(None, None, 3), pooling="avg"
    )
    return randomize(model, seed)


def resnet50(seed: int = 0, **kwargs) -> keras.Model:
    """``keras.applications.ResNet50`` without weights, randomized; any input size."""
    kwargs.setdefault("include_top", False)
    kwargs.setdefault("pooling", "avg")
    if not kwargs["include_top"]:
        kwargs.setdefault("input_shape", (None, None, 3))
    model = keras.applications.ResNet50(weights=None, **kwargs)
    return randomize(model, seed)


def shallow_resnet(seed: int = 0) -> keras.Model:
    """Keras's own ResNet builder with one v1 block per stage (stage sizes 1,1,1,1).

    Keras's generic ``ResNet(stack_fn, ...)`` (what ``ResNet50`` calls with 3,4,6,3
    blocks); its layer names end in ``_block1``, which tells the converter the depth.
    """
    from keras.src.applications import resnet as keras_resnet

    def stacks(x):
        x = keras_resnet.stack_residual_blocks_v1(x, 64, 1, stride1=1, name="conv2")
        for stage, filters in zip((3, 4, 5), (128, 256, 512)):
            x = keras_resnet.stack_residual_blocks_v1(
                x, filters, 1, name=f"conv{stage}"
            )
        return x

    model = keras_resnet.ResNet(
        stacks,
        preact=False,
        use_bias=True,
        include_top=False,
        weights=None,
        input_shape=(None, None, 3),
        pooling="avg",
        name="resnet_shallow",
    )
    return randomize(model, seed)


def fine_tuned(base: keras.Model, num_classes: int, seed: int = 1) -> keras.Model:
    """The study's fine-tuned model: the base nested, then Dropout(0.5) + Dense."""
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Dropout(0.5)(base(inputs))
    outputs = keras.layers.Dense(num_classes, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(seed)
    dense = model.layers[-1]
    kernel, bias = dense.get_weights()
    dense.set_weights([kernel, rng.normal(0, 0.1, bias.shape)])
    return model


def save_weights_only(model: keras.Model, path) -> None:
    """Keras's own weights-only HDF5 writer (the layout of ``..._notop.h5``)."""
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)


def save_full(model: keras.Model, path) -> None:
    """Keras's full-model HDF5 (``model_weights`` + ``model_config``)."""
    model.save(path)


def taps(
    model: keras.Model, images: np.ndarray, names=STUDY_TAPS, layers=None
) -> dict[str, np.ndarray]:
    """The study's taps and the pooled features of a (non-nested) Keras network.

    ``layers`` gives, per tap name, the Keras layer whose output it is (default:
    the layer of the tap's name); the pooled features are the model's output.
    """
    layers = layers or {}
    outputs = [model.get_layer(layers.get(name, name)).output for name in names]
    probe = keras.Model(model.inputs, outputs + [model.outputs[0]])
    values = probe.predict(images, verbose=0)
    return dict(zip((*names, "pooled"), values))
