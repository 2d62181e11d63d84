"""The study's pcam-small target (96 px, its native size): the grid and analysis.

python -m jaxtransfer.main --config=configs/pcam_small.py --workdir=runs/pcam_small
python -m jaxtransfer.main --config=configs/pcam_small.py:v1 --workdir=runs/pcam_v1

The paper's published test AUC (x100, mean ± SD over its 5 folds; the v1 protocol,
``:v1``; docs/protocol.md#expected-results):

    ImageNet                   93.8 ± 1.09
    ImageNet, frozen first     93.2 ± 2.51
    RadImageNet                87.1 ± 2.33
    RadImageNet, frozen first  86.0 ± 1.85
    random init                73.4 ± 8.23
"""

from configs import default


def get_config(arg=None):
    return default.for_target("pcam-small", size=96, arg=arg)
