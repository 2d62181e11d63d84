"""Keras HDF5 ResNet50 weights -> a jaxtransfer checkpoint.

Reads the weights-only ``..._notop.h5`` downloads, full-model files and the
study's fine-tuned models (``jaxtransfer.models.formats.keras_h5``).

Usage:
  python -m converters.keras_h5 --input FILE.h5 --output DIR [--keep_top]
"""

from converters import cli
from jaxtransfer.models.formats import keras_h5


def main(argv=None) -> int:
    return cli.run(
        keras_h5.convert,
        argv,
        description=__doc__.split("\n\n")[0],
        input_help="Keras .h5 file",
    )


if __name__ == "__main__":
    main()
