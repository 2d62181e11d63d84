"""Batched representation similarity: mean CCA (svcca), SVCCA, PWCCA, linear CKA.

Every kernel takes activations laid out as (..., N, D): any number of leading batch
axes, N datapoints, D channels. Both sides of a comparison share the batch axes and N;
their channel counts may differ. The kernels are pure `jax.numpy` with static shapes,
so they can be jitted, vmapped and run over a whole stack of comparisons in one call.

`mean_cca` reproduces mean(`cca_coef1`) of Google svcca's
`cca_core.get_cca_similarity` (docs/protocol.md#cca), the number the paper reports.
Where svcca crops dead or constant channels out of its matrices, the kernels keep
static shapes and mask instead: a dropped channel's rows and columns are zeroed and
its diagonal entry set to 1, which decouples it from everything else, and only the
min(kx, ky) coefficients of kept channels are averaged.

Numerics. The kernels compute in the inputs' floating dtype: float32, or float64 when
jax_enable_x64 is on and float64 arrays are passed. To keep float32 accurate:
- the data are shifted by their first datapoint and then mean-centred before the Gram
  product, so constant channels become exact zeros (and are dropped exactly as in
  float64) and no precision is lost to large means (the shared-sample and streamed
  Grams shift them close to the mean instead and subtract the exact mean's small
  remainder afterwards, `shift` and `covariance_from_sums`);
- the covariance blocks are scaled to correlation matrices (unit diagonal) before the
  eigendecomposition, which makes the whitening insensitive to channel scale;
- the eps I that svcca adds to its max-rescaled covariance is carried over exactly;
- whitening uses eigh; eigenvalues below 10 eps max(eigenvalue), which float32 cannot
  resolve, are treated as zero (as a pseudo-inverse would). The float64 reference keeps
  them, so the two differ only where a side is numerically singular in float32.

Measured against the float64 reference on ReLU data with 10000 datapoints (dead and
constant channels included), the float32 mean CCA agrees to about 1e-7 (64 and 2048
channels). The error grows with the condition number of the channel correlation
matrices: for x against x @ M with condition ~6e3 it reached 1e-5.

Exactly dependent channels (a channel a linear combination of others, which few
datapoints make likely) are where svcca's own numerics break: the pinv of the
eps-regularised matrix leaves eigenvalues at rounding level, whose inverse square
roots give NaN or canonical correlations above 1. The kernels treat those directions
as absent, as a pseudo-inverse would, so a dependent channel adds no correlation
(tests pin it), and count them (`Whitening.dependent`; the analysis notes where).
On the demo run's trained networks (840 CCAs, benchmarks/RESULTS.md) the float32
kernel was within 1.4e-5 of the reference wherever the reference's coefficients
stayed at most 1, and up to 0.021 off in the 19 CCAs (N = 92, d = 64) where they
did not.

Decompositions. `decomposition="linalg"` (the kernels' default) uses `jnp.linalg`
(LAPACK on a CPU, cuSOLVER on a GPU); `"jacobi"` uses the batched Jacobi methods of
`jaxtransfer.analysis.jacobi`, which move all matrices of a batch in lockstep instead
of decomposing them one after another (the GPU lowering for matrices above 32x32). On a
CPU LAPACK is much faster; on an H200 the Jacobi path made the paper's workload 10x
faster (`resolve_decomposition("auto")` picks by platform, see below). The option
belongs to the mean-CCA family (`mean_cca`, `canonical_correlations` and their
`_from_covariance` forms), the study's measure; SVCCA and PWCCA always use
`jnp.linalg`.
`"cholesky"` needs no eigen or singular-value decomposition at all, for GPUs where
even the Jacobi rounds dominate: each side is whitened by the inverse of a Cholesky
factor that drops linearly dependent channels (`jaxtransfer.analysis.cholesky`;
canonical correlations depend only on the span of each side's channels, not on which
whitening is used), and the mean takes the sum of the singular values from the
Newton-Schulz polar iteration (`jaxtransfer.analysis.polar`), matrix products only.
Against the float64 reference it is as accurate as the other two (every test runs
with all three); `canonical_correlations` still takes `jnp.linalg`'s SVD for the
individual values. On GPUs it is the fastest of the three, so "auto" picks it there
(benchmarks/RESULTS.md).

`mean_cca_reference_numpy` is a plain float64 NumPy port of the svcca code path, kept
here as the oracle for the tests and the benchmark baseline.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxtransfer.analysis import cholesky, jacobi, polar
from jaxtransfer.runtime import host

_HIGHEST = jax.lax.Precision.HIGHEST
# Eigenvalues below this many eps of the largest are treated as zero when whitening.
_EIGENVALUE_CUTOFF = 10


def check_finite(x, what: str) -> None:
    """Raises a clear error if ``x`` holds NaN or inf.

    The kernels assume finite input (under jit they cannot raise); drivers call
    this on the host so a bad network or image gives an error, not a number.
    """
    values = np.asarray(x)
    bad = ~np.isfinite(values)
    if bad.any():
        raise FloatingPointError(
            f"{what}: {int(bad.sum())} of {values.size} values are NaN or inf; "
            "CCA needs finite activations"
        )


def _float_dtype(*arrays):
    """Floating dtype to compute in: the promoted input dtype, at least float32."""
    dtype = jnp.result_type(*arrays)
    if not jnp.issubdtype(dtype, jnp.floating):
        return jnp.dtype(jnp.float32)
    return jnp.promote_types(dtype, jnp.float32)


def _matmul(a, b):
    # HIGHEST keeps full float32 on accelerators that would otherwise use TF32/bf16.
    return jnp.matmul(a, b, precision=_HIGHEST)


def _diagonal(a):
    return jnp.diagonal(a, axis1=-2, axis2=-1)


def _transpose(a):
    return jnp.swapaxes(a, -1, -2)


def centre(z):
    """Centres (..., N, D) data along N without losing precision to large means."""
    # Shifting by the first datapoint first makes constant channels exactly zero and
    # leaves the float32 mean subtraction only the (small) spread to deal with.
    z = z - z[..., :1, :]
    return z - jnp.mean(z, axis=-2, keepdims=True)


def shift(z, points=64):
    """(..., N, D) data moved close to zero mean, for a Gram corrected afterwards.

    As `centre`, but the second shift is the mean of ``points`` evenly spaced
    datapoints rather than of all N: the caller takes the exact mean from the shifted
    data's sums (`covariance_from_sums`), and the correction is then small enough to
    lose no precision.
    """
    z = z - z[..., :1, :]  # constant channels become exact zeros
    stride = max(1, z.shape[-2] // points)
    return z - jnp.mean(z[..., ::stride, :], axis=-2, keepdims=True)


def covariance_from_sums(gram, total_x, total_y, count):
    """Covariance (ddof 1) from sums over N of shifted data.

    Args:
      gram: (..., D1, D2) x^T y of the shifted data.
      total_x: (..., D1) column sums of the shifted x.
      total_y: (..., D2) column sums of the shifted y.
      count: N.
    """
    outer = total_x[..., :, None] * (total_y / count)[..., None, :]
    return (gram - outer) / (count - 1)


def gram(z, precision=_HIGHEST):
    """z^T z over the N axis of (..., N, D) data (already centred)."""
    return jnp.einsum("...nd,...ne->...de", z, z, precision=precision)


def host_gram(z) -> np.ndarray:
    """`gram` by the host's BLAS (NumPy's float32 or float64 products), outside jit.

    For XLA:CPU: on the shared sample's (N, 8 x 64) Grams OpenBLAS is faster than
    XLA:CPU's batched product, and faster still as one single-threaded product per
    BLAS thread over a share of the rows, summed (`host.map_single_threaded_blas`).
    A CPU jax array is read in place, without a copy.
    """
    z = np.asarray(z)
    shares = np.array_split(z, host.blas_threads(), axis=-2)
    return functools.reduce(np.add, host.map_single_threaded_blas(_numpy_gram, shares))


def _numpy_gram(z):
    return np.matmul(np.swapaxes(z, -1, -2), z)  # NumPy calls syrk for z^T z


def covariance(z, precision=_HIGHEST):
    """Sample covariance of the channels of `z`, like `np.cov(z.T)` (ddof=1).

    Args:
      z: activations, shape (..., N, D).
      precision: of the Gram product, a `jax.lax.Precision` or
        `jax.lax.DotAlgorithmPreset`. Full float32 (HIGHEST) by default; on GPUs the
        multi-pass bf16/tf32 presets run on tensor cores (`benchmarks/cca.py
        --gram-precisions` measures their speed and accuracy).

    Returns:
      The covariance matrices, shape (..., D, D).
    """
    z = jnp.asarray(z, _float_dtype(z))
    n = z.shape[-2]
    # XLA fuses elementwise producers into a dot operand and then picks a much slower
    # Gram kernel on CPUs; materialising the centred data first keeps the fast path.
    centred = jax.lax.optimization_barrier(centre(z))  # (..., N, D)
    return gram(centred, precision) / (n - 1)


def joint_covariance(x, y, precision=_HIGHEST):
    """Covariance blocks of x and y from one (N, D1 + D2) Gram product.

    One product over the stacked channels runs much faster than three separate ones
    on CPU (a 128-wide Gram keeps the matmul kernel busier than 64-wide ones).

    Args:
      x: activations, shape (..., N, D1).
      y: activations, shape (..., N, D2).
      precision: of the Gram product, as in `covariance`.

    Returns:
      (sigma_xx, sigma_xy, sigma_yy) with shapes (..., D1, D1), (..., D1, D2) and
      (..., D2, D2).
    """
    dtype = _float_dtype(x, y)
    num_x = x.shape[-1]
    stacked = jnp.concatenate([x.astype(dtype), y.astype(dtype)], axis=-1)
    sigma = covariance(stacked, precision)  # (..., D1 + D2, D1 + D2)
    return (
        sigma[..., :num_x, :num_x],
        sigma[..., :num_x, num_x:],
        sigma[..., num_x:, num_x:],
    )


def _kept_channels(sigma, epsilon):
    """svcca's rescale-and-drop rule for one side.

    Returns:
      keep: bool (..., D), the channels with |diag(sigma / max|sigma|)| >= epsilon.
      diag_scaled: (..., D), the rescaled diagonal (1 where dropped).
    """
    max_abs = jnp.max(jnp.abs(sigma), axis=(-2, -1))  # (...,)
    # An all-zero side gives 0/0 = NaN in svcca and every channel is dropped.
    safe_max = jnp.where(max_abs > 0, max_abs, 1)
    diag_scaled = _diagonal(sigma) / safe_max[..., None]
    keep = (jnp.abs(diag_scaled) >= epsilon) & (max_abs > 0)[..., None]
    return keep, jnp.where(keep, diag_scaled, 1)


def _masked_correlation(sigma, keep, diag_scaled, epsilon):
    """Unit-diagonal version of svcca's cropped (sigma/max + eps I), dropped dims = I.

    Scaling by D^{-1/2} on both sides leaves the canonical correlations unchanged;
    eps I in svcca's scaling becomes eps / diag_scaled on the diagonal here.
    """
    inv_sqrt_diag = jax.lax.rsqrt(jnp.where(keep, jnp.abs(_diagonal(sigma)), 1))
    corr = sigma * inv_sqrt_diag[..., :, None] * inv_sqrt_diag[..., None, :]
    both_kept = keep[..., :, None] & keep[..., None, :]
    eye = jnp.eye(sigma.shape[-1], dtype=sigma.dtype)
    corr = jnp.where(both_kept, corr, 0)
    corr = (
        corr * (1 - eye)
        + eye * jnp.where(keep, 1 + epsilon / diag_scaled, 1)[..., None, :]
    )
    return corr, inv_sqrt_diag


DECOMPOSITIONS = ("linalg", "jacobi", "cholesky")
# "auto" picks the platform's fastest measured one: Cholesky on GPUs (faster than
# Jacobi, which is faster than cuSOLVER's one-matrix-at-a-time decompositions),
# LAPACK elsewhere (on a CPU both others are slower). benchmarks/RESULTS.md has the
# measurements.
DECOMPOSITION_CHOICES = ("auto", *DECOMPOSITIONS)


def check_decomposition(
    decomposition: str, what: str = "decomposition", choices=DECOMPOSITIONS
) -> None:
    """Raises a ValueError naming ``what`` unless ``decomposition`` is a choice."""
    if decomposition not in choices:
        raise ValueError(f"{what}={decomposition!r}: expected one of {choices}")


def resolve_decomposition(decomposition: str, what: str = "decomposition") -> str:
    """``decomposition`` with "auto" replaced by the default backend's faster one."""
    check_decomposition(decomposition, what, DECOMPOSITION_CHOICES)
    if decomposition == "auto":
        return "cholesky" if jax.default_backend() == "gpu" else "linalg"
    return decomposition


