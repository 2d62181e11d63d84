"""report.md of an analysed workdir, or of several pooled: this run's numbers beside
the paper's.

Pure text rendering from rows (dicts as read from the result CSVs); the driver
(`jaxtransfer.analysis.study`) reads and writes the files.
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


POOL_COMMAND = "python -m jaxtransfer.pool --workdir runs/all runs/knee runs/chest ..."


def _header_lines(title: str, details: dict, ref: dict) -> list[str]:
    """Title, the run facts as a list, then the notes."""
    lines = [title, ""]
    for key, value in details.items():
        if key != "notes":
            lines.append(f"- **{key}**: {value}")
    if ref:
        lines.append(f"- **paper reference**: `{ref.get('directory', '')}`")
    lines.append("")
    notes = details.get("notes", [])
    if notes:
        lines += ["Notes:", ""] + [f"- {n}" for n in notes] + [""]
    return lines


def _auc_lines(targets: Sequence[str], auc_rows: Sequence[dict], ref: dict):
    """Test AUC per target and setting, this run beside the paper's AUC_mean.csv."""
    lines = ["## Test AUC (x100), mean ± SD over folds", ""]
    run_auc = auc_summary(auc_rows)
    paper_auc = paper_auc_summary(ref.get("auc_mean", []))
    header = ["target", "source", "freeze", "this run", "folds"]
    if ref:
        header.append("paper")
    body = []
    for target in targets:
        for source, freeze in AUC_SETTINGS:
            key = (target, source, freeze)
            if key not in run_auc and key not in paper_auc:
                continue
            mean, std, n = run_auc.get(key, (math.nan, math.nan, 0))
            row = [target, source, freeze, _fmt(mean, std, 1, 2), n]
            if ref:
                row.append(_fmt(*paper_auc[key], 1, 2) if key in paper_auc else "–")
            body.append(row)
    return lines + _table(header, body)


def _similarity_lines(targets: Sequence[str], rows: Sequence[dict], ref: dict):
    """Prediction similarity per target, freeze and prob, beside the paper's."""
    lines = [
        "## Prediction similarity, ImageNet-ft vs RadImageNet-ft",
        "",
        "real = error agreement; rand = the paper's independent baseline a² + "
        "(1−a)² with a the ImageNet model's accuracy.",
        "",
    ]
    header = ["target", "freeze", "prob", "this run"] + (["paper"] if ref else [])
    body = []
    for target in targets:
        run_sim = similarity_summary(rows, target)
        paper_sim = similarity_summary(ref.get("similarity", []), target)
        for key in sorted({*run_sim, *paper_sim}):
            mean, std, n = run_sim.get(key, (math.nan, math.nan, 0))
            row = [target, *key, _fmt(mean, std, 3)]
            if ref:
                row.append(_fmt(*paper_sim[key][:2], 3) if key in paper_sim else "–")
            body.append(row)
    return lines + _table(header, body)


