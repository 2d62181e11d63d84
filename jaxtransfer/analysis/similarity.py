"""Prediction similarity and CCA vs AUC gain, as pure functions (docs/protocol.md).

Prediction similarity compares two fine-tuned models on the same images: the share of
images on which both are right or both are wrong (error agreement), against what two
independent classifiers would give. The paper's baseline is a^2 + (1 - a)^2 with a
the ImageNet model's accuracy only; the symmetric a1 a2 + (1 - a1)(1 - a2) is the
agreement of independent errors with each model's own accuracy.

CCA vs AUC gain relates how far fine-tuning moved a layer from its initialisation
(CCA of T-src-freezeFalse vs src) to the relative AUC gain over random init,
(AUC_ft - AUC_random) / AUC_random, pooled over targets and folds, per layer: an OLS
line and Pearson's r (scipy.stats.linregress), and the line's 95% confidence band.
"""

from collections.abc import Iterable, Sequence

import numpy as np
from scipy import stats

LAYERS = ("conv1", "block1", "block2", "block3", "block4")


def predicted_classes(probs: np.ndarray) -> np.ndarray:
    """Class predictions: argmax, or probability > 0.5 for a 1-column sigmoid head.

    Args:
      probs: (N, C) class probabilities, or (N,) / (N, 1) sigmoid outputs.

    Returns:
      (N,) int predicted class indices.
    """
    probs = np.asarray(probs)
    if probs.ndim == 1 or probs.shape[1] == 1:
        return (probs.reshape(-1) > 0.5).astype(np.int64)
    return np.argmax(probs, axis=1)


def prediction_similarity(
    probs1: np.ndarray, probs2: np.ndarray, labels: np.ndarray
) -> dict[str, float]:
    """Error agreement of two models and its independence baselines.

    Args:
      probs1: (N, C) probabilities of model 1 (the ImageNet-fine-tuned model).
      probs2: (N, C) probabilities of model 2 (RadImageNet-fine-tuned).
      labels: (N,) int true classes.

    Returns:
      ``real``: mean of [error1 == error2]; ``rand``: the paper's a1^2 + (1-a1)^2;
      ``rand_symmetric``: a1 a2 + (1-a1)(1-a2); ``accuracy1``, ``accuracy2``;
      ``count``: N.
    """
    labels = np.asarray(labels).reshape(-1)
    error1 = predicted_classes(probs1) != labels
    error2 = predicted_classes(probs2) != labels
    if not (len(error1) == len(error2) == len(labels)):
        raise ValueError("both models must predict the same images")
    a1, a2 = 1 - error1.mean(), 1 - error2.mean()
    return {
        "real": float(np.mean(error1 == error2)),
        "rand": float(a1**2 + (1 - a1) ** 2),
        "rand_symmetric": float(a1 * a2 + (1 - a1) * (1 - a2)),
        "accuracy1": float(a1),
        "accuracy2": float(a2),
        "count": int(len(labels)),
    }


def target_of(model1: str, source: str) -> str:
    """The target of a fine-tuned model name ``<target>-<source>-freeze<...>``."""
    suffix = f"-{source}-"
    if suffix not in model1:
        raise ValueError(f"{model1!r} is not a {source}-fine-tuned model name")
    return model1[: model1.rindex(suffix)]


def relative_gain(auc_finetuned: float, auc_random: float) -> float:
    """(AUC_ft - AUC_random) / AUC_random, a fraction (not percent)."""
    return (auc_finetuned - auc_random) / auc_random


