"""The study's chest target: the whole grid and its analysis.

python -m jaxtransfer.main --config=configs/chest.py --workdir=runs/chest
python -m jaxtransfer.main --config=configs/chest.py:v1 --workdir=runs/chest_v1
"""

from configs import default


def get_config(arg=None):
    return default.for_target("chest", size=112, arg=arg)
