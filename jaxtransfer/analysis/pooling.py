"""Pools analysed per-target workdirs into the paper's all-target tables.

docs/protocol.md#result-files

``run(workdirs, out)`` is the door (the command line is ``jaxtransfer.pool``). Each
input is a finished grid of `jaxtransfer.grid` (config.json, AUC.csv)
analysed by `jaxtransfer.analyze` (analysis/: similarity.csv, simVSauc*.csv,
CCA_<target>.csv, summary.json), one per target. The pooled workdir gets, each
file atomically, in the paper's schemas:

- AUC.csv, AUC_mean.csv, similarity.csv: the targets' rows, all together;
- simVSaucImNet.csv, simVSaucRadNet.csv and CCA_<target>.csv of every target, so
  that the pooled workdir is itself a reference directory (`--reference`);
- gain_stats.csv: the CCA vs AUC gain regression (OLS slope, intercept, Pearson r,
  p, n per source and layer) over the points of all targets, as the paper's figure;
- cca_vs_auc_gain.png/.pdf (the paper's 2x5 figure: points coloured by target, one
  pooled OLS line with its 95% band per panel), auc and similarity figures;
- report.md (with --reference: the paper's pooled numbers, recomputed from its
  CSVs with the same functions, beside this run's) and summary.json.

Workdirs that cannot be pooled are refused before anything is written: a missing
result file, a target given twice, or configs that differ in a field that changes
what the numbers mean (`MUST_MATCH`).
"""

import dataclasses
import json
import os
from pathlib import Path

from jaxtransfer import models
from jaxtransfer.analysis import figures, report, similarity, tables
from jaxtransfer.runtime import files

# Config fields every pooled target must share: the protocol (splits, early stopping),
# the network, the AUC definition (docs/protocol.md#auc) and the loss, BatchNorm and
# head-stage weight choices (docs/protocol.md#fine-tuning) and augmentation convention
# behind the AUCs.
MUST_MATCH = (
    "protocol",
    "model.name",
    "eval.auc",
    "train.binary_loss",
    "train.stage2_bn_train",
    "train.head_keep_best",
    "train.augment_convention",
)
# Config groups that differ between targets by design (data, image size, paths)
# or do not change the results; other differences are listed in the report.
PER_TARGET = ("target", "data", "analysis", "log", "host")
NOT_RECORDED = "(not recorded)"


@dataclasses.dataclass
class TargetRun:
    """One analysed target workdir, as read."""

    workdir: Path
    target: str
    config: dict  # config.json, flattened to dotted keys
    auc: list[dict]
    similarity: list[dict]
    gain: dict[str, list[dict]]  # source -> its simVSauc rows
    cca: list[dict]


def _require(path: Path, workdir: Path, what: str) -> Path:
    if not path.is_file():
        raise FileNotFoundError(
            f"{workdir}: {path.relative_to(workdir)} is missing ({what})"
        )
    return path


def _check_target(rows: list[dict], target: str, path: Path, column=None) -> None:
    """Every row of ``path`` belongs to ``target`` (its config.json's)."""
    for row in rows:
        found = column(row) if column else row["target"]
        if found != target:
            raise ValueError(
                f"{path}: a row of target {found!r}, but config.json says {target!r}"
            )


def read_target(workdir: str | os.PathLike) -> TargetRun:
    """Reads an analysed target workdir; a clear error for a missing result file."""
    workdir = Path(workdir)
    if not workdir.is_dir():
        raise FileNotFoundError(f"{workdir}: no such workdir")
    config_file = _require(
        workdir / "config.json", workdir, "not a jaxtransfer.main workdir"
    )
    config = files.flatten(json.loads(config_file.read_text()))
    target = config.get("target")
    if not target:
        raise ValueError(f"{config_file}: no target recorded")
    unfinished = "the grid has not finished: rerun jaxtransfer.main"
    auc_file = _require(workdir / "AUC.csv", workdir, unfinished)
    analysis = workdir / "analysis"
    unanalysed = (
        f"not analysed (with its CCA): run python -m jaxtransfer.analyze "
        f"--workdir {workdir}"
    )
    # summary.json is the analysis's last file: present, the others are complete.
    _require(analysis / "summary.json", workdir, unanalysed)
    sim_file = _require(analysis / "similarity.csv", workdir, unanalysed)
    cca_file = _require(analysis / f"CCA_{target}.csv", workdir, unanalysed)
    auc = tables.read_csv(auc_file)
    _check_target(auc, target, auc_file)
    sim = tables.read_csv(sim_file)
    _check_target(sim, target, sim_file)
    gain = {}
    for source, name in tables.GAIN_FILES.items():
        path = _require(analysis / name, workdir, unanalysed)
        gain[source] = tables.read_csv(path)
        _check_target(
            gain[source],
            target,
            path,
            lambda r, s=source: similarity.target_of(r["model1"], s),
        )
    return TargetRun(
        workdir=workdir,
        target=target,
        config=config,
        auc=auc,
        similarity=sim,
        gain=gain,
        cca=tables.read_csv(cca_file),
    )


