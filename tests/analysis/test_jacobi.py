"""Tests for jaxtransfer.analysis.jacobi against float64 LAPACK (NumPy)."""

import jax
import numpy as np
import pytest

from jaxtransfer.analysis import jacobi

eigh = jax.jit(jacobi.eigh)
singular_values = jax.jit(jacobi.singular_values)


@pytest.mark.parametrize("n", [2, 4, 8, 64])
def test_round_robin_meets_every_pair_once_per_sweep_and_returns(n):
    permutation = jacobi.round_robin_permutation(n)
    order = np.arange(n)
    met = []
    for _ in range(n - 1):
        met += [frozenset(order[2 * k : 2 * k + 2]) for k in range(n // 2)]
        order = order[permutation]
    assert len(met) == len(set(met)) == n * (n - 1) // 2
    np.testing.assert_array_equal(order, np.arange(n))


@pytest.mark.parametrize("n", [2, 4, 10])
def test_rounds_move_rows_and_columns_by_the_round_robin_permutation(n):
    permutation = jacobi.round_robin_permutation(n)
    matrix = np.arange(3 * n * n).reshape(3, n, n)
    for axis in (-1, -2):
        moved = np.asarray(jacobi._next_round(matrix, axis))
        np.testing.assert_array_equal(moved, np.take(matrix, permutation, axis=axis))


def test_round_robin_rejects_odd_sizes():
    with pytest.raises(ValueError, match="even n, got 5"):
        jacobi.round_robin_permutation(5)


def _assert_close(actual, expected, tolerance):
    """|actual - expected| <= tolerance elementwise (tolerance broadcasts)."""
    excess = np.abs(actual - expected) / np.broadcast_to(tolerance, expected.shape)
    assert excess.max() <= 1, f"error {excess.max():.2f}x the tolerance"


def _covariances(rng, batch, n, samples):
    data = rng.standard_normal((batch, samples, n))
    return np.einsum("bsi,bsj->bij", data, data) / samples


@pytest.mark.parametrize("n", [1, 5, 64])
def test_eigh_matches_lapack_and_gives_orthonormal_vectors(n):
    rng = np.random.default_rng(0)
    matrices = np.concatenate(
        [_covariances(rng, 3, n, 4 * n), rng.standard_normal((2, n, n))]
    )
    matrices = (matrices + np.swapaxes(matrices, 1, 2)) / 2  # indefinite ones too
    values, vectors = (np.asarray(a, np.float64) for a in eigh(matrices.astype("f4")))
    expected = np.linalg.eigvalsh(matrices)
    scale = np.abs(expected).max(axis=1, keepdims=True)
    _assert_close(values, expected, 2e-6 * scale)
    identity = np.eye(n)
    np.testing.assert_allclose(
        np.swapaxes(vectors, 1, 2) @ vectors,
        np.broadcast_to(identity, (5, n, n)),
        atol=2e-6,
    )
    rebuilt = (vectors * values[:, None, :]) @ np.swapaxes(vectors, 1, 2)
    _assert_close(rebuilt, matrices, 4e-6 * scale[..., None])


def test_eigh_small_eigenvalues_of_an_ill_conditioned_matrix_match_lapack():
    # A correlation matrix of 64 channels from 66 datapoints: condition ~3e5, the
    # N-barely-above-D case of the CCA, where the whitening needs the small end.
    rng = np.random.default_rng(1)
    latent = rng.standard_normal((66, 8))
    data = np.maximum(latent @ rng.standard_normal((8, 64)), 0)
    data += rng.standard_normal((66, 64))
    matrix = np.corrcoef(data.T)
    expected = np.linalg.eigvalsh(matrix)
    lapack_error = np.abs(np.linalg.eigvalsh(matrix.astype("f4")) - expected).max()
    values, _ = eigh(matrix.astype("f4"))
    error = np.abs(np.asarray(values, np.float64) - expected).max()
    assert error < 2 * max(lapack_error, 1e-6)


def test_eigh_of_diagonal_and_batched_shapes():
    diagonal = np.diag(np.array([3.0, -1.0, 2.0], "f4"))
    values, vectors = eigh(
        np.stack([diagonal, np.zeros((3, 3), "f4")]).reshape(2, 1, 3, 3)
    )
    assert values.shape == (2, 1, 3) and vectors.shape == (2, 1, 3, 3)
    np.testing.assert_allclose(values[0, 0], [-1, 2, 3], atol=1e-6)
    np.testing.assert_allclose(values[1, 0], 0, atol=0)
    np.testing.assert_allclose(
        np.abs(vectors[0, 0]), np.eye(3)[:, [1, 2, 0]], atol=1e-6
    )


@pytest.mark.parametrize("shape", [(64, 64), (64, 32), (33, 64), (7, 7), (1, 5)])
def test_singular_values_match_lapack(shape):
    rng = np.random.default_rng(2)
    matrices = rng.standard_normal((4, *shape))
    matrices[0, :, 0] = 0  # a zero column
    matrices[1] = matrices[1] * np.logspace(0, -4, shape[1])  # graded columns
    values = np.asarray(singular_values(matrices.astype("f4")), np.float64)
    expected = np.linalg.svd(matrices, compute_uv=False)
    assert values.shape == expected.shape
    scale = expected.max(axis=1, keepdims=True)
    _assert_close(values, expected, 2e-6 * scale)
