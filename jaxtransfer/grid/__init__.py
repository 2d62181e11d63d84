"""The grid of one target: sources x freeze settings x folds, resumable.

``run(config, workdir)`` is the door: ``inputs`` checks what the runs need,
``plan`` turns the config into runs and their stages, ``runner`` trains them
through the engine and ``results`` writes the tables.

Layout of a workdir::

    config.json                       the config of the grid, as run
    <source>-freeze<True|False>/fold<k>/
        checkpoints/                  per-epoch progress (removed once finished)
        model/                        final weights (a converted-checkpoint dir)
        test_predictions.npz          probs, labels, paths of the test split
        log.jsonl                     one record per epoch
        metrics.json                  written last: its presence marks the run done
    AUC.csv                           the paper's schema (docs/protocol.md#result-files)
    summary.json                      every run's metrics, mean/std per source/freeze

Re-running the same command skips finished runs and resumes unfinished ones.
"""

from jaxtransfer.grid.inputs import MissingInputs
from jaxtransfer.grid.runner import run

__all__ = ["MissingInputs", "run"]
