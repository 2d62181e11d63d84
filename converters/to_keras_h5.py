"""A jaxtransfer checkpoint -> a Keras-loadable weights-only HDF5 file.

The file has the layout of the Keras ``..._notop.h5`` downloads, so Keras users
load a fine-tuned backbone with ``ResNet50(include_top=False).load_weights(FILE)``
(TF-Keras 2 or Keras 3). A head, if the checkpoint has one, is written last as the
layer ``dense``; pass ``--no_head`` to write the backbone only. HDF5 -> Flax ->
HDF5 preserves every array bit for bit.

Usage:
  python -m converters.to_keras_h5 --input DIR --output FILE.h5 [--no_head]
"""

import argparse
import os

from jaxtransfer.models import pretrained
from jaxtransfer.models.formats import keras_h5
from jaxtransfer.runtime import cli


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", required=True, help="checkpoint directory")
    parser.add_argument("--output", required=True, help="Keras .h5 file to write")
    parser.add_argument("--no_head", action="store_true")
    parser.add_argument("--overwrite", action="store_true")
    cli.add_verbose(parser)
    args = parser.parse_args(argv)
    with cli.reported_errors(args.verbose):
        if os.path.exists(args.output) and not args.overwrite:
            raise FileExistsError(f"{args.output} already exists (use --overwrite)")
        model, _ = pretrained.load(args.input)
        keras_h5.export(model, args.output, include_head=not args.no_head)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    main()