def _eigh(matrix, decomposition):
    check_decomposition(decomposition)
    if decomposition == "jacobi":
        return jacobi.eigh(matrix)
    return jnp.linalg.eigh(matrix)


def _singular_values(matrix, decomposition):
    check_decomposition(decomposition)
    # "cholesky" needs the values themselves only in `canonical_correlations`; the
    # mean takes their sum without a decomposition (`_mean_coefficient`).
    if decomposition == "jacobi":
        return jacobi.singular_values(matrix)
    return jnp.linalg.svd(matrix, compute_uv=False)


def _inverse_sqrt(matrix, decomposition="linalg"):
    """V diag(w^-1/2) V^T of a symmetric matrix, zeroing unresolvable eigenvalues.

    Args:
      matrix: symmetric, shape (..., D, D).
      decomposition: "linalg" or "jacobi" (see the module docstring).

    Returns:
      The inverse square root, shape (..., D, D), and the number of eigenvalues
      kept (the numerical rank), shape (...).
    """
    eigenvalues, eigenvectors = _eigh(matrix, decomposition)
    # eigh's absolute eigenvalue error is a small multiple of eps * max|eigenvalue|;
    # below that an eigenvalue (and its direction) is noise. A D-proportional cutoff,
    # as pinv's default, would discard real directions of wide layers (D = 2048).
    largest = jnp.max(jnp.abs(eigenvalues), axis=-1, keepdims=True)
    cutoff = _EIGENVALUE_CUTOFF * jnp.finfo(matrix.dtype).eps * largest
    resolved = eigenvalues > cutoff
    inv_sqrt = jnp.where(resolved, jax.lax.rsqrt(jnp.maximum(eigenvalues, cutoff)), 0)
    whiten = _matmul(eigenvectors * inv_sqrt[..., None, :], _transpose(eigenvectors))
    return whiten, jnp.sum(resolved, axis=-1)


