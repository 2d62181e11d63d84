"""Augmentation throughput: jitted on-device affine + flip vs Keras's per-image loop.

jaxtransfer's ``augment`` (parameters sampled and images resampled in one jitted call,
blocked on) against what the study's ``DataFrameIterator`` does per image on the host:
``ImageDataGenerator.get_random_transform`` then ``apply_transform`` (scipy, one
channel at a time). Both run in the same process on the same random uint8 images
(cast to float32 inside jaxtransfer's jitted call, as the train step does).
A third row times the study's whole per-epoch input path in Keras, from
`--source-size` JPEGs (decode, nearest resize, transform), which jaxtransfer does
once at prepare time. Keras is optional: without it only jaxtransfer is measured and
the Keras rows say why. Keras rows carry `jaxtransfer_speedup`.

Usage:
  python benchmarks/augment.py [--size 112] [--batch 128] [--iters 20]
      [--keras-iters 3] [--source-size 512] [--output benchmarks/augment.json]
Prints one JSON object per line per measurement and writes them all to --output.
"""

import argparse
import contextlib
import json
import os
import platform
import sys
import tempfile

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


def _augment_uint8(rng, images, config):
    # As the train step feeds it: the split's uint8 pixels, cast inside the program.
    return augment.augment(rng, images.astype(np.float32), config)


def bench_jaxtransfer(images: np.ndarray, iters: int) -> dict:
    config = augment.AugmentConfig()
    step = jax.jit(_augment_uint8, static_argnums=2)
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


def bench_keras_from_jpeg(size: int, batch: int, source_size: int, iters: int) -> dict:
    """The study's whole per-epoch input path in Keras: JPEG decode, nearest resize to
    `size`, random transform (`flow_from_directory`, the same per-image work as the
    study's `flow_from_dataframe`). jaxtransfer decodes and resizes once, when the
    dataset is prepared, so its per-epoch work is the augmentation alone."""
    try:
        import keras
        from keras.src.legacy.preprocessing.image import ImageDataGenerator
        from PIL import Image
    except ImportError as error:
        return {"impl": "keras_from_jpeg", "skipped": f"not importable: {error}"}
    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory() as root:
        folder = os.path.join(root, "class_a")
        os.makedirs(folder)
        for i in range(batch):
            # Smooth content, as scans are: pure noise would make decoding slower.
            coarse = rng.integers(0, 256, (16, 16, 3), np.uint8)
            image = Image.fromarray(coarse).resize(
                (source_size, source_size), Image.BILINEAR
            )
            image.save(os.path.join(folder, f"{i}.jpeg"), quality=90)
        # Keras prints "Found N images" to stdout, which carries only JSON rows here.
        with contextlib.redirect_stdout(sys.stderr):
            flow = ImageDataGenerator(**STUDY_KERAS_KWARGS).flow_from_directory(
                root,
                target_size=(size, size),
                batch_size=batch,
                class_mode="categorical",
            )
        seconds = timing.median_seconds(lambda: next(flow), iters, warmup=1)
    return {
        "impl": "keras_from_jpeg",
        "keras_version": keras.__version__,
        "device": "host (PIL/numpy/scipy, one process)",
        "source_size": source_size,
        "seconds_per_batch": seconds,
        "images_per_s": batch / seconds,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--keras-iters", type=int, default=3)
    parser.add_argument(
        "--source-size",
        type=int,
        default=512,
        help="side of the JPEGs the Keras from-JPEG row decodes",
    )
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    malloc = timing.reuse_freed_memory()

    rng = np.random.default_rng(0)
    shape = (args.batch, args.size, args.size, 3)
    images = rng.integers(0, 256, shape, np.uint8)
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
        {**common, **bench_keras(images.astype(np.float32), args.keras_iters)},
        {
            **common,
            **bench_keras_from_jpeg(
                args.size, args.batch, args.source_size, args.keras_iters
            ),
        },
    ]
    speed = {row["impl"]: row.get("images_per_s") for row in rows}
    for row in rows[1:]:
        if speed[row["impl"]]:
            row["jaxtransfer_speedup"] = speed["jaxtransfer"] / speed[row["impl"]]
    for row in rows:
        print(json.dumps(row), flush=True)
    if args.output:
        with open(args.output, "w") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
