"""Tests for jaxtransfer.analysis.cca against float64 NumPy oracles and known cases."""

import jax
import numpy as np
import pytest

from jaxtransfer.analysis import cca
from jaxtransfer.runtime import host

mean_cca = jax.jit(cca.mean_cca, static_argnames="decomposition")
DECOMPOSITIONS = pytest.mark.parametrize("decomposition", cca.DECOMPOSITIONS)
svcca = jax.jit(cca.svcca)
pwcca = jax.jit(cca.pwcca)
linear_cka = jax.jit(cca.linear_cka, static_argnames="debiased")


def _relu_pair(rng, n, d1, d2, shared=4, noise=1.5):
    """ReLU activations of two layers that share a few latent factors, float32."""
    latent = rng.standard_normal((n, shared))
    x = latent @ rng.standard_normal((shared, d1)) + rng.standard_normal((n, d1))
    y = latent @ rng.standard_normal((shared, d2)) + noise * rng.standard_normal(
        (n, d2)
    )
    x = np.maximum(x + 0.5 * rng.standard_normal(d1), 0)
    y = np.maximum(y + 0.5 * rng.standard_normal(d2), 0)
    return x.astype(np.float32), y.astype(np.float32)


def _with_dead_and_constant(x, dead, constant, value=3.25):
    x = x.copy()
    x[:, dead] = 0
    x[:, constant] = value
    return x


# ---------------------------------------------------------------------------------
# The float64 reference on cases whose answer is known by hand.


def test_reference_identical_inputs_give_one():
    x, _ = _relu_pair(np.random.default_rng(0), 500, 6, 6)
    assert cca.mean_cca_reference_numpy(x, x) == pytest.approx(1, abs=1e-9)


def test_reference_invertible_linear_map_gives_one():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((400, 5))
    mixing = rng.standard_normal((5, 5)) + 3 * np.eye(5)
    assert cca.mean_cca_reference_numpy(x, x @ mixing) == pytest.approx(1, abs=1e-9)


def test_reference_independent_data_is_small():
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((20000, 4)), rng.standard_normal((20000, 4))
    # Sample canonical correlations of independent data are O(sqrt(d / n)).
    assert cca.mean_cca_reference_numpy(x, y) < 0.03


def test_reference_recovers_set_correlations_of_gaussian_pairs():
    rng = np.random.default_rng(3)
    n, rhos = 40000, np.array([0.8, 0.3])
    a, b = rng.standard_normal((n, 2)), rng.standard_normal((n, 2))
    x = a
    y = rhos * a + np.sqrt(1 - rhos**2) * b  # corr(x_i, y_i) = rho_i, else 0
    coefficients = cca.cca_reference_numpy(x, y)["cca_coef1"]
    np.testing.assert_allclose(coefficients, rhos, atol=0.02)
    assert cca.mean_cca_reference_numpy(x, y) == pytest.approx(0.55, abs=0.02)


def test_reference_drops_dead_and_constant_channels():
    x, y = _relu_pair(np.random.default_rng(4), 600, 7, 5)
    padded = np.concatenate([x, np.zeros((600, 2)), np.full((600, 1), 2.0)], axis=1)
    expected = cca.mean_cca_reference_numpy(x, y)
    assert cca.mean_cca_reference_numpy(padded, y) == pytest.approx(expected, rel=1e-9)


def test_reference_all_zero_layer_scores_zero():
    x, y = _relu_pair(np.random.default_rng(5), 300, 4, 4)
    assert cca.mean_cca_reference_numpy(np.zeros_like(x), y) == 0


# ---------------------------------------------------------------------------------
# The jnp kernels against the reference.


@DECOMPOSITIONS
def test_mean_cca_matches_reference_with_dead_and_constant_channels(decomposition):
    rng = np.random.default_rng(10)
    # Leading axes (2, 3); x loses 3 channels (so kx = 9 < ky), y loses 1.
    pairs = [_relu_pair(rng, 800, 12, 10) for _ in range(6)]
    x = np.stack([_with_dead_and_constant(p[0], [1, 4], [7]) for p in pairs])
    y = np.stack([_with_dead_and_constant(p[1], [2], []) for p in pairs])
    x, y = x.reshape(2, 3, 800, 12), y.reshape(2, 3, 800, 10)
    result = np.asarray(mean_cca(x, y, decomposition=decomposition))
    assert result.shape == (2, 3)
    expected = np.array(
        [
            [cca.mean_cca_reference_numpy(x[i, j], y[i, j]) for j in range(3)]
            for i in range(2)
        ]
    )
    np.testing.assert_allclose(result, expected, atol=2e-6)


