"""The command line shared by the weight converters: FILE -> checkpoint directory."""

import argparse
import os
from collections.abc import Callable, Sequence

from jaxtransfer.models import pretrained
from jaxtransfer.runtime import cli


def run(
    convert: Callable,
    argv,
    *,
    description: str,
    input_help: str,
    model_choices: Sequence[str] = (),
) -> int:
    """Parses ``--input/--output/--keep_top/--overwrite``, converts and saves.

    With ``model_choices``, ``--model`` names the architecture instead of the file.
    Any failure exits with a message naming the file; nothing is left at --output.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--input", required=True, help=input_help)
    parser.add_argument("--output", required=True, help="checkpoint directory")
    parser.add_argument(
        "--keep_top", action="store_true", help="keep a 1000-class ImageNet top"
    )
    parser.add_argument("--overwrite", action="store_true")
    if model_choices:
        parser.add_argument(
            "--model",
            choices=sorted(model_choices),
            help="the file's architecture (default: told from its layer names)",
        )
    cli.add_verbose(parser)
    args = parser.parse_args(argv)
    options = {"model": args.model} if model_choices else {}
    with cli.reported_errors(args.verbose):
        if os.path.exists(args.output) and not args.overwrite:
            raise FileExistsError(f"{args.output} already exists (use --overwrite)")
        model, metadata = convert(args.input, keep_top=args.keep_top, **options)
        pretrained.save(model, metadata, args.output, overwrite=args.overwrite)
    for note in metadata["notes"]:
        print(f"note: {note}")
    print(f"converted {args.input} ({metadata['source_layout']}) -> {args.output}")
    return 0
