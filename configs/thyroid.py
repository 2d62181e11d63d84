"""The study's thyroid target: the whole grid and its analysis.

python -m jaxtransfer.main --config=configs/thyroid.py --workdir=runs/thyroid
python -m jaxtransfer.main --config=configs/thyroid.py:v1 --workdir=runs/thyroid_v1
"""

from configs import default


def get_config(arg=None):
    return default.for_target("thyroid", size=112, arg=arg)
