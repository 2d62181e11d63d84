"""The study's knee target: the whole grid and its analysis.

python -m jaxtransfer.main --config=configs/knee.py --workdir=runs/knee
python -m jaxtransfer.main --config=configs/knee.py:v1 --workdir=runs/knee_v1
"""

from configs import default


def get_config(arg=None):
    return default.for_target("knee", size=112, arg=arg)
