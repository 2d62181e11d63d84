"""The study's thyroid target: the whole grid and its analysis.

python -m jaxtransfer.main --config=configs/thyroid.py --workdir=runs/thyroid
python -m jaxtransfer.main --config=configs/thyroid.py:v1 --workdir=runs/thyroid_v1

The paper's published test AUC (x100, mean ± SD over its 5 folds; the v1 protocol,
``:v1``; docs/protocol.md#expected-results):

    ImageNet                   52.3 ± 8.85
    ImageNet, frozen first     58.5 ± 5.06
    RadImageNet                50.2 ± 4.12
    RadImageNet, frozen first  49.4 ± 5.91
    random init                52.9 ± 5.10
"""

from configs import default


def get_config(arg=None):
    return default.for_target("thyroid", size=112, arg=arg)
