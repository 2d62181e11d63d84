"""The paper's result tables (docs/protocol.md#result-files): headers, CSV text,
derived tables, and the paper's numbers for a report.

No jax here: the analysis of one target (`analysis.study`) and the pooling of
several (`analysis.pooling`) read and write the same files with these functions.
"""

import csv
import io
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from jaxtransfer.analysis import report, similarity

AUC_HEADER = ["target", "source", "freeze", "fold", "AUC"]
CCA_HEADER = ["model1", "model2", "fold", "stimuli", *similarity.LAYERS]
SIMILARITY_HEADER = ["target", "model1", "model2", "freeze", "fold", "prob", "value"]
AUC_MEAN_HEADER = ["", "target", "source", "freeze", "fold", "AUC", "mean", "std"]
GAIN_FILES = {"ImageNet": "simVSaucImNet.csv", "RadImageNet": "simVSaucRadNet.csv"}
GAIN_STATS_HEADER = ["source", "layer", "slope", "intercept", "r", "p", "stderr", "n"]


def read_csv(path: str | os.PathLike) -> list[dict]:
    """The rows of a CSV file with a header, as dicts of strings."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def csv_text(header: Sequence[str], rows: Iterable[dict | list]) -> str:
    """CSV text with ``header``; dict rows are written in the header's order."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([row[h] for h in header] if isinstance(row, dict) else row)
    return out.getvalue()


def auc_mean_rows(auc_rows: Sequence[dict]) -> list[list]:
    """AUC_mean.csv rows (paper schema: row number, AUC x100, mean 1dp, std 2dp)."""
    summary = report.auc_summary(auc_rows)
    indexed = sorted(
        enumerate(auc_rows), key=lambda item: (item[1]["target"], item[1]["source"])
    )
    out = []
    for index, row in indexed:
        mean, std, _ = summary[(row["target"], row["source"], row["freeze"])]
        out.append(
            [
                index,
                row["target"],
                row["source"],
                row["freeze"],
                row["fold"],
                repr(100 * float(row["AUC"])),
                round(mean, 1),
                round(std, 2) if np.isfinite(std) else "",
            ]
        )
    return out


def gain_stats_rows(gain_stats: dict[str, dict[str, dict]]) -> list[dict]:
    """gain_stats.csv rows (GAIN_STATS_HEADER) of `similarity.gain_regression`s."""
    return [
        {"source": source, "layer": layer, **values}
        for source, per_layer in gain_stats.items()
        for layer, values in per_layer.items()
    ]


def jsonable(value):
    """NaN/inf -> None (in nested dicts, lists, tuples), so the JSON is strict."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def read_reference(
    directory: str | os.PathLike, targets: Sequence[str] | None = None
) -> dict:
    """The paper's tables for a report, with its CCA vs AUC gain regression recomputed.

    Args:
      directory: the paper's result CSVs (AUC.csv, AUC_mean.csv, similarity.csv,
        simVSauc*.csv, CCA_<target>.csv), or a pooled workdir of this package.
      targets: the targets compared; None for all of the paper's.

    Returns:
      ``directory``; ``auc_mean`` and ``similarity`` rows; ``cca``: the rows of
      CCA_<t>.csv for each t in ``targets`` (where present); ``gain_stats``: per
      source, `similarity.gain_regression` over the paper's points of ``targets``;
      ``gain_stats_all``: the same over all its points
      (docs/protocol.md#cca-vs-auc-gain, n = 35);
      ``targets``: the targets among its points.
    """
    directory = Path(directory)
    auc = read_csv(directory / "AUC.csv")
    gain_stats, gain_stats_all, paper_targets = {}, {}, set()
    for source, name in GAIN_FILES.items():
        points = similarity.gain_points(read_csv(directory / name), auc, source)
        paper_targets |= {p["target"] for p in points}
        gain_stats_all[source] = similarity.gain_regression(points)
        chosen = [p for p in points if targets is None or p["target"] in targets]
        gain_stats[source] = similarity.gain_regression(chosen)
    cca = []
    for target in targets or ():
        path = directory / f"CCA_{target}.csv"
        cca += read_csv(path) if path.is_file() else []
    return {
        "directory": str(directory),
        "auc_mean": read_csv(directory / "AUC_mean.csv"),
        "cca": cca,
        "similarity": read_csv(directory / "similarity.csv"),
        "gain_stats": gain_stats,
        "gain_stats_all": gain_stats_all,
        "targets": sorted(paper_targets),
    }
