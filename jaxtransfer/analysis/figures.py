"""The study's figures with matplotlib (Agg), each written as PNG and PDF.

Every function takes plain rows or arrays (as read from the result CSVs) and a path
stem; files are written atomically (a hidden partial file, then a rename).
"""

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from jaxtransfer.analysis.similarity import LAYERS, regression_band  # noqa: E402
from jaxtransfer.runtime import files  # noqa: E402

SETTINGS = (
    ("ImageNet", "freezeFalse"),
    ("ImageNet", "freezeTrue"),
    ("RadImageNet", "freezeFalse"),
    ("RadImageNet", "freezeTrue"),
    ("random", "freezeFalse"),
)
COLORS = {"ImageNet": "tab:blue", "RadImageNet": "tab:orange", "random": "tab:gray"}
FORMATS = ("png", "pdf")


def save(fig, stem: str | os.PathLike, network: str | None = None) -> list[Path]:
    """Writes ``fig`` to ``stem``.png and ``stem``.pdf atomically and closes it;
    ``network`` (the architecture, e.g. 'DenseNet121') is written in a corner."""
    if network:
        fig.text(0.995, 0.005, network, ha="right", va="bottom", fontsize=7,
                 color="0.4")  # fmt: skip
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in FORMATS:
        path = stem.with_name(f"{stem.name}.{fmt}")
        with files.atomic_file(path) as partial:
            fig.savefig(partial, format=fmt, dpi=150, bbox_inches="tight")
        written.append(path)
    plt.close(fig)
    return written


def _setting_label(source: str, freeze: str) -> str:
    if source == "random":
        return "random"
    return f"{source}\n{'freeze' if freeze == 'freezeTrue' else 'no freeze'}"


def auc_boxplot(
    rows: Sequence[dict], stem: str | os.PathLike, network: str | None = None
) -> list[Path]:
    """AUC (x100) over folds per source/freeze setting, one panel per target.

    Args:
      rows: AUC.csv rows (target, source, freeze, fold, AUC in 0..1).
      stem: output path without extension.
    """
    targets = sorted({r["target"] for r in rows})
    fig, axes = plt.subplots(
        1, len(targets), figsize=(4.5 * len(targets), 3.6), squeeze=False
    )
    for ax, target in zip(axes[0], targets):
        data, labels, colors = [], [], []
        for source, freeze in SETTINGS:
            values = [
                100 * float(r["AUC"])
                for r in rows
                if (r["target"], r["source"], r["freeze"]) == (target, source, freeze)
            ]
            if values:
                data.append(values)
                labels.append(_setting_label(source, freeze))
                colors.append(COLORS[source])
        boxes = ax.boxplot(data, patch_artist=True, widths=0.6)
        ax.set_xticks(range(1, len(labels) + 1), labels, fontsize=8)
        for patch, color in zip(boxes["boxes"], colors):
            patch.set_facecolor(color)
            patch.set_alpha(0.6)
        for k, values in enumerate(data, start=1):
            ax.scatter(np.full(len(values), k), values, s=10, color="k", zorder=3)
        ax.set_title(target)
        ax.set_ylabel("test AUC (%)")
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return save(fig, stem, network)


def _layer_curve(ax, rows, model1, model2, label, color, marker="o"):
    """Mean CCA per layer over folds, error bars = SD over folds."""
    chosen = [r for r in rows if (r["model1"], r["model2"]) == (model1, model2)]
    if not chosen:
        return False
    values = np.array([[float(r[layer]) for layer in LAYERS] for r in chosen])
    with warnings.catch_warnings():  # all-NaN layers (too few datapoints) stay NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(values, axis=0)
        std = np.nanstd(values, axis=0, ddof=1) if len(values) > 1 else None
    x = np.arange(len(LAYERS))
    ax.errorbar(x, mean, yerr=std, label=label, color=color, marker=marker, capsize=3)
    return True


