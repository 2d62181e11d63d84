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
import sys

import numpy as np

from converters import keras_layout
from jaxtransfer.models import pretrained, resnet
from jaxtransfer.runtime import files


def keras_weights(
    model: resnet.ResNet, include_head: bool = True
) -> list[tuple[str, list[np.ndarray]]]:
    """``(keras_layer_name, arrays)`` for every weighted layer, in Keras order."""
    if model.variant != "keras":
        raise ValueError(
            f"only the Keras layout can be exported to Keras, got {model.variant!r}"
        )
    layers = [
        (
            name,
            [np.asarray(v.get_value()) for v in keras_layout.module_variables(module)],
        )
        for name, _, module in keras_layout.backbone_layers(model)
    ]
    if include_head and model.head is not None:
        head = [
            np.asarray(v.get_value()) for v in keras_layout.module_variables(model.head)
        ]
        layers.append(("dense", head))
    return layers


def export(model: resnet.ResNet, path: str | os.PathLike, include_head=True) -> None:
    """Writes ``model`` as a Keras weights-only HDF5, atomically."""
    with files.atomic_file(path) as partial:
        keras_layout.write_weights(partial, keras_weights(model, include_head))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", required=True, help="checkpoint directory")
    parser.add_argument("--output", required=True, help="Keras .h5 file to write")
    parser.add_argument("--no_head", action="store_true")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    if os.path.exists(args.output) and not args.overwrite:
        sys.exit(f"error: {args.output} already exists (use --overwrite)")
    try:
        model, _ = pretrained.load(args.input)
        export(model, args.output, include_head=not args.no_head)
    except (OSError, ValueError) as e:
        sys.exit(f"error: {e}")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    main()
