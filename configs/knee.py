"""The study's knee target: the whole grid and its analysis.

python -m jaxtransfer.main --config=configs/knee.py --workdir=runs/knee
python -m jaxtransfer.main --config=configs/knee.py:v1 --workdir=runs/knee_v1

The paper's published test AUC (x100, mean ± SD over its 5 folds; the v1 protocol,
``:v1``; docs/protocol.md#expected-results):

    ImageNet                   91.5 ± 1.08
    ImageNet, frozen first     89.0 ± 3.12
    RadImageNet                89.3 ± 6.32
    RadImageNet, frozen first  63.8 ± 5.70
    random init                68.3 ± 11.04
"""

from configs import default


def get_config(arg=None):
    return default.for_target("knee", size=112, arg=arg)