def cca_layers(
    rows: Sequence[dict], target: str, stem: str | os.PathLike, network=None
):
    """The paper's CCA figures for one target: (a) fine-tuned vs initialisation,
    (b) across sources. Mean over folds, error bars = SD over folds, y in [0, 1].

    Args:
      rows: CCA_<target>.csv rows.
      target: the target name (model names are ``<target>-<source>-freeze...``).
      stem: output path without extension.
    """
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for source in ("ImageNet", "RadImageNet"):
        _layer_curve(
            left,
            rows,
            f"{target}-{source}-freezeFalse",
            source,
            f"{source}-ft vs {source}",
            COLORS[source],
        )
    _layer_curve(
        right,
        rows,
        f"{target}-ImageNet-freezeFalse",
        f"{target}-RadImageNet-freezeFalse",
        "ImageNet-ft vs RadImageNet-ft",
        "tab:green",
    )
    _layer_curve(
        right, rows, "ImageNet", "RadImageNet", "ImageNet vs RadImageNet", "tab:purple"
    )
    _layer_curve(right, rows, "random", "random", "random vs random", "tab:gray")
    for ax, title in ((left, "(a) fine-tuned vs initialisation"), (right, "(b)")):
        ax.set_xticks(range(len(LAYERS)), LAYERS)
        ax.set_ylim(0, 1)
        ax.set_title(f"{target}: {title}" if ax is left else "(b) across sources")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower left")
    left.set_ylabel("mean CCA")
    fig.tight_layout()
    return save(fig, stem, network)


def similarity_boxplot(rows: Sequence[dict], stem: str | os.PathLike, network=None):
    """Prediction similarity (observed vs independent) per target and freeze.

    Args:
      rows: similarity.csv rows (target, model1, model2, freeze, fold, prob, value).
      stem: output path without extension.
    """
    groups = sorted({(r["target"], r["freeze"]) for r in rows})
    fig, ax = plt.subplots(figsize=(max(4.0, 2.2 * len(groups)), 3.6))
    positions, ticks, labels = [], [], []
    for g, (target, freeze) in enumerate(groups):
        for k, (prob, color) in enumerate((("real", "tab:red"), ("rand", "tab:gray"))):
            values = [
                float(r["value"])
                for r in rows
                if (r["target"], r["freeze"], r["prob"]) == (target, freeze, prob)
            ]
            where = 3 * g + k
            box = ax.boxplot([values], positions=[where], patch_artist=True, widths=0.7)
            box["boxes"][0].set_facecolor(color)
            box["boxes"][0].set_alpha(0.6)
            ax.scatter(np.full(len(values), where), values, s=10, c="k", zorder=3)
            positions.append(where)
        ticks.append(3 * g + 0.5)
        labels.append(f"{target}\n{freeze}")
    ax.set_xticks(ticks, labels, fontsize=8)
    ax.set_xlim(-1, 3 * len(groups) - 1)
    ax.set_ylabel("error agreement")
    ax.set_title("ImageNet-ft vs RadImageNet-ft: observed (red) vs independent (grey)")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return save(fig, stem, network)


