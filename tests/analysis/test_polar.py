"""Tests for jaxtransfer.analysis.polar against float64 LAPACK (NumPy)."""

import jax
import numpy as np
import pytest

from jaxtransfer.analysis import polar

nuclear_norm = jax.jit(
    polar.nuclear_norm, static_argnames=("grow_steps", "finish_steps")
)


def _with_singular_values(rng, values, rows, cols):
    """A rows x cols matrix with the given singular values and random vectors."""
    left = np.linalg.qr(rng.standard_normal((rows, rows)))[0][:, : len(values)]
    right = np.linalg.qr(rng.standard_normal((cols, cols)))[0][:, : len(values)]
    return (left * values) @ right.T


@pytest.mark.parametrize("rows, cols", [(64, 64), (16, 40), (40, 16)])
def test_sum_of_canonical_correlation_like_values(rows, cols):
    rng = np.random.default_rng(0)
    count = min(rows, cols)
    # Correlations from 1 down to 1e-6, and exact zeros (a rank-deficient matrix).
    values = np.concatenate([np.logspace(0, -6, count - 4), np.zeros(4)])
    matrix = _with_singular_values(rng, values, rows, cols)
    result = float(nuclear_norm(matrix.astype(np.float32)))
    expected = np.linalg.svd(matrix, compute_uv=False).sum()
    # Only the values below about 2e-6 fall short, by less than themselves (module
    # docstring).
    assert result == pytest.approx(expected, abs=2e-6)


def test_too_few_steps_underestimate_small_values_only():
    rng = np.random.default_rng(1)
    values = np.array([0.9, 0.5, 1e-3])
    matrix = _with_singular_values(rng, values, 8, 8).astype(np.float32)
    short = float(nuclear_norm(matrix, grow_steps=2))
    assert 1.4 < short < values.sum() - 5e-4  # 1e-3 has not grown to 1 yet
    assert float(nuclear_norm(matrix)) == pytest.approx(values.sum(), abs=1e-6)


def test_batched_equals_per_matrix():
    rng = np.random.default_rng(2)
    matrices = (
        np.stack(
            [_with_singular_values(rng, rng.uniform(0, 1, 6), 6, 6) for _ in range(6)]
        )
        .reshape(2, 3, 6, 6)
        .astype(np.float32)
    )
    batched = np.asarray(nuclear_norm(matrices))
    for i in range(2):
        for j in range(3):
            assert batched[i, j] == pytest.approx(
                float(nuclear_norm(matrices[i, j])), rel=1e-6
            )