class Whitening(NamedTuple):
    """One side of a CCA: svcca's drop rule and the whitening of the kept channels.

    It depends on that side's covariance alone, so pairs that share a network (one
    sample serving every pair, `jaxtransfer.analysis.pairs`) can share its
    decomposition.

    Attributes:
      keep: (..., D) bool, the channels svcca keeps.
      corr: (..., D, D) masked correlation matrix (dropped channels: identity).
      inv_sqrt_diag: (..., D) inverse standard deviation of each kept channel.
      whiten: (..., D, D) W with W corr W^T = I on the resolved directions: the
        inverse square root of ``corr``, or with "cholesky" its inverse Cholesky
        factor with zero rows for dependent channels.
      dependent: (...) int, directions of the kept channels that the whitening
        dropped as unresolvable: kept channels that are (to float precision) linear
        combinations of others. svcca's float64 numerics keep such directions, and
        for exactly dependent channels give NaN or canonical correlations above 1
        (see the module docstring).
    """

    keep: jax.Array
    corr: jax.Array
    inv_sqrt_diag: jax.Array
    whiten: jax.Array
    dependent: jax.Array


def _cholesky_whitening(corr):
    """`cholesky.whitening` of correlation matrices and their dependent directions.

    The pivot cutoff is the eigendecomposition's (`_EIGENVALUE_CUTOFF` eps times the
    largest eigenvalue), with the largest row sum standing in for that eigenvalue.
    """
    bound = jnp.max(jnp.sum(jnp.abs(corr), axis=-1), axis=-1)
    cutoff = _EIGENVALUE_CUTOFF * jnp.finfo(corr.dtype).eps * bound
    whiten, dependent = cholesky.whitening(corr, cutoff)
    return whiten, jnp.sum(dependent, axis=-1)