def gain_scatter(
    points: dict[str, Sequence[dict]],
    regressions: dict[str, dict[str, dict]],
    stem: str | os.PathLike,
    network: str | None = None,
):
    """CCA(fine-tuned, init) against relative AUC gain: rows sources, columns layers.

    The paper's figure (docs/protocol.md#cca-vs-auc-gain): points coloured by target,
    one OLS line
    over all points of a panel with its 95% confidence band.

    Args:
      points: per source, `similarity.gain_points` output.
      regressions: per source, `similarity.gain_regression` output.
      stem: output path without extension.
    """
    sources = list(points)
    targets = sorted({p["target"] for ps in points.values() for p in ps})
    cmap = plt.get_cmap("tab10")
    fig, axes = plt.subplots(
        len(sources),
        len(LAYERS),
        figsize=(3.0 * len(LAYERS), 2.8 * len(sources)),
        squeeze=False,
        sharey="row",
    )
    for row, source in enumerate(sources):
        for col, layer in enumerate(LAYERS):
            ax = axes[row, col]
            for t, target in enumerate(targets):
                chosen = [p for p in points[source] if p["target"] == target]
                ax.scatter(
                    [p[layer] for p in chosen],
                    [p["gain"] for p in chosen],
                    s=14,
                    color=cmap(t % 10),
                    label=target,
                )
            fit = regressions[source][layer]
            xs = np.array([p[layer] for p in points[source]], float)
            ys = np.array([p["gain"] for p in points[source]], float)
            finite = np.isfinite(xs) & np.isfinite(ys)
            if np.isfinite(fit["slope"]) and finite.any():
                line = np.linspace(xs[finite].min(), xs[finite].max(), 50)
                lower, upper = regression_band(xs, ys, line)
                ax.fill_between(line, lower, upper, color="k", alpha=0.15, lw=0)
                ax.plot(line, fit["intercept"] + fit["slope"] * line, "k-", lw=1)
                ax.set_title(
                    f"{layer}: slope {fit['slope']:.2f}, r {fit['r']:.2f}, "
                    f"p {fit['p']:.2g}",
                    fontsize=9,
                )
            else:
                ax.set_title(layer, fontsize=9)
                if not finite.any():  # e.g. CCA undefined: too few datapoints
                    ax.text(0.5, 0.5, "no CCA values", ha="center", va="center",
                            transform=ax.transAxes, color="0.4")  # fmt: skip
                    ax.set_xticks([])
            ax.grid(alpha=0.3)
            if col == 0:
                ax.set_ylabel(f"{source}\nrelative AUC gain")
            if row == len(sources) - 1:
                ax.set_xlabel("CCA(fine-tuned, init)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="upper center", ncol=len(targets), fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    return save(fig, stem, network)


def filter_grid(kernel: np.ndarray, bgr: bool = True) -> np.ndarray:
    """The conv1 kernels as one RGB image, each filter min-max normalised.

    Args:
      kernel: (kh, kw, 3, F) HWIO conv1 kernel.
      bgr: input channels in BGR order (Keras caffe preprocessing): shown as RGB.

    Returns:
      (rows (kh + 1) - 1, cols (kw + 1) - 1, 3) float image in [0, 1], white gaps.
    """
    kh, kw, _, num = kernel.shape
    cols = int(np.ceil(np.sqrt(num)))
    rows = int(np.ceil(num / cols))
    image = np.ones((rows * (kh + 1) - 1, cols * (kw + 1) - 1, 3))
    for f in range(num):
        w = kernel[..., f]
        if bgr:
            w = w[..., ::-1]
        span = w.max() - w.min()
        w = (w - w.min()) / span if span > 0 else np.full_like(w, 0.5)
        r, c = divmod(f, cols)
        image[r * (kh + 1) : r * (kh + 1) + kh, c * (kw + 1) : c * (kw + 1) + kw] = w
    return image


def conv1_filters(
    kernels: dict[str, np.ndarray],
    stem: str | os.PathLike,
    bgr: bool = True,
    network: str | None = None,
):
    """Side-by-side grids of the conv1 filters of each named network.

    Args:
      kernels: name -> (kh, kw, 3, F) conv1 kernel.
      stem: output path without extension.
      bgr: whether input channels are BGR (Keras weights).
    """
    fig, axes = plt.subplots(
        1, len(kernels), figsize=(3.6 * len(kernels), 3.8), squeeze=False
    )
    for ax, (name, kernel) in zip(axes[0], kernels.items()):
        ax.imshow(filter_grid(np.asarray(kernel), bgr), interpolation="nearest")
        ax.set_title(f"{name} conv1 ({kernel.shape[-1]} filters)", fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    return save(fig, stem, network)
