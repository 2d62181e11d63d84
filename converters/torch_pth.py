"""torchvision ResNet50 state dict (``.pth``) -> a jaxtransfer checkpoint.

Loads into the model's ``torchvision`` (v1.5) variant
(``jaxtransfer.models.formats.torch_pth``); needs ``pip install -e '.[torch]'``.

Usage:
  python -m converters.torch_pth --input FILE.pth --output DIR [--keep_top]
"""

from converters import cli
from jaxtransfer.models.formats import torch_pth


def main(argv=None) -> int:
    return cli.run(
        torch_pth.convert,
        argv,
        description=__doc__.split("\n\n")[0],
        input_help="torchvision .pth file",
    )


if __name__ == "__main__":
    main()