@DECOMPOSITIONS
def test_mean_cca_counts_only_kept_coefficients_when_wider_side_loses_channels(
    decomposition,
):
    rng = np.random.default_rng(11)
    x, y = _relu_pair(rng, 700, 6, 9)
    # y is wider but ends up with fewer kept channels than x: ky = 4 < kx = 6.
    y = _with_dead_and_constant(y, [0, 3, 5, 6], [8], value=-1.5)
    coefficients, count = jax.jit(
        cca.canonical_correlations, static_argnames="decomposition"
    )(x, y, decomposition=decomposition)
    assert int(count) == 4
    reference = cca.cca_reference_numpy(x, y)["cca_coef1"]
    np.testing.assert_allclose(np.asarray(coefficients)[:4], reference, atol=2e-6)
    np.testing.assert_array_equal(np.asarray(coefficients)[4:], 0)
    assert float(mean_cca(x, y, decomposition=decomposition)) == pytest.approx(
        reference.mean(), abs=2e-6
    )


@DECOMPOSITIONS
@pytest.mark.parametrize("shape", [(64, 64), (13, 5)])
def test_mean_cca_matches_reference_at_paper_like_sizes(shape, decomposition):
    d1, d2 = shape
    x, y = _relu_pair(np.random.default_rng(12), 3000, d1, d2, shared=8)
    expected = cca.mean_cca_reference_numpy(x, y)
    assert float(mean_cca(x, y, decomposition=decomposition)) == pytest.approx(
        expected, abs=2e-6
    )


@DECOMPOSITIONS
@pytest.mark.parametrize("shape", [(64, 64), (64, 32)])
def test_mean_cca_with_datapoints_barely_above_channels(shape, decomposition):
    # N = 70 for 64 channels: nearly singular correlation matrices, where float32
    # whitening is at its least accurate.
    x, y = _relu_pair(np.random.default_rng(19), 70, *shape, shared=8)
    expected = cca.mean_cca_reference_numpy(x, y)
    result = float(mean_cca(x, y, decomposition=decomposition))
    assert result == pytest.approx(expected, abs=1e-4)


@DECOMPOSITIONS
def test_exactly_dependent_channels_add_no_canonical_correlation(decomposition):
    # With few datapoints a layer's channels can be exactly linearly dependent (the
    # demo's trained networks at N = 92, d = 64). svcca's float64 numerics break
    # there (NaN, or coefficients above 1: benchmarks/RESULTS.md); the kernel treats
    # the dependent directions as absent, like a pseudo-inverse, so the sum of the
    # canonical correlations is that of the independent channels alone.
    x, y = _relu_pair(np.random.default_rng(23), 92, 56, 64, shared=40, noise=0.5)
    mixing = np.random.default_rng(24).standard_normal((8, 8)).astype(np.float32)
    dependent = np.concatenate([x, x[:, :8] @ mixing], axis=1)  # 64 channels, rank 56
    independent_sum = 56 * cca.mean_cca_reference_numpy(x, y)
    result = float(mean_cca(dependent, y, decomposition=decomposition))
    assert 64 * result == pytest.approx(independent_sum, abs=1e-3)


def test_unknown_decomposition_is_a_clear_error():
    x, y = _relu_pair(np.random.default_rng(20), 50, 3, 3)
    with pytest.raises(ValueError, match="decomposition='qr': expected one of"):
        cca.mean_cca(x, y, decomposition="qr")


@pytest.mark.parametrize(
    "backend, chosen", [("cpu", "linalg"), ("gpu", "cholesky"), ("tpu", "linalg")]
)
def test_auto_decomposition_picks_cholesky_only_on_gpus(monkeypatch, backend, chosen):
    monkeypatch.setattr(jax, "default_backend", lambda: backend)
    assert cca.resolve_decomposition("auto") == chosen
    assert cca.resolve_decomposition("linalg") == "linalg"  # explicit names stay
    with pytest.raises(ValueError, match="--cca='qr': expected one of .'auto'"):
        cca.resolve_decomposition("qr", "--cca")


