"""Keras HDF5 weights -> a jaxtransfer checkpoint (ResNet50, DenseNet121,
InceptionV3, InceptionResNetV2).

Reads the weights-only ``..._notop.h5`` downloads, full-model files and the
study's fine-tuned models (``jaxtransfer.models.formats.keras_h5``). The
architecture is told from the file's layer names unless ``--model`` names it.

Usage:
  python -m converters.keras_h5 --input FILE.h5 --output DIR [--keep_top]
      [--model densenet121]
"""

from converters import cli
from jaxtransfer import models
from jaxtransfer.models.formats import keras_h5


def main(argv=None) -> int:
    return cli.run(
        keras_h5.convert,
        argv,
        description=__doc__.split("\n\n")[0].replace("\n", " "),
        input_help="Keras .h5 file",
        model_choices=list(models.MODELS),
    )


if __name__ == "__main__":
    main()