def check_poolable(runs: list[TargetRun]) -> tuple[dict, list[str]]:
    """Refuses targets given twice and configs that differ in `MUST_MATCH`.

    Returns:
      The shared `MUST_MATCH` values, and notes naming the other config fields
      (outside `PER_TARGET`) that differ between the workdirs.
    """
    if not runs:
        raise ValueError("no workdirs to pool")
    seen = {}
    for r in runs:
        if r.target in seen:
            raise ValueError(
                f"target {r.target!r} given twice: {seen[r.target]} and "
                f"{r.workdir} (pool one workdir per target)"
            )
        seen[r.target] = r.workdir
    shared, notes = {}, []
    keys = sorted({k for r in runs for k in r.config})
    for key in dict.fromkeys([*MUST_MATCH, *keys]):
        if key.split(".")[0] in PER_TARGET:
            continue
        values = {r.workdir: json.dumps(r.config.get(key, NOT_RECORDED)) for r in runs}
        if len(set(values.values())) == 1:
            if key in MUST_MATCH:
                shared[key] = runs[0].config.get(key, NOT_RECORDED)
            continue
        listing = ", ".join(f"{v} in {w}" for w, v in values.items())
        if key in MUST_MATCH:
            raise ValueError(
                f"cannot pool: config.json field {key!r} differs ({listing}); "
                f"pooled targets must share {', '.join(MUST_MATCH)}"
            )
        notes.append(f"config {key} differs between the workdirs: {listing}")
    return shared, notes


def run(
    workdirs: list[str | os.PathLike],
    workdir: str | os.PathLike,
    reference: str | os.PathLike | None = None,
) -> dict:
    """Pools analysed target workdirs; writes everything into ``workdir``.

    Args:
      workdirs: analysed `jaxtransfer.grid` workdirs, one per target.
      workdir: the pooled workdir (created; not one of the inputs).
      reference: directory of the paper's result CSVs for the side-by-side
        report; None for this run's numbers only.

    Returns:
      A summary dict (also written as summary.json).
    """
    out = Path(workdir)
    runs = [read_target(w) for w in workdirs]
    shared, notes = check_poolable(runs)
    if any(out.resolve() == r.workdir.resolve() for r in runs):
        raise ValueError(f"{out}: the pooled workdir must not be an input")
    if (out / "config.json").exists():  # its AUC.csv would be overwritten
        raise ValueError(
            f"{out}: holds a config.json, so it is a target's workdir; pool into "
            "a workdir of its own"
        )
    out.mkdir(parents=True, exist_ok=True)
    targets = [r.target for r in runs]

    auc_rows = [row for r in runs for row in r.auc]
    sim_rows = [row for r in runs for row in r.similarity]
    files.write_text(out / "AUC.csv", tables.csv_text(tables.AUC_HEADER, auc_rows))
    files.write_text(
        out / "AUC_mean.csv",
        tables.csv_text(tables.AUC_MEAN_HEADER, tables.auc_mean_rows(auc_rows)),
    )
    files.write_text(
        out / "similarity.csv", tables.csv_text(tables.SIMILARITY_HEADER, sim_rows)
    )
    for r in runs:
        files.write_text(
            out / f"CCA_{r.target}.csv", tables.csv_text(tables.CCA_HEADER, r.cca)
        )

    gain_points, gain_stats = {}, {}
    for source, name in tables.GAIN_FILES.items():
        rows = [row for r in runs for row in r.gain[source]]
        files.write_text(out / name, tables.csv_text(tables.CCA_HEADER, rows))
        gain_points[source] = similarity.gain_points(rows, auc_rows, source)
        gain_stats[source] = similarity.gain_regression(gain_points[source])
        for r in runs:
            folds = {row["fold"] for row in r.auc}
            got = sum(p["target"] == r.target for p in gain_points[source])
            if got < len(folds):
                notes.append(
                    f"{r.target}: {got} {source} CCA vs AUC gain points for "
                    f"{len(folds)} folds in AUC.csv ({r.workdir})"
                )
    files.write_text(
        out / "gain_stats.csv",
        tables.csv_text(tables.GAIN_STATS_HEADER, tables.gain_stats_rows(gain_stats)),
    )

    name = shared["model.name"]
    label = models.abstract(name).display_name if name in models.MODELS else None
    figures.gain_scatter(gain_points, gain_stats, out / "cca_vs_auc_gain", label)
    figures.auc_boxplot(auc_rows, out / "auc", label)
    figure_names = ["cca_vs_auc_gain.png", "auc.png"]
    if sim_rows:
        figures.similarity_boxplot(sim_rows, out / "similarity", label)
        figure_names.append("similarity.png")

    ref = tables.read_reference(reference, targets) if reference else None
    details = {
        "targets": ", ".join(f"{r.target} (`{r.workdir}`)" for r in runs),
        **{f"config {k}": v for k, v in shared.items()},
        "notes": notes,
    }
    text = report.render_pooled(
        workdir=str(out),
        targets=targets,
        details=details,
        auc_rows=auc_rows,
        similarity_rows=sim_rows,
        gain_stats=gain_stats,
        reference=ref,
        figures=figure_names,
    )
    files.write_text(out / "report.md", text + "\n")
    summary = {
        "inputs": {r.target: str(r.workdir) for r in runs},
        "config": shared,
        "auc_rows": len(auc_rows),
        "similarity_rows": len(sim_rows),
        "gain_points": {s: len(p) for s, p in gain_points.items()},
        "gain_stats": gain_stats,
        "notes": notes,
        "figures": figure_names,
    }
    files.write_text(
        out / "summary.json", json.dumps(tables.jsonable(summary), indent=2) + "\n"
    )
    return summary