def whitening(sigma, epsilon=1e-12, decomposition="linalg") -> Whitening:
    """The `Whitening` of every covariance matrix in `sigma` (..., D, D)."""
    keep, diag_scaled = _kept_channels(sigma, epsilon)
    corr, inv_sqrt_diag = _masked_correlation(sigma, keep, diag_scaled, epsilon)
    if decomposition == "cholesky":  # any other name is checked by `_eigh`
        whiten, dependent = _cholesky_whitening(corr)
        return Whitening(keep, corr, inv_sqrt_diag, whiten, dependent)
    whiten, rank = _inverse_sqrt(corr, decomposition)
    # Dropped channels sit on corr's diagonal as 1s, so they count in the rank.
    return Whitening(keep, corr, inv_sqrt_diag, whiten, corr.shape[-1] - rank)


def _whitenings(sigma_xx, sigma_yy, epsilon, decomposition):
    """Both sides' `Whitening`, in one batched decomposition when widths match."""
    if sigma_xx.shape != sigma_yy.shape:
        return (
            whitening(sigma_xx, epsilon, decomposition),
            whitening(sigma_yy, epsilon, decomposition),
        )
    both = whitening(jnp.stack([sigma_xx, sigma_yy]), epsilon, decomposition)
    return jax.tree.map(lambda v: v[0], both), jax.tree.map(lambda v: v[1], both)


def _whitened_cross_correlation(side_x, sigma_xy, side_y):
    """Wx Kxy Wy^T in correlation scaling, (..., D1, D2); W = invsqrt(K) or L^-1.

    Its singular values are the canonical correlations.
    """
    both_kept = side_x.keep[..., :, None] & side_y.keep[..., None, :]
    corr_xy = (
        sigma_xy
        * side_x.inv_sqrt_diag[..., :, None]
        * side_y.inv_sqrt_diag[..., None, :]
    )
    corr_xy = jnp.where(both_kept, corr_xy, 0)
    return _matmul(_matmul(side_x.whiten, corr_xy), _transpose(side_y.whiten))


def _coefficient_count(side_x, side_y):
    """Number of canonical correlations svcca reports, min(kx, ky): (...,)."""
    return jnp.minimum(jnp.sum(side_x.keep, axis=-1), jnp.sum(side_y.keep, axis=-1))