def gain_points(
    cca_rows: Iterable[dict], auc_rows: Iterable[dict], source: str
) -> list[dict]:
    """Joins CCA(T-src-freezeFalse, src) rows with the AUC gain over random init.

    Args:
      cca_rows: rows in the CCA schema (model1, model2, fold, stimuli, conv1..block4);
        only those with model1 = ``<T>-<source>-freezeFalse`` and model2 = source
        are used.
      auc_rows: rows of AUC.csv (target, source, freeze, fold, AUC).
      source: 'ImageNet' or 'RadImageNet'.

    Returns:
      One dict per joined (target, fold): target, fold, gain, and the CCA per layer.
      Rows without both AUCs are left out.
    """
    auc_rows = list(auc_rows)
    random = {
        (r["target"], r["fold"]): float(r["AUC"])
        for r in auc_rows
        if r["source"] == "random"
    }
    finetuned = {
        (r["target"], r["fold"]): float(r["AUC"])
        for r in auc_rows
        if r["source"] == source and r["freeze"] == "freezeFalse"
    }
    points = []
    for row in cca_rows:
        if row["model2"] != source or not row["model1"].endswith(
            f"-{source}-freezeFalse"
        ):
            continue
        key = (target_of(row["model1"], source), row["fold"])
        if key not in random or key not in finetuned:
            continue
        points.append(
            {
                "target": key[0],
                "fold": key[1],
                "gain": relative_gain(finetuned[key], random[key]),
                **{layer: cell_float(row[layer]) for layer in LAYERS if layer in row},
            }
        )
    return points


def cell_float(value) -> float:
    """A CSV cell as float; empty cells (undefined CCA) are NaN."""
    return float("nan") if value in ("", None) else float(value)


def gain_regression(
    points: Sequence[dict], layers: Sequence[str] = LAYERS
) -> dict[str, dict[str, float]]:
    """OLS of gain on CCA and Pearson's r per layer, pooled over all points.

    Args:
      points: output of `gain_points`.
      layers: layer columns.

    Returns:
      Per layer: slope, intercept, r, p (two-sided), stderr, n. NaN where fewer
      than 3 finite points or the CCA does not vary.
    """
    out = {}
    for layer in layers:
        x = np.array([p.get(layer, np.nan) for p in points], float)
        y = np.array([p["gain"] for p in points], float)
        finite = np.isfinite(x) & np.isfinite(y)
        x, y = x[finite], y[finite]
        nan = float("nan")
        if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
            out[layer] = dict(
                slope=nan, intercept=nan, r=nan, p=nan, stderr=nan, n=len(x)
            )
            continue
        fit = stats.linregress(x, y)
        out[layer] = dict(
            slope=float(fit.slope),
            intercept=float(fit.intercept),
            r=float(fit.rvalue),
            p=float(fit.pvalue),
            stderr=float(fit.stderr),
            n=int(len(x)),
        )
    return out


def regression_band(
    x: Sequence[float], y: Sequence[float], at: Sequence[float], level: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """Confidence band of the OLS line (the mean gain at a given CCA).

    The classical t-interval, fitted +- t_{(1+level)/2, n-2} s sqrt(1/n +
    (at - mean x)^2 / Sxx), with s the residual SD. The paper's figure is seaborn's
    `regplot`, which bootstraps its band (1000 resamples of the points): an
    approximation of this interval that changes from draw to draw.

    Args:
      x: CCA values; non-finite pairs are left out.
      y: gains.
      at: CCA values to evaluate the band at.
      level: confidence level.

    Returns:
      (lower, upper), each shaped like ``at``; NaN where fewer than 3 finite
      points or the CCA does not vary.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    at = np.asarray(at, float)
    finite = np.isfinite(x) & np.isfinite(y)
    x, y = x[finite], y[finite]
    n = len(x)
    if n < 3 or np.ptp(x) == 0:
        nan = np.full(at.shape, np.nan)
        return nan, nan
    slope, intercept = np.polyfit(x, y, 1)
    residual_sd = np.sqrt(np.sum((y - (intercept + slope * x)) ** 2) / (n - 2))
    sxx = np.sum((x - x.mean()) ** 2)
    half = (
        stats.t.ppf((1 + level) / 2, n - 2)
        * residual_sd
        * np.sqrt(1 / n + (at - x.mean()) ** 2 / sxx)
    )
    fitted = intercept + slope * at
    return fitted - half, fitted + half


def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """Mean, sample SD (ddof 1; NaN for one value) and count of the finite values."""
    values = np.asarray([v for v in values if np.isfinite(v)], float)
    if len(values) == 0:
        return float("nan"), float("nan"), 0
    std = float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")
    return float(np.mean(values)), std, len(values)
