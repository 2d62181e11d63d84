"""Augmentation throughput: jitted on-device affine + flip vs Keras's per-image loop.

jaxtransfer's ``augment`` (parameters sampled and images resampled in one jitted call,
blocked on) against what the study's ``DataFrameIterator`` does per image on the host:
``ImageDataGenerator.get_random_transform`` then ``apply_transform`` (scipy, one
channel at a time). Both run in the same process on the same random 0..255 images.
Keras is optional: without it only jaxtransfer is measured and the Keras row says why.

Usage:
  python benchmarks/augment.py [--size 112] [--batch 128] [--iters 20]
      [--keras-iters 3] [--output benchmarks/augment.json]
Prints one JSON object per line per measurement and writes them all to --output.
"""

import argparse
import json
import os
import platform
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax  # noqa: E402
import numpy as np  # noqa: E402

# Importable from a plain checkout too (the GPU machines run it without installing).
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import timing  # noqa: E402  (benchmarks/timing.py, beside this script)

from jaxtransfer.data import augment  # noqa: E402

STUDY_KERAS_KWARGS = dict(
    rotation_range=10,
    width_shift_range=0.1,
    height_shift_range=0.1,
    shear_range=0.1,
    zoom_range=0.1,
    fill_mode="nearest",
    horizontal_flip=True,
)


def bench_jaxtransfer(images: np.ndarray, iters: int) -> dict:
    config = augment.AugmentConfig()
    step = jax.jit(augment.augment, static_argnums=2)
    x = jax.device_put(images)
    keys = iter(jax.random.split(jax.random.key(0), iters + 2))
    seconds = timing.median_seconds(
        lambda: jax.block_until_ready(step(next(keys), x, config)), iters
    )
    return {
        "impl": "jaxtransfer",
        "device": str(jax.devices()[0]),
        "seconds_per_batch": seconds,
        "images_per_s": len(images) / seconds,
    }


def bench_keras(images: np.ndarray, iters: int) -> dict:
    try:
        import keras
        from keras.src.legacy.preprocessing.image import ImageDataGenerator
    except ImportError as error:
        return {"impl": "keras", "skipped": f"keras is not importable: {error}"}
    generator = ImageDataGenerator(**STUDY_KERAS_KWARGS)

    def run():
        for image in images:
            params = generator.get_random_transform(image.shape)
            generator.apply_transform(image, params)

    seconds = timing.median_seconds(run, iters, warmup=1)
    return {
        "impl": "keras",
        "keras_version": keras.__version__,
        "device": "host (numpy/scipy, one process)",
        "seconds_per_batch": seconds,
        "images_per_s": len(images) / seconds,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--keras-iters", type=int, default=3)
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    malloc = timing.reuse_freed_memory()

    rng = np.random.default_rng(0)
    shape = (args.batch, args.size, args.size, 3)
    images = rng.uniform(0, 255, shape).astype(np.float32)
    common = {
        "bench": "augment",
        "size": args.size,
        "batch": args.batch,
        "jax_version": jax.__version__,
        "backend": jax.default_backend(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        **malloc,
    }
    rows = [
        {**common, **bench_jaxtransfer(images, args.iters)},
        {**common, **bench_keras(images, args.keras_iters)},
    ]
    for row in rows:
        print(json.dumps(row), flush=True)
    if args.output:
        with open(args.output, "w") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
