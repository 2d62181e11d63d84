"""report.md of an analysed workdir: this run's numbers beside the paper's.

Pure text rendering from rows (dicts as read from the result CSVs); the driver
(`jaxtransfer.analyze`) reads and writes the files.
"""

import math
from collections.abc import Sequence

from jaxtransfer.analysis.similarity import LAYERS, cell_float, mean_std

AUC_SETTINGS = (
    ("ImageNet", "freezeFalse"),
    ("ImageNet", "freezeTrue"),
    ("RadImageNet", "freezeFalse"),
    ("RadImageNet", "freezeTrue"),
    ("random", "freezeFalse"),
)


def _fmt(mean: float, std: float, digits: int = 2, std_digits: int | None = None):
    if not math.isfinite(mean):
        return "–"
    std_digits = digits if std_digits is None else std_digits
    if not math.isfinite(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{std_digits}f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines + [""]


def auc_summary(rows: Sequence[dict]) -> dict[tuple[str, str, str], tuple]:
    """(target, source, freeze) -> (mean, sd, n) of AUC x100 over folds."""
    keys = sorted({(r["target"], r["source"], r["freeze"]) for r in rows})
    return {
        key: mean_std(
            [
                100 * float(r["AUC"])
                for r in rows
                if (r["target"], r["source"], r["freeze"]) == key
            ]
        )
        for key in keys
    }


def paper_auc_summary(mean_rows: Sequence[dict]) -> dict[tuple[str, str, str], tuple]:
    """(target, source, freeze) -> (mean, sd) as printed in the paper's AUC_mean.csv."""
    return {
        (r["target"], r["source"], r["freeze"]): (float(r["mean"]), float(r["std"]))
        for r in mean_rows
    }


def cca_summary(rows: Sequence[dict]) -> dict[tuple[str, str], dict[str, tuple]]:
    """(model1, model2) -> {layer: (mean, sd, n) over folds}, in first-seen order."""
    pairs = list(dict.fromkeys((r["model1"], r["model2"]) for r in rows))
    return {
        pair: {
            layer: mean_std(
                [
                    cell_float(r[layer])
                    for r in rows
                    if (r["model1"], r["model2"]) == pair
                ]
            )
            for layer in LAYERS
        }
        for pair in pairs
    }


def similarity_summary(rows: Sequence[dict], target: str) -> dict:
    """(freeze, prob) -> (mean, sd, n) of the target's similarity values."""
    keys = sorted({(r["freeze"], r["prob"]) for r in rows if r["target"] == target})
    return {
        key: mean_std(
            [
                float(r["value"])
                for r in rows
                if r["target"] == target and (r["freeze"], r["prob"]) == key
            ]
        )
        for key in keys
    }


def render(
    *,
    workdir: str,
    target: str,
    details: dict,
    auc_rows: Sequence[dict],
    cca_rows: Sequence[dict],
    similarity_rows: Sequence[dict],
    gain_stats: dict[str, dict[str, dict]],
    full_depth_rows: Sequence[dict] | None = None,
    full_depth_taps: Sequence[str] = (),
    reference: dict | None = None,
    figures: Sequence[str] = (),
) -> str:
    """The markdown report.

    Args:
      workdir: the analysed workdir (for the title).
      target: the target name.
      details: run facts to list (protocol, image size, stimuli, sampling, notes).
      auc_rows: this run's AUC.csv rows.
      cca_rows: this run's CCA_<target>.csv rows.
      similarity_rows: this run's similarity.csv rows.
      gain_stats: per source, `similarity.gain_regression` of this run.
      full_depth_rows: optional full-depth CCA rows (model1, model2, fold, taps...).
      full_depth_taps: their tap columns.
      reference: the paper's tables, keys ``auc_mean``, ``cca``, ``similarity``,
        ``gain_stats`` (as above, pooled over the paper's 7 targets), ``directory``.
      figures: figure file names (PNG) to link.

    Returns:
      The report text.
    """
    ref = reference or {}
    lines = [f"# Analysis of `{workdir}` ({target})", ""]
    for key, value in details.items():
        if key == "notes":
            continue
        lines.append(f"- **{key}**: {value}")
    if ref:
        lines.append(f"- **paper reference**: `{ref.get('directory', '')}`")
    lines.append("")
    notes = details.get("notes", [])
    if notes:
        lines += ["Notes:", ""] + [f"- {n}" for n in notes] + [""]

    # AUC
    lines += ["## Test AUC (x100), mean ± SD over folds", ""]
    run_auc = auc_summary(auc_rows)
    paper_auc = paper_auc_summary(ref.get("auc_mean", []))
    header = ["target", "source", "freeze", "this run", "folds"]
    if ref:
        header.append("paper")
    body = []
    for source, freeze in AUC_SETTINGS:
        key = (target, source, freeze)
        if key not in run_auc and key not in paper_auc:
            continue
        mean, std, n = run_auc.get(key, (math.nan, math.nan, 0))
        row = [target, source, freeze, _fmt(mean, std, 1, 2), n]
        if ref:
            row.append(_fmt(*paper_auc[key], 1, 2) if key in paper_auc else "–")
        body.append(row)
    lines += _table(header, body)

    # CCA
    lines += [
        "## Mean CCA per layer, mean ± SD over folds",
        "",
        "Each pair has a row for this run and, with a reference, one for the paper.",
        "",
    ]
    run_cca = cca_summary(cca_rows)
    paper_cca = cca_summary(ref.get("cca", []))
    body = []
    for pair in list(dict.fromkeys([*run_cca, *paper_cca])):
        for label, table in (("this run", run_cca), ("paper", paper_cca)):
            if label == "paper" and not ref:
                continue
            if pair not in table:
                body.append([*pair, label] + ["–"] * len(LAYERS))
                continue
            body.append(
                [*pair, label] + [_fmt(*table[pair][layer][:2]) for layer in LAYERS]
            )
    lines += _table(["model1", "model2", "", *LAYERS], body)

    # Prediction similarity
    lines += [
        "## Prediction similarity, ImageNet-ft vs RadImageNet-ft",
        "",
        "real = error agreement; rand = the paper's independent baseline a² + "
        "(1−a)² with a the ImageNet model's accuracy.",
        "",
    ]
    run_sim = similarity_summary(similarity_rows, target)
    paper_sim = similarity_summary(ref.get("similarity", []), target)
    header = ["freeze", "prob", "this run"] + (["paper"] if ref else [])
    body = []
    for key in sorted({*run_sim, *paper_sim}):
        mean, std, n = run_sim.get(key, (math.nan, math.nan, 0))
        row = [*key, _fmt(mean, std, 3)]
        if ref:
            row.append(_fmt(*paper_sim[key][:2], 3) if key in paper_sim else "–")
        body.append(row)
    lines += _table(header, body)

    # CCA vs AUC gain
    lines += [
        "## CCA(fine-tuned, init) vs relative AUC gain over random init",
        "",
        "OLS slope and Pearson r per layer (this run: its own folds; paper: all 7 "
        "targets x 5 folds).",
        "",
    ]
    header = ["source", "layer", "this run slope / r (n)"]
    if ref:
        header.append("paper slope / r (n)")
    body = []
    for source, stats in gain_stats.items():
        for layer in LAYERS:
            s = stats[layer]
            row = [source, layer, _stat(s)]
            if ref:
                row.append(_stat(ref.get("gain_stats", {}).get(source, {}).get(layer)))
            body.append(row)
    lines += _table(header, body)

    if full_depth_rows:
        lines += [
            "## Full depth (beyond the paper): all channels, all stimuli",
            "",
            "Mean over folds of the mean CCA at conv1 and every block output.",
            "",
        ]
        pairs = list(dict.fromkeys((r["model1"], r["model2"]) for r in full_depth_rows))
        body = []
        for pair in pairs:
            chosen = [r for r in full_depth_rows if (r["model1"], r["model2"]) == pair]
            body.append(
                [
                    *pair,
                    *(
                        _fmt(mean_std([cell_float(r[t]) for r in chosen])[0], math.nan)
                        for t in full_depth_taps
                    ),
                ]
            )
        short = [t.replace("_out", "").replace("_relu", "") for t in full_depth_taps]
        lines += _table(["model1", "model2", *short], body)

    if figures:
        lines += ["## Figures", ""] + [f"![{f}]({f})" for f in figures] + [""]
    return "\n".join(lines)


def _stat(s: dict | None) -> str:
    if not s or not math.isfinite(s.get("slope", math.nan)):
        return "–" if not s else f"– (n={s.get('n', 0)})"
    return f"{s['slope']:.2f} / {s['r']:.2f} (n={s['n']})"