def _gain_lines(
    title: str, text: str, columns: Sequence[tuple[str, dict[str, dict[str, dict]]]]
) -> list[str]:
    """The CCA vs AUC gain regressions as a table, one column per label and source."""
    lines = [title, "", text, ""]
    sources = list(dict.fromkeys(s for _, stats in columns for s in stats))
    header = [
        "source",
        "layer",
        *(f"{label}: slope / r / p (n)" for label, _ in columns),
    ]
    body = [
        [
            source,
            layer,
            *(_stat(stats.get(source, {}).get(layer)) for _, stats in columns),
        ]
        for source in sources
        for layer in LAYERS
    ]
    return lines + _table(header, body)


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
    """The markdown report of one target.

    Args:
      workdir: the analysed workdir (for the title).
      target: the target name.
      details: run facts to list (protocol, image size, stimuli, sampling, notes).
      auc_rows: this run's AUC.csv rows.
      cca_rows: this run's CCA_<target>.csv rows.
      similarity_rows: this run's similarity.csv rows.
      gain_stats: per source, `similarity.gain_regression` of this run (its folds).
      full_depth_rows: optional full-depth CCA rows (model1, model2, fold, taps...).
      full_depth_taps: their tap columns.
      reference: the paper's tables (`tables.read_reference` for this target):
        keys ``auc_mean``, ``cca``, ``similarity``, ``gain_stats`` (the paper's
        regression over this target's folds only), ``directory``.
      figures: figure file names (PNG) to link.

    Returns:
      The report text.
    """
    ref = reference or {}
    lines = _header_lines(f"# Analysis of `{workdir}` ({target})", details, ref)
    lines += _auc_lines([target], auc_rows, ref)

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

    lines += _similarity_lines([target], similarity_rows, ref)

    columns = [(f"this run, {target} only", gain_stats)]
    if ref:
        columns.append((f"paper, {target} only", ref.get("gain_stats", {})))
    lines += _gain_lines(
        f"## CCA(fine-tuned, init) vs relative AUC gain over random init: {target} "
        "only (per target)",
        "OLS slope, Pearson r and its two-sided p per layer over this target's folds "
        "only (n = folds); the paper column is the paper's regression over the same "
        "target's folds. The paper's pooled numbers take 7 targets x 5 folds (n = 35) "
        "and are not comparable with one target's: analyse several targets, then "
        f"pool them with `{POOL_COMMAND}` (its report puts the paper's pooled "
        "numbers beside the pooled run's).",
        columns,
    )

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

    lines += _figure_lines(figures)
    return "\n".join(lines)


def render_pooled(
    *,
    workdir: str,
    targets: Sequence[str],
    details: dict,
    auc_rows: Sequence[dict],
    similarity_rows: Sequence[dict],
    gain_stats: dict[str, dict[str, dict]],
    reference: dict | None = None,
    figures: Sequence[str] = (),
) -> str:
    """The markdown report of several targets pooled (docs/protocol.md#cca-vs-auc-gain).

    Args:
      workdir: the pooled workdir (for the title).
      targets: the pooled targets, in order.
      details: facts to list (inputs, shared config, notes).
      auc_rows: the pooled AUC.csv rows.
      similarity_rows: the pooled similarity.csv rows.
      gain_stats: per source, `similarity.gain_regression` over all pooled points.
      reference: the paper's tables (`tables.read_reference` for ``targets``):
        ``gain_stats`` over the paper's points of these targets, ``gain_stats_all``
        over all of them, ``targets`` (the paper's), plus ``auc_mean``,
        ``similarity``, ``directory``.
      figures: figure file names (PNG) to link.

    Returns:
      The report text.
    """
    ref = reference or {}
    lines = _header_lines(
        f"# Pooled analysis of `{workdir}` ({len(targets)} targets)", details, ref
    )
    lines += _auc_lines(targets, auc_rows, ref)
    lines += _similarity_lines(targets, similarity_rows, ref)
    columns = [(f"this run, {len(targets)} targets pooled", gain_stats)]
    if ref:
        paper_targets = ref.get("targets", [])
        if sorted(paper_targets) == sorted(targets):
            columns.append(("paper, the same targets", ref.get("gain_stats", {})))
        else:
            columns.append(("paper, these targets", ref.get("gain_stats", {})))
            columns.append(
                (f"paper, all {len(paper_targets)} targets", ref["gain_stats_all"])
            )
    lines += _gain_lines(
        "## CCA(fine-tuned, init) vs relative AUC gain over random init, pooled",
        "OLS slope, Pearson r and its two-sided p per layer, pooled over every fold "
        "of every target (the paper: 7 targets x 5 folds, n = 35).",
        columns,
    )
    lines += _figure_lines(figures)
    return "\n".join(lines)


def _figure_lines(figures: Sequence[str]) -> list[str]:
    if not figures:
        return []
    return ["## Figures", ""] + [f"![{f}]({f})" for f in figures] + [""]


def _stat(s: dict | None) -> str:
    """slope / r / p (n) of one `gain_regression` layer, or a dash."""
    if not s or not math.isfinite(s.get("slope", math.nan)):
        return "–" if not s else f"– (n={s.get('n', 0)})"
    return f"{s['slope']:.2f} / {s['r']:.2f} / {s['p']:.2g} (n={s['n']})"
