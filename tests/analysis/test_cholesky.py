"""Tests for jaxtransfer.analysis.cholesky against float64 LAPACK (NumPy)."""

import jax
import numpy as np
import pytest

from jaxtransfer.analysis import cholesky

dropping_cholesky = jax.jit(cholesky.dropping_cholesky)
whitening = jax.jit(cholesky.whitening)


def _correlation(rng, num_points, channels):
    data = rng.standard_normal((num_points, channels)) @ rng.standard_normal(
        (channels, channels)
    )
    return np.corrcoef(data, rowvar=False)


def test_factor_of_a_positive_definite_matrix_is_lapacks():
    matrix = _correlation(np.random.default_rng(0), 200, 16)
    factor, dependent = dropping_cholesky(matrix.astype(np.float32), 1e-6)
    np.testing.assert_allclose(factor, np.linalg.cholesky(matrix), atol=2e-5)
    assert not np.any(dependent)


def test_dependent_channels_are_dropped_and_the_rest_whitened():
    rng = np.random.default_rng(1)
    data = rng.standard_normal((300, 12))
    data[:, 4] = data[:, 1] - 2 * data[:, 3]  # a combination of earlier channels
    data[:, 9] = 0.5 * data[:, 0] + data[:, 4]
    matrix = np.corrcoef(data, rowvar=False).astype(np.float32)
    whiten, dependent = whitening(matrix, 1e-5)
    np.testing.assert_array_equal(np.flatnonzero(dependent), [4, 9])
    np.testing.assert_array_equal(np.asarray(whiten)[[4, 9]], 0)
    kept = ~np.asarray(dependent)
    identity = np.asarray(whiten) @ matrix @ np.asarray(whiten).T
    np.testing.assert_allclose(identity, np.diag(kept.astype(np.float32)), atol=1e-4)
    # The whitened channels span what the kept channels span, so nothing is lost.
    centred = data - data.mean(0)
    whitened = centred / data.std(0) @ np.asarray(whiten).T
    target = centred[:, 4]
    residual = target - whitened @ np.linalg.lstsq(whitened, target)[0]
    assert np.abs(residual).max() < 1e-3


def test_a_dropped_svcca_channel_stays_a_unit_vector():
    matrix = _correlation(np.random.default_rng(2), 100, 6).astype(np.float32)
    matrix[2, :] = matrix[:, 2] = 0
    matrix[2, 2] = 1  # how cca._masked_correlation leaves a dropped channel
    factor, dependent = dropping_cholesky(matrix, 1e-6)
    np.testing.assert_array_equal(np.asarray(factor)[:, 2], np.eye(6)[2])
    np.testing.assert_array_equal(np.asarray(factor)[2], np.eye(6)[2])
    assert not np.any(dependent)


@pytest.mark.parametrize("cutoff_shape", [(), (2, 3)])
def test_batched_equals_per_matrix(cutoff_shape):
    rng = np.random.default_rng(3)
    matrices = (
        np.stack([_correlation(rng, 50, 8) for _ in range(6)])
        .reshape(2, 3, 8, 8)
        .astype(np.float32)
    )
    matrices[1, 2, 7] = matrices[1, 2, :, 7] = matrices[1, 2, 0]  # channel 7 = 0
    cutoff = np.full(cutoff_shape, 1e-5, np.float32)
    whiten, dependent = whitening(matrices, cutoff)
    for i in range(2):
        for j in range(3):
            one, dep = whitening(matrices[i, j], 1e-5)
            np.testing.assert_allclose(whiten[i, j], one, rtol=1e-6, atol=1e-6)
            np.testing.assert_array_equal(dependent[i, j], dep)
    assert bool(dependent[1, 2, 7]) and int(np.sum(dependent)) == 1
