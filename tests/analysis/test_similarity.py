"""Prediction similarity by hand; the paper's similarity and CCA vs AUC gain
recomputed from its own CSVs (docs/protocol.md#prediction-similarity)."""

import csv

import numpy as np
import pytest
from paper_reference import PAPER_GAIN, PAPER_RESULTS, needs_paper_results
from scipy import stats

from jaxtransfer.analysis import similarity


def _read(name):
    with open(PAPER_RESULTS / name, newline="") as f:
        return list(csv.DictReader(f))


def test_prediction_similarity_by_hand():
    labels = np.array([0, 1, 1, 0, 2])
    # model 1 right on 0, 1, 2 (a1 = 0.6); model 2 right on 0, 3 (a2 = 0.4)
    probs1 = np.eye(3)[[0, 1, 1, 1, 0]]
    probs2 = np.eye(3)[[0, 0, 0, 0, 1]]
    sim = similarity.prediction_similarity(probs1, probs2, labels)
    # errors 1: F F F T T; errors 2: F T T F T -> agree on images 0 and 4.
    assert sim["real"] == pytest.approx(2 / 5)
    assert sim["rand"] == pytest.approx(0.6**2 + 0.4**2)
    assert sim["rand_symmetric"] == pytest.approx(0.6 * 0.4 + 0.4 * 0.6)
    assert (sim["accuracy1"], sim["accuracy2"], sim["count"]) == (
        pytest.approx(0.6),
        pytest.approx(0.4),
        5,
    )


def test_sigmoid_and_two_way_softmax_heads():
    labels = np.array([1, 0, 1, 0])
    sigmoid = np.array([[0.9], [0.2], [0.4], [0.7]])  # right, right, wrong, wrong
    softmax = np.array([[0.2, 0.8], [0.6, 0.4], [0.3, 0.7], [0.9, 0.1]])  # all right
    np.testing.assert_array_equal(similarity.predicted_classes(sigmoid), [1, 0, 0, 1])
    sim = similarity.prediction_similarity(sigmoid, softmax, labels)
    assert sim["real"] == 0.5 and sim["rand"] == pytest.approx(0.5)
    assert sim["rand_symmetric"] == pytest.approx(0.5)


def test_target_names_and_gain():
    assert similarity.target_of("pcam-small-ImageNet-freezeFalse", "ImageNet") == (
        "pcam-small"
    )
    assert similarity.relative_gain(0.9, 0.6) == pytest.approx(0.5)
    rows = [
        {"model1": "knee-RadImageNet-freezeFalse", "model2": "RadImageNet",
         "fold": "fold1", "conv1": "0.5", "block1": "", "block2": "0.1",
         "block3": "0.1", "block4": "0.1"},
        {"model1": "knee-ImageNet-freezeFalse", "model2": "ImageNet",
         "fold": "fold1", "conv1": "0.9", "block1": "0.1", "block2": "0.1",
         "block3": "0.1", "block4": "0.1"},
    ]  # fmt: skip
    auc = [
        {"target": "knee", "source": "RadImageNet", "freeze": "freezeFalse",
         "fold": "fold1", "AUC": "0.8"},
        {"target": "knee", "source": "random", "freeze": "freezeFalse",
         "fold": "fold1", "AUC": "0.5"},
    ]  # fmt: skip
    points = similarity.gain_points(rows, auc, "RadImageNet")
    assert len(points) == 1 and points[0]["gain"] == pytest.approx(0.6)
    assert points[0]["conv1"] == 0.5 and np.isnan(points[0]["block1"])
    assert similarity.gain_points(rows, auc, "ImageNet") == []  # no ImageNet AUC


def test_regression_band_is_the_t_interval_of_the_mean_response():
    x = np.array([0.1, 0.3, 0.4, 0.7, 0.9, np.nan])
    y = np.array([0.5, 0.2, 0.4, 0.1, 0.0, 0.3])
    at = np.array([0.0, 0.45, 1.0])
    lower, upper = similarity.regression_band(x, y, at)
    # By the matrix form: var(fit at x0) = s^2 [1 x0] (X'X)^-1 [1 x0]'.
    design = np.stack([np.ones(5), x[:5]], axis=1)
    coef, residual, *_ = np.linalg.lstsq(design, y[:5], rcond=None)
    s2 = residual[0] / 3
    at_design = np.stack([np.ones(3), at], axis=1)
    var = s2 * np.einsum("ij,jk,ik->i", at_design, np.linalg.inv(design.T @ design),
                         at_design)  # fmt: skip
    half = stats.t.ppf(0.975, 3) * np.sqrt(var)
    np.testing.assert_allclose(lower, at_design @ coef - half, rtol=1e-10)
    np.testing.assert_allclose(upper, at_design @ coef + half, rtol=1e-10)
    assert np.all(np.isnan(similarity.regression_band([1, 1, 1], [1, 2, 3], at)[0]))


@needs_paper_results
@pytest.mark.parametrize(
    "source,file",
    [("ImageNet", "simVSaucImNet.csv"), ("RadImageNet", "simVSaucRadNet.csv")],
)
def test_cca_vs_auc_gain_reproduces_the_paper_from_its_own_tables(source, file):
    points = similarity.gain_points(_read(file), _read("AUC.csv"), source)
    assert len(points) == 35
    assert len({p["target"] for p in points}) == 7
    stats = similarity.gain_regression(points)
    got = [(round(stats[layer]["slope"], 2), round(stats[layer]["r"], 2))
           for layer in similarity.LAYERS]  # fmt: skip
    assert got == PAPER_GAIN[source]
    assert all(stats[layer]["n"] == 35 for layer in similarity.LAYERS)
    assert all(0 < stats[layer]["p"] < 1 for layer in similarity.LAYERS)


@needs_paper_results
@pytest.mark.parametrize("target,size", [("breast", 156), ("thyroid", 96)])
def test_paper_baseline_is_reproduced_from_an_accuracy_of_k_over_n(target, size):
    # Every 'rand' value is a^2 + (1 - a)^2 with a = k / N the ImageNet model's
    # accuracy on the v1 held-out fold (N = 156 for breast, 96 for thyroid).
    rows = [r for r in _read("similarity.csv") if r["target"] == target]
    assert len(rows) == 20
    labels = np.zeros(size, np.int64)
    for row in (r for r in rows if r["prob"] == "rand"):
        value = float(row["value"])
        k = round(size * (1 + np.sqrt(2 * value - 1)) / 2)
        probs = np.eye(2)[(np.arange(size) >= k).astype(int)]  # k right, N - k wrong
        sim = similarity.prediction_similarity(probs, np.eye(2)[labels], labels)
        assert sim["accuracy1"] == pytest.approx(k / size)
        # Keras' evaluate() reports the accuracy in float32: agreement to ~1e-7.
        assert sim["rand"] == pytest.approx(value, abs=1e-7), row
