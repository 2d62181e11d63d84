"""The study's breast target: the whole grid and its analysis.

python -m jaxtransfer.main --config=configs/breast.py --workdir=runs/breast
python -m jaxtransfer.main --config=configs/breast.py:v1 --workdir=runs/breast_v1
"""

from configs import default


def get_config(arg=None):
    return default.for_target("breast", size=112, arg=arg)