@DECOMPOSITIONS
def test_mean_cca_of_all_zero_or_constant_layer_is_zero(decomposition):
    x, y = _relu_pair(np.random.default_rng(13), 400, 5, 6)
    zeros = np.zeros_like(x)
    constant = np.full_like(y, 4.0)
    result = np.asarray(
        mean_cca(
            np.stack([zeros, x]), np.stack([y, constant]), decomposition=decomposition
        )
    )
    np.testing.assert_array_equal(result, [0.0, 0.0])
    assert cca.mean_cca_reference_numpy(x, constant) == 0


@DECOMPOSITIONS
def test_mean_cca_identical_and_linearly_mapped_inputs_give_one(decomposition):
    rng = np.random.default_rng(14)
    x, _ = _relu_pair(rng, 500, 8, 8)
    mixing = (rng.standard_normal((8, 8)) + 3 * np.eye(8)).astype(np.float32)
    result = np.asarray(
        mean_cca(
            np.stack([x, x]), np.stack([x, x @ mixing]), decomposition=decomposition
        )
    )
    # x @ mixing has a channel correlation matrix with condition number ~6e3, and
    # the float32 error grows with it (about 1e-4 on the smallest coefficient here).
    np.testing.assert_allclose(result, [1.0, 1.0], atol=5e-5)


@DECOMPOSITIONS
def test_mean_cca_batched_over_two_axes_equals_loop(decomposition):
    rng = np.random.default_rng(15)
    x = rng.standard_normal((3, 2, 200, 6)).astype(np.float32)
    y = (x[..., :4] + rng.standard_normal((3, 2, 200, 4))).astype(np.float32)
    batched = np.asarray(mean_cca(x, y, decomposition=decomposition))
    looped = np.array(
        [
            [
                float(mean_cca(x[i, j], y[i, j], decomposition=decomposition))
                for j in range(2)
            ]
            for i in range(3)
        ]
    )
    np.testing.assert_allclose(batched, looped, atol=1e-6)
    assert np.ptp(batched) > 1e-3  # the six pairs really differ


def test_mean_cca_from_covariance_of_shared_sample_matches_pairwise():
    rng = np.random.default_rng(16)
    layers = [_relu_pair(rng, 500, 5, 5)[0] for _ in range(3)]
    sigma = np.asarray(jax.jit(cca.covariance)(np.concatenate(layers, axis=1)))

    def block(i, j):
        return sigma[5 * i : 5 * i + 5, 5 * j : 5 * j + 5]

    from_blocks = float(
        jax.jit(cca.mean_cca_from_covariance)(block(0, 0), block(0, 2), block(2, 2))
    )
    assert from_blocks == pytest.approx(float(mean_cca(layers[0], layers[2])), abs=1e-6)


@DECOMPOSITIONS
def test_mean_cca_in_float64_matches_reference_tightly(decomposition):
    x, y = _relu_pair(np.random.default_rng(17), 600, 9, 7)
    x = _with_dead_and_constant(x, [2], [5])
    with jax.enable_x64(True):
        result = mean_cca(
            x.astype(np.float64), y.astype(np.float64), decomposition=decomposition
        )
        assert result.dtype == np.float64
        assert float(result) == pytest.approx(
            cca.mean_cca_reference_numpy(x, y), abs=1e-10
        )


def test_covariance_matches_numpy_cov():
    rng = np.random.default_rng(18)
    z = (100 + rng.standard_normal((2, 300, 10))).astype(np.float32)  # large mean
    z[..., 1] = z[..., 0] + 0.1 * z[..., 9]  # off-diagonal blocks worth checking
    result = np.asarray(jax.jit(cca.covariance)(z))
    expected = np.stack([np.cov(z[i].T.astype(np.float64)) for i in range(2)])
    np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-6)


