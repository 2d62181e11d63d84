"""The study's breast target: the whole grid and its analysis.

python -m jaxtransfer.main --config=configs/breast.py --workdir=runs/breast
python -m jaxtransfer.main --config=configs/breast.py:v1 --workdir=runs/breast_v1

The paper's published test AUC (x100, mean ± SD over its 5 folds; the v1 protocol,
``:v1``; docs/protocol.md#expected-results):

    ImageNet                   90.5 ± 3.83
    ImageNet, frozen first     89.8 ± 3.03
    RadImageNet                88.2 ± 4.24
    RadImageNet, frozen first  72.4 ± 22.10
    random init                51.2 ± 9.99
"""

from configs import default


def get_config(arg=None):
    return default.for_target("breast", size=112, arg=arg)