def _mean_of_leading(values, count):
    """Mean of the first `count` entries along the last axis; 0 where count is 0."""
    index = jnp.arange(values.shape[-1])
    total = jnp.sum(jnp.where(index < count[..., None], values, 0), axis=-1)
    return jnp.where(count > 0, total / jnp.maximum(count, 1), 0)


def canonical_correlations(x, y, epsilon=1e-12, decomposition="linalg"):
    """svcca's canonical correlations (`cca_coef1`), padded to a static length.

    Args:
      x: activations, shape (..., N, D1), N > D1.
      y: activations, shape (..., N, D2), N > D2.
      epsilon: svcca's epsilon: drop threshold and ridge on the rescaled covariance.
      decomposition: "linalg" or "jacobi" (see the module docstring).

    Returns:
      (coefficients, count): coefficients (..., min(D1, D2)) in descending order, of
      which only the first `count` (...,) = min(kx, ky) are svcca's coefficients (kx,
      ky: channels kept on each side); the rest are padding zeros.
    """
    sigma_xx, sigma_xy, sigma_yy = joint_covariance(x, y)
    return canonical_correlations_from_covariance(
        sigma_xx, sigma_xy, sigma_yy, epsilon, decomposition
    )


def canonical_correlations_from_covariance(
    sigma_xx, sigma_xy, sigma_yy, epsilon=1e-12, decomposition="linalg"
):
    """`canonical_correlations` from precomputed covariance blocks.

    Args:
      sigma_xx: (..., D1, D1) covariance of x.
      sigma_xy: (..., D1, D2) cross-covariance.
      sigma_yy: (..., D2, D2) covariance of y.
      epsilon: svcca's epsilon.
      decomposition: "linalg" or "jacobi" (see the module docstring).

    Returns:
      (coefficients, count) as in `canonical_correlations`.
    """
    side_x, side_y = _whitenings(sigma_xx, sigma_yy, epsilon, decomposition)
    return _coefficients(side_x, sigma_xy, side_y, decomposition)


def _coefficients(side_x, sigma_xy, side_y, decomposition):
    """(coefficients, count) of `canonical_correlations` from the two sides."""
    cross = _whitened_cross_correlation(side_x, sigma_xy, side_y)
    count = _coefficient_count(side_x, side_y)
    singular_values = _singular_values(cross, decomposition)
    index = jnp.arange(singular_values.shape[-1])
    coefficients = jnp.where(index < count[..., None], singular_values, 0)
    return coefficients, count


def mean_cca_from_covariance(
    sigma_xx, sigma_xy, sigma_yy, epsilon=1e-12, decomposition="linalg"
):
    """`mean_cca` from precomputed covariance blocks (e.g. one shared Gram product).

    Args:
      sigma_xx: (..., D1, D1) covariance of x.
      sigma_xy: (..., D1, D2) cross-covariance.
      sigma_yy: (..., D2, D2) covariance of y.
      epsilon: svcca's epsilon.
      decomposition: "linalg" or "jacobi" (see the module docstring).

    Returns:
      The mean canonical correlation, shape (...).
    """
    side_x, side_y = _whitenings(sigma_xx, sigma_yy, epsilon, decomposition)
    return _mean_coefficient(side_x, sigma_xy, side_y, decomposition)


def mean_cca_from_whitening(side_x, sigma_xy, side_y, decomposition="linalg"):
    """`mean_cca` from each side's `whitening` and the cross-covariance.

    Many pairs on shared samples decompose each network's covariance once
    (`whitening`) and pass it to every pair it belongs to.

    Args:
      side_x: `Whitening` of x, fields (..., D1) and (..., D1, D1).
      sigma_xy: (..., D1, D2) cross-covariance.
      side_y: `Whitening` of y, fields (..., D2) and (..., D2, D2).
      decomposition: "linalg" or "jacobi", for the singular values.

    Returns:
      The mean canonical correlation, shape (...).
    """
    return _mean_coefficient(side_x, sigma_xy, side_y, decomposition)


def _mean_coefficient(side_x, sigma_xy, side_y, decomposition):
    """Mean of the min(kx, ky) canonical correlations; 0 where that count is 0.

    "cholesky" sums them without a decomposition (`polar.nuclear_norm`): the whitened
    cross-correlation has rank at most the count, so the sum of all its singular
    values is the sum of the leading ones.
    """
    if decomposition != "cholesky":
        return _mean_of_leading(*_coefficients(side_x, sigma_xy, side_y, decomposition))
    cross = _whitened_cross_correlation(side_x, sigma_xy, side_y)
    count = _coefficient_count(side_x, side_y)
    total = polar.nuclear_norm(cross)
    return jnp.where(count > 0, total / jnp.maximum(count, 1), 0)


