"""The study's mammograms target: the whole grid and its analysis.

python -m jaxtransfer.main --config=configs/mammograms.py --workdir=runs/mammograms
python -m jaxtransfer.main --config=configs/mammograms.py:v1 --workdir=runs/mammo_v1

The paper's published test AUC (x100, mean ± SD over its 5 folds; the v1 protocol,
``:v1``; docs/protocol.md#expected-results):

    ImageNet                   63.4 ± 4.26
    ImageNet, frozen first     68.8 ± 1.97
    RadImageNet                62.0 ± 12.18
    RadImageNet, frozen first  66.2 ± 6.29
    random init                49.6 ± 3.68
"""

from configs import default


def get_config(arg=None):
    return default.for_target("mammograms", size=112, arg=arg)
