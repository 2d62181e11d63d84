"""A grid's results: which AUC fills the tables, AUC.csv and the summary.

docs/protocol.md#auc and docs/protocol.md#result-files
"""

import csv
import io

import numpy as np
from ml_collections import ConfigDict

from jaxtransfer.grid.plan import SOURCES
from jaxtransfer.training import metrics

# config.eval.auc: a key of metrics.auc_scores, or v1's choice per target
# (docs/protocol.md#auc).
AUC_CHOICES = ("keras_micro", "micro", "macro", "weighted", "binary", "v1_sklearn")


def check_auc_choice(choice: str) -> None:
    """Raises a ValueError naming config.eval.auc unless ``choice`` is known."""
    if choice not in AUC_CHOICES:
        raise ValueError(f"config.eval.auc={choice!r}: expected one of {AUC_CHOICES}")


def auc_key(config: ConfigDict, num_classes: int) -> str:
    """Which AUC fills the AUC column; a clear error if it does not fit.

    docs/protocol.md#auc
    """
    choice = config.eval.auc
    check_auc_choice(choice)
    if choice == "binary" and num_classes != 2:
        raise ValueError(
            f"config.eval.auc='binary' needs a binary target; {config.target} has "
            f"{num_classes} classes (use 'keras_micro', 'micro', 'macro' or 'weighted')"
        )
    if choice == "v1_sklearn":
        return "binary" if num_classes == 2 else "weighted"
    return choice


def validation_auc(config: ConfigDict, labels: np.ndarray, probs: np.ndarray) -> float:
    """An epoch's validation AUC, by ``config.eval.auc``; NaN for one class."""
    if np.unique(labels).size < 2:
        return float("nan")
    return metrics.auc_scores(labels, probs)[auc_key(config, probs.shape[1])]


def paper_row_order(result: dict) -> tuple:
    """Sort key of the paper's AUC.csv: per freeze setting, fold by fold, ImageNet
    then RadImageNet; the random-init rows last."""
    return (
        result["source"] == "random",
        result["freeze"] != "freezeFalse",
        int(result["fold"].removeprefix("fold")),
        SOURCES.index(result["source"]),
    )


def auc_csv(results: list[dict]) -> str:
    """AUC.csv in the paper's schema and row order: target,source,freeze,fold,AUC."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["target", "source", "freeze", "fold", "AUC"])
    for r in sorted(results, key=paper_row_order):
        writer.writerow(
            [r["target"], r["source"], r["freeze"], r["fold"], repr(r["AUC"])]
        )
    return out.getvalue()


def summarize(results: list[dict]) -> dict:
    """Mean and sample SD of AUC (x100) per source/freeze, as AUC_mean.csv."""
    table = {}
    for r in results:
        table.setdefault(f"{r['source']}-{r['freeze']}", []).append(100 * r["AUC"])
    return {
        setting: {
            "mean": float(np.mean(v)),
            "std": float(np.std(v, ddof=1)) if len(v) > 1 else float("nan"),
            "folds": len(v),
        }
        for setting, v in table.items()
    }


def print_table(config: ConfigDict, table: dict) -> None:
    print(
        f"\n{config.target}: test AUC ({config.eval.auc}), mean ± sd over folds, x100"
    )
    for setting, stats in sorted(table.items()):
        print(
            f"  {setting:<28} {stats['mean']:6.1f} ± {stats['std']:5.2f}  "
            f"({stats['folds']} folds)"
        )
