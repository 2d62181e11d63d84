"""Activations at the taps of a converted checkpoint, for an array of images.

Usage:
  python -m jaxtransfer.extract --checkpoint DIR --images X.npy --output Y.npz

``jaxtransfer.models.features`` does the work
(docs/converters.md#extracting-features).
"""

import argparse

from jaxtransfer.models import features
from jaxtransfer.runtime import cli, host


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="converted checkpoint dir")
    parser.add_argument("--images", required=True, help=".npy of (N, H, W, 3) images")
    parser.add_argument("--output", required=True, help=".npz to write")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument(
        "--all_blocks", action="store_true", help="also every block output (16)"
    )
    cli.add_verbose(parser)
    args = parser.parse_args(argv)
    host.reuse_freed_memory()  # before jax starts its backend
    with cli.reported_errors(args.verbose):
        names = features.extract_to_npz(
            args.checkpoint, args.images, args.output, args.batch_size, args.all_blocks
        )
    print(f"wrote {args.output}: {', '.join(names)}")
    return 0


if __name__ == "__main__":
    main()
