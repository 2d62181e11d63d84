"""The study's mammograms target: the whole grid and its analysis.

python -m jaxtransfer.main --config=configs/mammograms.py --workdir=runs/mammograms
python -m jaxtransfer.main --config=configs/mammograms.py:v1 --workdir=runs/mammo_v1
"""

from configs import default


def get_config(arg=None):
    return default.for_target("mammograms", size=112, arg=arg)
