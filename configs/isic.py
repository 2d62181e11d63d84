"""The study's isic target: the whole grid and its analysis.

python -m jaxtransfer.main --config=configs/isic.py --workdir=runs/isic
python -m jaxtransfer.main --config=configs/isic.py:v1 --workdir=runs/isic_v1
"""

from configs import default


def get_config(arg=None):
    return default.for_target("isic", size=112, arg=arg)
