"""A target of your own (BYO) through the whole grid and its analysis.

Prepare the images once, from class folders under manual_dir or from a
path,class[,group] CSV whose paths are relative to manual_dir (a group column
makes the folds grouped by patient):

  python -m jaxtransfer.data.prepare --dataset byo --manual_dir path/to/my_target \\
      --data_dir path/to/prepared [--csv path/to/labels.csv] --size 112

then run every source x freeze setting x fold on it:

  python -m jaxtransfer.main --config=configs/byo_example.py --workdir=runs/byo

Edit the paths below (or override them, --config.data.manual_dir=...). Use one
data_dir per BYO target: they all prepare into <data_dir>/byo/size<S>/.
"""

from configs import default


def get_config(arg=None):
    config = default.get_config(arg)
    config.target = "byo"
    config.data.name = "byo"
    config.data.manual_dir = "path/to/my_target"  # the raw images
    config.data.data_dir = "path/to/prepared"  # where prepare writes
    config.data.csv = ""  # '' for class folders, else the path,class[,group] CSV
    return config