def mean_cca(x, y, epsilon=1e-12, decomposition="linalg"):
    """Mean canonical correlation, as mean(cca_coef1) of svcca get_cca_similarity.

    Args:
      x: activations, shape (..., N, D1): datapoints by channels, N > D1.
      y: activations, shape (..., N, D2), the same datapoints.
      epsilon: svcca's epsilon (the paper uses 1e-12): channels whose rescaled
        variance is below it are dropped and it is added to the rescaled diagonal.
      decomposition: "linalg" or "jacobi" (see the module docstring).

    Returns:
      Mean of the min(kx, ky) canonical correlations, shape (...). 0 when every
      channel of one side is dropped (including an all-zero side), as in svcca.
    """
    sigma_xx, sigma_xy, sigma_yy = joint_covariance(x, y)
    return mean_cca_from_covariance(
        sigma_xx, sigma_xy, sigma_yy, epsilon, decomposition
    )


def _top_components(sigma, variance_fraction):
    """Principal axes of sigma and a mask of those explaining `variance_fraction`.

    Returns:
      (eigenvalues, eigenvectors, keep): eigenvalues (..., D) descending and clipped at
      0, eigenvectors (..., D, D) as columns, keep (..., D) true for the fewest
      leading components whose variance reaches the fraction.
    """
    eigenvalues, eigenvectors = jnp.linalg.eigh(sigma)
    eigenvalues = jnp.maximum(eigenvalues[..., ::-1], 0)
    eigenvectors = eigenvectors[..., ::-1]
    cumulative = jnp.cumsum(eigenvalues, axis=-1)
    total = cumulative[..., -1:]
    # Component i is kept while the variance explained before it is short of target.
    before = cumulative - eigenvalues
    keep = before < variance_fraction * total
    return eigenvalues, eigenvectors, keep


def svcca(x, y, variance_fraction=0.99, epsilon=1e-12):
    """SVCCA (Raghu et al. 2017): mean CCA after a per-side SVD reduction.

    Each side is reduced to its top principal components explaining
    `variance_fraction` of its variance (the SVD of the centred data, done here via
    the eigendecomposition of its covariance), then `mean_cca` runs on the reduced
    activations. Dropped components get zero variance, which svcca's drop rule
    removes, so the shapes stay static.

    Args:
      x: activations, shape (..., N, D1).
      y: activations, shape (..., N, D2).
      variance_fraction: fraction of variance the kept components must explain.
      epsilon: svcca's epsilon for the CCA step.

    Returns:
      The SVCCA similarity, shape (...).
    """
    sigma_xx, sigma_xy, sigma_yy = joint_covariance(x, y)
    values_x, axes_x, keep_x = _top_components(sigma_xx, variance_fraction)
    values_y, axes_y, keep_y = _top_components(sigma_yy, variance_fraction)
    # Covariances of the projected data: diagonal on each side, rotated cross term.
    reduced_xx = jnp.vectorize(jnp.diag, signature="(d)->(d,d)")(
        jnp.where(keep_x, values_x, 0)
    )
    reduced_yy = jnp.vectorize(jnp.diag, signature="(d)->(d,d)")(
        jnp.where(keep_y, values_y, 0)
    )
    reduced_xy = _matmul(_matmul(_transpose(axes_x), sigma_xy), axes_y)
    reduced_xy = jnp.where(keep_x[..., :, None] & keep_y[..., None, :], reduced_xy, 0)
    return mean_cca_from_covariance(reduced_xx, reduced_xy, reduced_yy, epsilon)


def _projection_weights(whiten, corr, sqrt_diag, directions, count):
    """PWCCA weights of the canonical variates on one side.

    With a = D^{-1/2} W u_i the canonical direction of variate i (in channels), the
    variates' Gram is A^T Sigma A and their inner products with the centred channels
    are A^T Sigma; orthonormalising the variates (the QR step of Morcos et al.) is a
    Cholesky solve with that Gram, so no N-sized array is formed.

    Args:
      whiten: (..., D, D) inverse square root of the masked correlation matrix.
      corr: (..., D, D) masked correlation matrix (dropped channels: identity).
      sqrt_diag: (..., D) channel standard deviations (0 for dropped channels).
      directions: (..., D, D) singular vectors of the whitened cross term, columns in
        descending order of correlation.
      count: (...,) number of canonical correlations in use.

    Returns:
      Unnormalised weights, shape (..., D), zero beyond `count`.
    """
    dim = corr.shape[-1]
    in_use = jnp.arange(dim) < count[..., None]  # (..., D)
    canonical = _matmul(whiten, directions)  # (..., D, D): columns in corr space
    corr_dead_free = (
        corr * (sqrt_diag[..., :, None] > 0) * (sqrt_diag[..., None, :] > 0)
    )
    gram = _matmul(_matmul(_transpose(canonical), corr_dead_free), canonical)
    eye = jnp.eye(dim, dtype=corr.dtype)
    both = in_use[..., :, None] & in_use[..., None, :]
    gram = jnp.where(both, gram, eye)
    # Inner products of variate i with channel j (channel in its own scale).
    inner = _matmul(_transpose(canonical), corr_dead_free) * sqrt_diag[..., None, :]
    inner = jnp.where(in_use[..., :, None], inner, 0)
    lower = jnp.linalg.cholesky(gram)
    projections = jax.scipy.linalg.solve_triangular(lower, inner, lower=True)
    return jnp.sum(jnp.abs(projections), axis=-1)


