"""A laptop-sized demo of conversion and feature extraction, with no downloads.

It writes a Keras-layout HDF5 ResNet50 (random weights and a 2-class head), converts
it with the code behind ``converters.keras_h5`` exactly as a downloaded
ImageNet/RadImageNet file would be, makes a small synthetic image set and extracts
the study's taps as ``jaxtransfer.extract`` does.

Usage:
  python -m jaxtransfer.demo --workdir runs/demo
"""

import argparse
import json
import os
import time

import numpy as np
from flax import nnx

from jaxtransfer.models import features, pretrained, resnet
from jaxtransfer.models.formats import keras_h5
from jaxtransfer.runtime import cli


def synthetic_images(num_images: int, size: int, seed: int = 0) -> np.ndarray:
    """uint8 RGB images of two kinds (bright disc / dark stripes) plus noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    disc = ((yy - 0.5) ** 2 + (xx - 0.5) ** 2 < 0.1) * 160.0
    stripes = (np.sin(xx * 40) > 0) * 90.0
    kinds = np.where(np.arange(num_images) % 2 == 0, 0, 1)
    base = np.where(kinds[:, None, None] == 0, disc, stripes)
    noise = rng.normal(0, 25, (num_images, size, size, 3))
    return np.clip(base[..., None] + 60 + noise, 0, 255).astype(np.uint8)


def run(workdir: str, num_images: int = 64, size: int = 112) -> dict:
    """Runs the demo in ``workdir``; returns a summary (also written as JSON)."""
    os.makedirs(workdir, exist_ok=True)
    h5_path = os.path.join(workdir, "demo_resnet50.h5")
    checkpoint = os.path.join(workdir, "checkpoint")
    images_path = os.path.join(workdir, "images.npy")
    features_path = os.path.join(workdir, "features.npz")

    model = resnet.ResNet50(num_classes=2, rngs=nnx.Rngs(0))
    keras_h5.export(model, h5_path)
    print(f"1/3 wrote a Keras-layout weights file: {h5_path}")

    converted, metadata = keras_h5.convert(h5_path)
    pretrained.save(converted, metadata, checkpoint, overwrite=True)
    print(f"2/3 converted it ({metadata['source_layout']} layout) -> {checkpoint}")

    np.save(images_path, synthetic_images(num_images, size))
    start = time.perf_counter()
    names = features.extract_to_npz(checkpoint, images_path, features_path)
    seconds = time.perf_counter() - start
    print(
        f"3/3 extracted {len(names)} arrays for {num_images} images -> {features_path}"
    )

    with np.load(features_path) as saved:
        shapes = {name: list(saved[name].shape) for name in names}
        pooled = saved["pooled"]
    kinds = np.arange(num_images) % 2
    centroids = np.stack([pooled[kinds == k].mean(0) for k in (0, 1)])
    nearest = np.argmin(((pooled[:, None] - centroids) ** 2).sum(-1), axis=1)
    summary = {
        "checkpoint": checkpoint,
        "features": features_path,
        "shapes": shapes,
        "extract_seconds_with_compile": round(seconds, 2),
        "nearest_centroid_accuracy_on_pooled": float((nearest == kinds).mean()),
    }
    with open(os.path.join(workdir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print("\n  tap                 shape")
    for name, shape in shapes.items():
        print(f"  {name:<19} {tuple(shape)}")
    print(
        f"\n  {num_images} images in {seconds:.1f} s (compile included); nearest-"
        f"centroid accuracy of the two image kinds on pooled features: "
        f"{summary['nearest_centroid_accuracy_on_pooled']:.2f}"
    )
    return summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default="runs/demo")
    parser.add_argument("--num_images", type=int, default=64)
    parser.add_argument("--size", type=int, default=112)
    cli.add_verbose(parser)
    args = parser.parse_args(argv)
    with cli.reported_errors(args.verbose):
        run(args.workdir, args.num_images, args.size)
    return 0


if __name__ == "__main__":
    main()
