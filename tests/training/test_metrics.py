"""Losses and AUCs against Keras and scikit-learn."""

import keras
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from jaxtransfer.training import metrics


def _probs(rng, n, c, signal):
    labels = rng.integers(0, c, n)
    logits = rng.normal(0, 1, (n, c)) + signal * np.eye(c)[labels]
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return labels, p.astype(np.float32)


@pytest.mark.parametrize("c", [2, 3, 7])
def test_keras_auc_matches_keras_metric(c):
    labels, probs = _probs(np.random.default_rng(c), 300, c, 1.5)
    onehot = np.eye(c)[labels]
    keras_metric = keras.metrics.AUC()
    keras_metric.update_state(onehot, probs)
    ours = metrics.keras_auc(onehot, probs)
    assert ours == pytest.approx(float(keras_metric.result()), abs=1e-6)
    # Pooled micro-AUC with 200 thresholds is close to, not equal to, the exact one.
    exact = roc_auc_score(onehot, probs, average="micro")
    assert abs(ours - exact) < 0.01 and ours != exact


def test_auc_scores_binary_and_multiclass():
    labels, probs = _probs(np.random.default_rng(0), 400, 2, 1.0)
    scores = metrics.auc_scores(labels, probs)
    assert scores["binary"] == pytest.approx(roc_auc_score(labels, probs[:, 1]))
    # Micro over two complementary columns differs from the binary AUC
    # (docs/protocol.md#auc).
    assert abs(scores["micro"] - scores["binary"]) > 1e-4

    labels, probs = _probs(np.random.default_rng(1), 400, 4, 1.0)
    scores = metrics.auc_scores(labels, probs)
    expected = roc_auc_score(labels, probs, multi_class="ovr", average="weighted")
    assert scores["weighted"] == pytest.approx(expected)
    expected = roc_auc_score(labels, probs, multi_class="ovr", average="macro")
    assert scores["macro"] == pytest.approx(expected)


def test_losses_match_keras():
    rng = np.random.default_rng(3)
    logits = rng.normal(0, 2, (16, 2)).astype(np.float32)
    onehot = np.eye(2, dtype=np.float32)[rng.integers(0, 2, 16)]
    cce = keras.losses.CategoricalCrossentropy(from_logits=True, reduction=None)
    np.testing.assert_allclose(
        metrics.softmax_cross_entropy(logits, onehot), cce(onehot, logits), rtol=1e-5
    )
    bce = keras.losses.BinaryCrossentropy(from_logits=True, reduction=None)
    np.testing.assert_allclose(
        metrics.sigmoid_bce_on_softmax_logits(logits, onehot),
        bce(onehot, logits),
        rtol=1e-5,
    )
    np.testing.assert_allclose(
        metrics.sigmoid_bce(logits[:, :1], onehot),
        bce(onehot[:, 1:], logits[:, :1]),
        rtol=1e-5,
    )


def test_predictions_and_probabilities_of_sigmoid_head():
    logits = np.array([[-1.0], [2.0]], np.float32)
    np.testing.assert_array_equal(metrics.predictions(logits), [0, 1])
    probs = np.asarray(metrics.probabilities(logits))
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-6)
    assert probs[1, 1] > 0.5 > probs[0, 1]