def pwcca(x, y, epsilon=1e-12):
    """Projection-weighted CCA (Morcos et al. 2018), following the paper's definition.

    The canonical correlations are weighted by how much of the side's (centred)
    channels each canonical variate accounts for, alpha_i = sum_j |<h_i, x_j>| with
    h_i the orthonormalised variates, on the side with fewer kept channels (x on a
    tie), as svcca's `pwcca.py` chooses. Unlike that file, the variates include the
    whitening (invsqrt_xx) and the channels are centred.

    Args:
      x: activations, shape (..., N, D1).
      y: activations, shape (..., N, D2).
      epsilon: svcca's epsilon.

    Returns:
      The PWCCA similarity, shape (...); 0 when a side has no kept channel.
    """
    sigma_xx, sigma_xy, sigma_yy = joint_covariance(x, y)
    side_x, side_y = _whitenings(sigma_xx, sigma_yy, epsilon, "linalg")
    cross = _whitened_cross_correlation(side_x, sigma_xy, side_y)
    count = _coefficient_count(side_x, side_y)
    correlations = jnp.linalg.svd(cross, compute_uv=False)  # (..., min(D1, D2))

    def descending_eigenvectors(matrix):
        return jnp.linalg.eigh(matrix)[1][..., ::-1]

    def side_weights(sigma, side, outer):
        sqrt_diag = jnp.where(side.keep, jnp.sqrt(jnp.abs(_diagonal(sigma))), 0)
        return _projection_weights(
            side.whiten, side.corr, sqrt_diag, descending_eigenvectors(outer), count
        )

    weights_x = side_weights(sigma_xx, side_x, _matmul(cross, _transpose(cross)))
    weights_y = side_weights(sigma_yy, side_y, _matmul(_transpose(cross), cross))
    num_coefficients = correlations.shape[-1]
    use_x = jnp.sum(side_x.keep, -1) <= jnp.sum(side_y.keep, -1)
    weights = jnp.where(
        use_x[..., None],
        weights_x[..., :num_coefficients],
        weights_y[..., :num_coefficients],
    )
    total = jnp.sum(weights, axis=-1)
    weighted = jnp.sum(weights * correlations, axis=-1)
    return jnp.where(count > 0, weighted / jnp.where(total > 0, total, 1), 0)


def linear_cka(x, y, debiased=False):
    """Linear CKA (Kornblith et al. 2019), optionally with the unbiased HSIC.

    Computed in feature space from the covariance blocks, ||Sxy||_F^2 /
    (||Sxx||_F ||Syy||_F). The debiased form replaces each HSIC by the unbiased
    estimator of Song et al. 2012 (as in Nguyen et al. 2021 / Kornblith's
    `feature_space_linear_cka(debiased=True)`), which needs the per-datapoint squared
    norms of the centred activations as well.

    Args:
      x: activations, shape (..., N, D1); the debiased form needs N > 3.
      y: activations, shape (..., N, D2).
      debiased: use the unbiased HSIC estimator.

    Returns:
      CKA in [0, 1] (the debiased form can be slightly negative), shape (...). NaN if
      a side has no variance.
    """
    sigma_xx, sigma_xy, sigma_yy = joint_covariance(x, y)
    if not debiased:
        numerator = jnp.sum(sigma_xy**2, axis=(-2, -1))
        norm_x = jnp.sqrt(jnp.sum(sigma_xx**2, axis=(-2, -1)))
        norm_y = jnp.sqrt(jnp.sum(sigma_yy**2, axis=(-2, -1)))
        return numerator / (norm_x * norm_y)
    dtype = sigma_xx.dtype
    n = x.shape[-2]
    # Back to the unnormalised Gram scale the unbiased estimator is written in.
    scale = (n - 1) ** 2
    row_norms_x = jnp.sum(centre(x.astype(dtype)) ** 2, axis=-1)  # (..., N)
    row_norms_y = jnp.sum(centre(y.astype(dtype)) ** 2, axis=-1)  # (..., N)
    total_x = jnp.sum(row_norms_x, axis=-1)
    total_y = jnp.sum(row_norms_y, axis=-1)

    def unbiased_hsic(frobenius_squared, rows_a, rows_b, total_a, total_b):
        # Kornblith's _debiased_dot_product_similarity_helper (up to a constant
        # factor that cancels in the ratio).
        return (
            frobenius_squared
            - n / (n - 2) * jnp.sum(rows_a * rows_b, axis=-1)
            + total_a * total_b / ((n - 1) * (n - 2))
        )

    hsic_xy = unbiased_hsic(
        scale * jnp.sum(sigma_xy**2, axis=(-2, -1)),
        row_norms_x,
        row_norms_y,
        total_x,
        total_y,
    )
    hsic_xx = unbiased_hsic(
        scale * jnp.sum(sigma_xx**2, axis=(-2, -1)),
        row_norms_x,
        row_norms_x,
        total_x,
        total_x,
    )
    hsic_yy = unbiased_hsic(
        scale * jnp.sum(sigma_yy**2, axis=(-2, -1)),
        row_norms_y,
        row_norms_y,
        total_y,
        total_y,
    )
    return hsic_xy / jnp.sqrt(hsic_xx * hsic_yy)


