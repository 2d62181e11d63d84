"""The study's chest target: the whole grid and its analysis.

python -m jaxtransfer.main --config=configs/chest.py --workdir=runs/chest
python -m jaxtransfer.main --config=configs/chest.py:v1 --workdir=runs/chest_v1

The paper's published test AUC (x100, mean ± SD over its 5 folds; the v1 protocol,
``:v1``; docs/protocol.md#expected-results):

    ImageNet                   98.7 ± 0.39
    ImageNet, frozen first     98.6 ± 0.58
    RadImageNet                98.8 ± 0.17
    RadImageNet, frozen first  98.7 ± 0.30
    random init                82.5 ± 0.97
"""

from configs import default


def get_config(arg=None):
    return default.for_target("chest", size=112, arg=arg)
