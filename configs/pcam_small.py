"""The study's pcam-small target (96 px, its native size): the grid and analysis.

python -m jaxtransfer.main --config=configs/pcam_small.py --workdir=runs/pcam_small
"""

from configs import default


def get_config(arg=None):
    return default.for_target("pcam-small", size=96, arg=arg)
