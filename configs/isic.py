"""The study's isic target: the whole grid and its analysis.

python -m jaxtransfer.main --config=configs/isic.py --workdir=runs/isic
python -m jaxtransfer.main --config=configs/isic.py:v1 --workdir=runs/isic_v1

The paper's published test AUC (x100, mean ± SD over its 5 folds; the v1 protocol,
``:v1``; docs/protocol.md#expected-results):

    ImageNet                   94.2 ± 1.32
    ImageNet, frozen first     93.1 ± 2.34
    RadImageNet                90.8 ± 0.83
    RadImageNet, frozen first  90.6 ± 0.65
    random init                84.0 ± 2.27
"""

from configs import default


def get_config(arg=None):
    return default.for_target("isic", size=112, arg=arg)