def test_covariance_from_sums_of_shifted_data_matches_numpy_cov():
    rng = np.random.default_rng(19)
    z = (1e4 + rng.standard_normal((2, 3000, 10))).astype(np.float32)  # large mean
    z[:, 0] += 1000  # the first datapoint an outlier
    z[..., 1] = z[..., 0] + 0.1 * z[..., 9]
    z[..., 2] = 7.25  # constant: exactly zero after the shift

    def covariance(z):
        shifted = cca.shift(z)
        total = shifted.sum(axis=-2)
        return cca.covariance_from_sums(cca.gram(shifted), total, total, z.shape[-2])

    result = np.asarray(jax.jit(covariance)(z))
    expected = np.stack([np.cov(z[i].T.astype(np.float64)) for i in range(2)])
    np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-5)
    assert not result[:, 2].any() and not result[:, :, 2].any()


@pytest.mark.parametrize("threads", [1, 3])
def test_host_gram_over_row_shares_equals_the_float64_product(monkeypatch, threads):
    monkeypatch.setattr(host, "blas_threads", lambda: threads)  # shares of the rows
    z = np.random.default_rng(20).standard_normal((2, 1001, 24)).astype(np.float32)
    expected = np.einsum("bnd,bne->bde", z.astype(np.float64), z.astype(np.float64))
    result = cca.host_gram(jax.numpy.asarray(z))
    np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-3)


# ---------------------------------------------------------------------------------
# SVCCA, PWCCA and CKA against straightforward NumPy versions.


def _svcca_numpy(x, y, variance_fraction=0.99, epsilon=1e-12):
    def reduce(acts):
        centred = (acts - acts.mean(0)).astype(np.float64).T  # (D, N)
        _, singular_values, vh = np.linalg.svd(centred, full_matrices=False)
        explained = np.cumsum(singular_values**2) / np.sum(singular_values**2)
        keep = np.searchsorted(explained, variance_fraction) + 1
        return (singular_values[:keep, None] * vh[:keep]).T  # (N, keep)

    return cca.mean_cca_reference_numpy(reduce(x), reduce(y), epsilon)


def _pwcca_numpy(x, y, epsilon=1e-12):
    parts = cca.cca_reference_numpy(x, y, epsilon)
    coefficients = parts["cca_coef1"]
    k = len(coefficients)
    x_centred = (x - x.mean(0)).astype(np.float64)[:, parts["x_keep"]]
    y_centred = (y - y.mean(0)).astype(np.float64)[:, parts["y_keep"]]
    if parts["x_keep"].sum() <= parts["y_keep"].sum():
        acts, directions = x_centred, parts["invsqrt_xx"] @ parts["u"][:, :k]
    else:
        acts, directions = y_centred, parts["invsqrt_yy"] @ parts["vh"].T[:, :k]
    orthonormal, _ = np.linalg.qr(acts @ directions)  # (N, k)
    weights = np.sum(np.abs(orthonormal.T @ acts), axis=1)
    return np.sum(weights / weights.sum() * coefficients)


def _unbiased_hsic_numpy(gram_k, gram_l):
    """Song et al. 2012, eq. 5, written out with n x n matrices."""
    n = gram_k.shape[0]
    k = gram_k - np.diag(np.diag(gram_k))
    ell = gram_l - np.diag(np.diag(gram_l))
    ones = np.ones(n)
    return (
        np.trace(k @ ell)
        + (ones @ k @ ones) * (ones @ ell @ ones) / ((n - 1) * (n - 2))
        - 2 / (n - 2) * ones @ k @ ell @ ones
    ) / (n * (n - 3))


def _linear_cka_numpy(x, y, debiased):
    x, y = x.astype(np.float64), y.astype(np.float64)
    if debiased:  # uncentred Gram matrices: the unbiased HSIC centres implicitly
        gram_x, gram_y = x @ x.T, y @ y.T
        hsic = _unbiased_hsic_numpy
    else:
        n = x.shape[0]
        centring = np.eye(n) - np.ones((n, n)) / n
        gram_x, gram_y = centring @ x @ x.T @ centring, centring @ y @ y.T @ centring

        def hsic(a, b):
            return np.sum(a * b)

    return hsic(gram_x, gram_y) / np.sqrt(hsic(gram_x, gram_x) * hsic(gram_y, gram_y))


