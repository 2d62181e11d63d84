"""Data bench: prepare throughput on a synthetic raw download, load time of a split.

Writes a synthetic raw download (`jaxtransfer.data.synthetic`, the real layout) of
a few hundred images at `--source_size` px, prepares it with the TFDS builder at
`--size` px (decode + resize + array_record write, no TensorFlow), prepares it
again (the reuse path), and loads the `all` split and `fold1_train` into host
memory with `loader.load_split`.

Usage:
  python benchmarks/data.py [--dataset knee] [--num 300] [--source_size 256]
      [--size 112] [--workers 2] [--output benchmarks/data.json]
Prints one JSON object per line per measurement and writes them all to --output.
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

# Importable from a plain checkout too (the GPU machines run it without installing).
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import tensorflow_datasets as tfds  # noqa: E402

from jaxtransfer.data import builders, loader, synthetic  # noqa: E402


def write_raw(dataset: str, root: Path, num: int, source_size: int) -> int:
    """A synthetic raw download of about `num` images; returns the image count."""
    if dataset == "knee":
        # default_knee_exams writes 1 or 2 slices per exam (1.5 on average).
        exams = synthetic.default_knee_exams(max(2, round(num / 1.5)))
        written = synthetic.write_knee(root, exams, image_size=source_size)
    elif dataset == "isic":
        labels = synthetic.default_isic_labels(
            num_nevi=max(25, num - 6 * 3), num_per_other_class=3
        )
        written = synthetic.write_isic(root, labels, image_size=source_size)
    elif dataset == "chest":
        files = synthetic.default_chest_files(max(4, round(num / 1.25)))
        written = synthetic.write_chest(root, files, image_size=source_size)
    else:
        raise ValueError(f"--dataset must be knee, isic or chest, not {dataset!r}")
    return len(written)


def _timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def run(args) -> list[dict]:
    """All measurements as dicts."""
    tfds.disable_progress_bar()
    common = {
        "dataset": args.dataset,
        "size": args.size,
        "source_size": args.source_size,
        "workers": args.workers,
        "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
    }
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        raw, out = Path(tmp) / "raw", Path(tmp) / "out"
        num, seconds = _timed(
            lambda: write_raw(args.dataset, raw, args.num, args.source_size)
        )

        def prepare():
            builder = builders.make_builder(
                args.dataset, out, args.size, workers=args.workers
            )
            if not builder.is_prepared():
                builder.download_and_prepare(
                    download_config=tfds.download.DownloadConfig(manual_dir=str(raw))
                )
            return builder

        builder, seconds = _timed(prepare)
        rows.append(
            {
                "bench": "prepare",
                "images": num,
                "seconds": seconds,
                "images_per_s": num / seconds,
            }
            | common
        )
        _, seconds = _timed(prepare)
        rows.append({"bench": "prepare_reuse", "seconds": seconds} | common)
        path = builders.prepared_dir(out, args.dataset, args.size)
        disk = sum(f.stat().st_size for f in path.glob("*.array_record*"))
        for split in ("all", "fold1_train"):
            arrays, seconds = _timed(lambda s=split: loader.load_split(path, s))
            rows.append(
                {
                    "bench": "load_split",
                    "split": split,
                    "images": len(arrays),
                    "seconds": seconds,
                    "images_per_s": len(arrays) / seconds,
                    "mib": arrays.images.nbytes / 2**20,
                    "mib_per_s": arrays.images.nbytes / 2**20 / seconds,
                    "disk_mib": disk / 2**20,
                }
                | common
            )
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="knee", choices=["knee", "isic", "chest"])
    parser.add_argument("--num", type=int, default=300, help="about this many images")
    parser.add_argument("--source_size", type=int, default=256)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--output", default=None, help="also write JSON lines here")
    args = parser.parse_args(argv)
    rows = run(args)
    lines = [json.dumps(row) for row in rows]
    print("\n".join(lines))
    if args.output:
        Path(args.output).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
