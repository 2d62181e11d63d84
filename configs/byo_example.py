"""Example config: point a run at a target of your own (BYO).

Prepare the data once (class folders, or a path,class[,group] CSV whose paths are
relative to --manual_dir; a group column makes the folds grouped by patient):

  python -m jaxtransfer.data.prepare --dataset byo --manual_dir path/to/my_target \\
      --data_dir path/to/prepared [--csv path/to/my_target/labels.csv] --size 112

then read fold k with `jaxtransfer.data.loader.load_split(builders.prepared_dir(
data.data_dir, 'byo', data.size), f'fold{k}_train')`. Use one data_dir per BYO
target: they all prepare into <data_dir>/byo/size<S>/.
"""

from ml_collections import ConfigDict


def get_config() -> ConfigDict:
    """The data part of a run on a BYO target; edit the paths."""
    config = ConfigDict()
    config.data = ConfigDict()
    config.data.name = "byo"
    config.data.manual_dir = "path/to/my_target"  # the raw images
    config.data.data_dir = "path/to/prepared"  # where prepare writes
    config.data.size = 112
    config.data.csv = ""  # '' for class folders, else the path,class[,group] CSV
    config.data.folds = (1, 2, 3, 4, 5)
    return config
