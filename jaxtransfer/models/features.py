"""Activations at the taps of a converted checkpoint, for an array of images.

``extract_to_npz`` is the door (the command line is ``jaxtransfer.extract``). X
holds RGB images, uint8 or float in 0..255, NHWC, of any size the network accepts.
The checkpoint's preprocessing is applied ('caffe' for Keras weights). Y
holds one array per tap under its Keras name, ``pooled``, and ``probs`` when the
checkpoint has a head. X is read memory-mapped and Y written through memory-mapped
scratch files, batch by batch, so memory stays bounded for any number of images.
"""

import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm import tqdm

from jaxtransfer.data import preprocess
from jaxtransfer.models import layers, pretrained
from jaxtransfer.runtime import files


def make_forward(
    model: layers.Backbone,
    preprocessing: str,
    taps: Sequence[str],
    head_activation: str | None = "softmax",
) -> Callable[[jax.Array], dict[str, jax.Array]]:
    """A jitted ``images (0..255) -> {tap: activation, 'probs'?}`` in inference mode."""
    graphdef, state = nnx.split(model)
    prep = preprocess.get(preprocessing)

    @jax.jit
    def forward(state, images):
        logits, acts = nnx.merge(graphdef, state)(prep(images), taps=taps)
        if logits is not None:
            activation = (
                jax.nn.sigmoid if head_activation == "sigmoid" else jax.nn.softmax
            )
            acts["probs"] = activation(logits)
        return acts

    return lambda images: forward(state, images)


def batches(
    forward: Callable, images: np.ndarray, batch_size: int
) -> Iterator[tuple[slice, dict[str, np.ndarray]]]:
    """Runs ``forward`` over ``images`` in fixed-size batches (last one padded)."""
    n = len(images)
    for start in range(0, n, batch_size):
        chunk = np.asarray(images[start : start + batch_size], np.float32)
        valid = len(chunk)
        if valid < batch_size:  # pad so the last batch reuses the compiled shape
            pad = np.zeros((batch_size - valid, *chunk.shape[1:]), np.float32)
            chunk = np.concatenate([chunk, pad])
        outputs = jax.device_get(forward(jnp.asarray(chunk)))
        yield slice(start, start + valid), {k: v[:valid] for k, v in outputs.items()}


def check_images(images: np.ndarray, source: str, model: layers.Backbone) -> None:
    """Raises a clear error unless ``images`` is (N, H, W, 3) uint8/float, at least
    as large as ``model`` takes."""
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(
            f"{source}: expected RGB images of shape (N, H, W, 3), got {images.shape}"
        )
    if not (images.dtype == np.uint8 or np.issubdtype(images.dtype, np.floating)):
        raise ValueError(
            f"{source}: expected uint8 or float images, got {images.dtype}"
        )
    if min(images.shape[1:3]) < model.min_size:
        raise ValueError(
            f"{source}: images of {images.shape[1]}x{images.shape[2]} are too small "
            f"for {model.display_name} (at least {model.min_size}x{model.min_size})"
        )


def extract_to_npz(
    checkpoint: str,
    images_path: str,
    output: str,
    batch_size: int = 32,
    all_blocks: bool = False,
) -> list[str]:
    """Writes the activations of ``checkpoint`` on ``images_path`` to ``output``.

    Returns the names of the arrays written.
    """
    if not os.path.isfile(images_path):
        raise FileNotFoundError(f"no such file: {images_path}")
    images = np.load(images_path, mmap_mode="r")
    model, metadata = pretrained.load(checkpoint)
    check_images(images, images_path, model)
    taps = model.all_taps if all_blocks else (*model.study_taps, "pooled")
    forward = make_forward(
        model, metadata["preprocessing"], taps, metadata.get("head_activation")
    )
    output = os.path.abspath(output)
    scratch = tempfile.mkdtemp(prefix=".extract-", dir=os.path.dirname(output))
    try:
        arrays: dict[str, np.ndarray] = {}
        progress = tqdm(total=len(images), unit="img", desc="extract")
        for where, outputs in batches(forward, images, batch_size):
            for name, value in outputs.items():
                if name not in arrays:
                    arrays[name] = np.lib.format.open_memmap(
                        os.path.join(scratch, f"{name}.npy"),
                        mode="w+",
                        dtype=value.dtype,
                        shape=(len(images), *value.shape[1:]),
                    )
                arrays[name][where] = value
            progress.update(where.stop - where.start)
        progress.close()
        for array in arrays.values():
            array.flush()
        with (
            files.atomic_file(output) as partial,
            zipfile.ZipFile(partial, "w", zipfile.ZIP_STORED, allowZip64=True) as z,
        ):
            for name in arrays:
                z.write(os.path.join(scratch, f"{name}.npy"), arcname=f"{name}.npy")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return list(arrays)
