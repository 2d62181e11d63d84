"""The command line shared by the weight converters: FILE -> checkpoint directory."""

import argparse
import os
import sys
from collections.abc import Callable

from jaxtransfer.models import pretrained


def run(convert: Callable, argv, *, description: str, input_help: str) -> int:
    """Parses ``--input/--output/--keep_top/--overwrite``, converts and saves.

    Any failure exits with a message naming the file; nothing is left at --output.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--input", required=True, help=input_help)
    parser.add_argument("--output", required=True, help="checkpoint directory")
    parser.add_argument(
        "--keep_top", action="store_true", help="keep a 1000-class ImageNet top"
    )
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    if os.path.exists(args.output) and not args.overwrite:
        sys.exit(f"error: {args.output} already exists (use --overwrite)")
    try:
        model, metadata = convert(args.input, keep_top=args.keep_top)
        pretrained.save(model, metadata, args.output, overwrite=args.overwrite)
    except (OSError, ValueError, ImportError) as e:
        sys.exit(f"error: {e}")
    for note in metadata["notes"]:
        print(f"note: {note}")
    print(f"converted {args.input} ({metadata['source_layout']}) -> {args.output}")
    return 0
