"""Losses, accuracy and the study's three AUC definitions.

docs/protocol.md#binary-loss and docs/protocol.md#auc say which the study used.

Losses are pure jnp functions of logits, returning one value per example, so steps
can mask padding and average exactly. AUCs are computed on the host at evaluation
time from the saved softmax outputs:

- ``keras_micro``: Keras ``metrics.AUC()`` defaults as the v2 scripts use it: 200
  thresholds, every (label, score) pair of the one-hot matrix pooled into one ROC,
  trapezoid summation. For binary targets this pools both complementary columns.
- ``micro``: the same pooling, computed exactly (sklearn, no thresholds).
- ``macro`` / ``weighted``: one-vs-rest AUC averaged uniformly / by prevalence
  (sklearn). ``weighted`` is what the v1 scripts (the committed tables) report for
  multi-class targets; ``binary`` (positive class index 1) what they report for
  binary targets.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn import metrics as sk_metrics


def softmax_cross_entropy(logits: jax.Array, onehot: jax.Array) -> jax.Array:
    """Categorical cross-entropy of a softmax head, per example."""
    return optax.softmax_cross_entropy(logits, onehot)


def sigmoid_bce_on_softmax_logits(logits: jax.Array, onehot: jax.Array) -> jax.Array:
    """What TF-Keras computes for BinaryCrossentropy on a 2-unit softmax head.

    docs/protocol.md#binary-loss


    Keras reads the logits cached on the softmax output and applies sigmoid BCE to
    each pre-softmax logit against the one-hot label, averaged over the columns.
    """
    return optax.sigmoid_binary_cross_entropy(logits, onehot).mean(axis=-1)


def sigmoid_bce(logits: jax.Array, onehot: jax.Array) -> jax.Array:
    """BCE of a 1-unit sigmoid head (v1 binary); ``onehot`` is (N, 2), class 1 = 1."""
    if onehot.shape[-1] != 2:  # indexing would clamp silently to the wrong column
        raise ValueError(
            f"sigmoid_bce: one-hot labels of shape {onehot.shape}, expected (..., 2): "
            "the 1-unit head scores class 1 of a binary target"
        )
    return optax.sigmoid_binary_cross_entropy(logits[..., 0], onehot[..., 1])


LOSSES = {
    "softmax_cross_entropy": softmax_cross_entropy,
    "sigmoid_bce_on_softmax_logits": sigmoid_bce_on_softmax_logits,
    "sigmoid_bce": sigmoid_bce,
}


def predictions(logits: jax.Array) -> jax.Array:
    """Predicted class: argmax, or logit > 0 for a 1-unit sigmoid head."""
    if logits.shape[-1] == 1:
        return (logits[..., 0] > 0).astype(jnp.int32)
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)


def probabilities(logits: jax.Array) -> jax.Array:
    """Class probabilities (N, C): softmax, or [1 - p, p] for a sigmoid head."""
    if logits.shape[-1] == 1:
        p = jax.nn.sigmoid(logits)
        return jnp.concatenate([1 - p, p], axis=-1)
    return jax.nn.softmax(logits, axis=-1)


def keras_auc(
    onehot: np.ndarray, scores: np.ndarray, num_thresholds: int = 200
) -> float:
    """Keras ``metrics.AUC()`` with its defaults (ROC, interpolation, micro-pooled)."""
    epsilon = 1e-7
    inner = [(i + 1) / (num_thresholds - 1) for i in range(num_thresholds - 2)]
    thresholds = np.array([-epsilon, *inner, 1 + epsilon], dtype=np.float32)
    labels = np.asarray(onehot, np.float32).reshape(-1) > 0.5
    scores = np.asarray(scores, np.float32).reshape(-1)
    above = scores[None, :] > thresholds[:, None]  # (thresholds, pairs)
    tp = (above & labels).sum(1).astype(np.float64)
    fp = (above & ~labels).sum(1).astype(np.float64)
    fn = labels.sum() - tp
    tn = (~labels).sum() - fp
    tpr = np.divide(tp, tp + fn, out=np.zeros_like(tp), where=tp + fn > 0)
    fpr = np.divide(fp, fp + tn, out=np.zeros_like(fp), where=fp + tn > 0)
    return float(np.sum((fpr[:-1] - fpr[1:]) * (tpr[:-1] + tpr[1:]) / 2))


def auc_scores(labels: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """Every AUC definition of the study for integer labels and (N, C) probabilities.

    Classes absent from ``labels`` are left out of the one-vs-rest averages and of
    the one-hot matrix (the paper fits its one-hot encoder on the test labels).
    """
    labels = np.asarray(labels)
    probs = np.asarray(probs, np.float64)
    present = np.unique(labels)
    onehot = (labels[:, None] == present[None, :]).astype(np.float64)
    scores = probs[:, present]
    result = {
        "keras_micro": keras_auc(onehot, scores),
        "micro": float(sk_metrics.roc_auc_score(onehot, scores, average="micro")),
    }
    if probs.shape[1] == 2:
        binary = float(sk_metrics.roc_auc_score(labels == 1, probs[:, 1]))
        result.update(binary=binary, macro=binary, weighted=binary)
    else:
        for average in ("macro", "weighted"):
            result[average] = float(
                sk_metrics.roc_auc_score(onehot, scores, average=average)
            )
    return result