def cca_reference_numpy(x, y, epsilon=1e-12):
    """Float64 NumPy port of svcca `get_cca_similarity` for one pair.

    A line-by-line port of the code path the paper uses (np.cov, max rescaling,
    dropping small-variance channels, eps I, pinv, eigh square root, SVD). It is the
    oracle for the tests and the baseline of benchmarks/cca.py.

    Args:
      x: activations, shape (N, D1), datapoints by channels (svcca's acts1.T).
      y: activations, shape (N, D2).
      epsilon: svcca's epsilon.

    Returns:
      A dict with `cca_coef1` (min(kx, ky),) or the scalar 0 when a side has no kept
      channel, and otherwise `x_keep`/`y_keep` (bool masks), `invsqrt_xx`/`invsqrt_yy`
      (on the kept channels, in svcca's max-rescaled units), and the SVD factors `u`
      (kx, kx) and `vh` (ky, ky) of invsqrt_xx sigma_xy invsqrt_yy.
    """
    acts1 = np.asarray(x, dtype=np.float64).T  # (D1, N): svcca's layout
    acts2 = np.asarray(y, dtype=np.float64).T
    assert acts1.shape[1] == acts2.shape[1], "dimensions don't match"
    assert acts1.shape[0] < acts1.shape[1], "input must be neurons by datapoints"
    num_x = acts1.shape[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        sigma = np.cov(acts1, acts2)
        sigma_xx = sigma[:num_x, :num_x]
        sigma_xy = sigma[:num_x, num_x:]
        sigma_yy = sigma[num_x:, num_x:]
        x_max = np.max(np.abs(sigma_xx))
        y_max = np.max(np.abs(sigma_yy))
        sigma_xx = sigma_xx / x_max
        sigma_yy = sigma_yy / y_max
        sigma_xy = sigma_xy / np.sqrt(x_max * y_max)
        x_keep = np.abs(np.diagonal(sigma_xx)) >= epsilon
        y_keep = np.abs(np.diagonal(sigma_yy)) >= epsilon
    if not np.any(x_keep) or not np.any(y_keep):
        return {"cca_coef1": np.asarray(0.0)}
    sigma_xx = sigma_xx[x_keep][:, x_keep] + epsilon * np.eye(x_keep.sum())
    sigma_yy = sigma_yy[y_keep][:, y_keep] + epsilon * np.eye(y_keep.sum())
    sigma_xy = sigma_xy[x_keep][:, y_keep]

    def matrix_sqrt(matrix):
        eigenvalues, eigenvectors = np.linalg.eigh(matrix)
        return eigenvectors @ np.diag(np.sqrt(eigenvalues)) @ eigenvectors.conj().T

    invsqrt_xx = matrix_sqrt(np.linalg.pinv(sigma_xx))
    invsqrt_yy = matrix_sqrt(np.linalg.pinv(sigma_yy))
    u, singular_values, vh = np.linalg.svd(invsqrt_xx @ (sigma_xy @ invsqrt_yy))
    return {
        "cca_coef1": np.abs(singular_values),
        "x_keep": x_keep,
        "y_keep": y_keep,
        "invsqrt_xx": invsqrt_xx,
        "invsqrt_yy": invsqrt_yy,
        "u": u,
        "vh": vh,
    }


def mean_cca_reference_numpy(x, y, epsilon=1e-12):
    """mean(cca_coef1) of `cca_reference_numpy`: what the paper's CCA.py records.

    Args:
      x: activations, shape (N, D1).
      y: activations, shape (N, D2).
      epsilon: svcca's epsilon.

    Returns:
      The mean canonical correlation as a Python float.
    """
    return float(np.mean(cca_reference_numpy(x, y, epsilon)["cca_coef1"]))