def test_svcca_matches_numpy_svd_reduction():
    rng = np.random.default_rng(20)
    # Decaying channel scales so that the 99% cut keeps only part of each side.
    pairs = [_relu_pair(rng, 1500, 12, 9) for _ in range(2)]
    x = np.stack([p[0] * np.geomspace(1, 0.05, 12).astype(np.float32) for p in pairs])
    y = np.stack([p[1] * np.geomspace(1, 0.1, 9).astype(np.float32) for p in pairs])
    result = np.asarray(svcca(x, y))
    expected = [_svcca_numpy(x[i], y[i]) for i in range(2)]
    np.testing.assert_allclose(result, expected, atol=1e-5)
    # The reduction changes the value, so this is not plain mean CCA.
    assert np.all(np.abs(result - np.asarray(mean_cca(x, y))) > 1e-3)


def test_svcca_with_full_variance_equals_mean_cca():
    x, y = _relu_pair(np.random.default_rng(21), 800, 6, 5)
    assert float(jax.jit(cca.svcca)(x, y, 1.0)) == pytest.approx(
        float(mean_cca(x, y)), abs=1e-5
    )


def test_pwcca_matches_numpy_qr_version():
    rng = np.random.default_rng(22)
    x1, y1 = _relu_pair(rng, 1200, 8, 11)  # x side has fewer channels
    y2, x2 = _relu_pair(rng, 1200, 8, 11)
    x2 = x2[:, :8]  # equal widths, y loses channels: y side is used
    y2 = _with_dead_and_constant(y2, [0, 1], [])
    result = np.asarray(pwcca(np.stack([x1, x2]), np.stack([y1[:, :8], y2])))
    expected = [_pwcca_numpy(x1, y1[:, :8]), _pwcca_numpy(x2, y2)]
    np.testing.assert_allclose(result, expected, atol=1e-5)
    x3, y3 = _relu_pair(rng, 1200, 10, 6)  # unequal widths, y side is used
    assert float(pwcca(x3, y3)) == pytest.approx(_pwcca_numpy(x3, y3), abs=1e-5)


def test_pwcca_weights_differ_from_plain_mean_and_identical_inputs_give_one():
    x, y = _relu_pair(np.random.default_rng(23), 1000, 8, 8)
    assert abs(float(pwcca(x, y)) - float(mean_cca(x, y))) > 1e-3
    assert float(pwcca(x, x)) == pytest.approx(1, abs=1e-5)


@pytest.mark.parametrize("debiased", [False, True])
def test_linear_cka_matches_gram_matrix_version(debiased):
    rng = np.random.default_rng(24)
    pairs = [_relu_pair(rng, 120, 7, 5) for _ in range(3)]
    x, y = np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
    result = np.asarray(linear_cka(x, y, debiased=debiased))
    expected = [_linear_cka_numpy(x[i], y[i], debiased) for i in range(3)]
    np.testing.assert_allclose(result, expected, rtol=2e-5)


@pytest.mark.parametrize("debiased", [False, True])
def test_linear_cka_invariances(debiased):
    rng = np.random.default_rng(25)
    x, y = _relu_pair(rng, 300, 6, 6)
    rotation, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    rotated = (x @ rotation.astype(np.float32)) * np.float32(7.5)  # + isotropic scale
    values = np.asarray(
        linear_cka(np.stack([x, rotated, x]), np.stack([y, y, x]), debiased=debiased)
    )
    assert values[1] == pytest.approx(values[0], abs=1e-5)
    assert values[2] == pytest.approx(1, abs=1e-5)
    assert 0.05 < values[0] < 0.95
    # A non-isotropic rescaling of channels does change CKA.
    stretched = x * np.geomspace(1, 20, 6).astype(np.float32)
    changed = float(linear_cka(stretched, y, debiased=debiased))
    assert abs(changed - values[0]) > 1e-3


def test_non_finite_input_is_a_clear_error():
    x = np.ones((20, 3), np.float32)
    cca.check_finite(x, "fine")
    x[4, 1] = np.nan
    x[5, 2] = np.inf
    with pytest.raises(FloatingPointError, match="layer x: 2 of 60 values are NaN"):
        cca.check_finite(x, "layer x")
