"""Whitening by a Cholesky factorisation that drops linearly dependent channels.

Why: the CCA kernel whitens every network's channel correlation matrix. An
eigendecomposition does it with an orthogonal basis, but on a GPU it is the kernel's
bottleneck (cuSOLVER decomposes one matrix after another; the batched Jacobi rounds of
`jaxtransfer.analysis.jacobi` number in the thousands). Canonical correlations do not
depend on which whitening is used, only on the span of each side's channels, so the
inverse of a Cholesky factor serves as well: C = L L^T gives L^{-1} C L^{-T} = I.

The factorisation here walks the channels in order and computes each one's pivot, the
variance left after regressing it on the channels before it. A pivot below ``cutoff``
means the channel is (to float precision) a linear combination of earlier ones; it
adds nothing to the span, so it is dropped: its row and column of L become the unit
vector and its row of the whitening is zeroed. This is what the eigendecomposition's
pseudo-inverse does with unresolvable directions, and it keeps float32 free of the
NaNs a plain Cholesky gives on singular matrices. Every matrix of a batch moves in
lockstep: D steps of elementwise rank-one updates, then one batched triangular solve.
"""

import jax
import jax.numpy as jnp


def dropping_cholesky(matrix, cutoff):
    """Lower Cholesky factor of symmetric PSD matrices, dependent channels dropped.

    Args:
      matrix: (..., D, D) symmetric positive semidefinite.
      cutoff: (...) or scalar, the smallest pivot a channel may have and be kept.

    Returns:
      (factor, dependent): factor (..., D, D) lower triangular with L L^T = matrix on
      the kept channels and unit rows/columns for the dropped ones; dependent (..., D)
      bool, the dropped channels.
    """
    size = matrix.shape[-1]
    index = jnp.arange(size)
    cutoff = jnp.asarray(cutoff, matrix.dtype)[..., None]

    # In place, as LAPACK does: after step j, column j of `work` holds column j of
    # the factor and the block below and right of (j, j) the Schur complement, so a
    # step reads the matrices once for its column and once for the update.
    def step(j, carry):
        work, dependent = carry
        this = index == j
        column = jnp.sum(jnp.where(this, work, 0), axis=-1)  # work[..., :, j]
        pivot = jnp.sum(jnp.where(this, column, 0), axis=-1, keepdims=True)
        kept = pivot > cutoff
        scale = jax.lax.rsqrt(jnp.where(kept, pivot, 1))
        # Rows above j hold earlier columns' results, not this channel's residuals.
        column = jnp.where(kept & (index >= j), column * scale, 0)
        update = work - column[..., :, None] * column[..., None, :]
        column = jnp.where(kept, column, this.astype(matrix.dtype))
        work = jnp.where(this, column[..., :, None], update)
        return work, dependent | (~kept & this)

    work, dependent = jax.lax.fori_loop(
        0, size, step, (matrix, jnp.zeros(matrix.shape[:-1], bool))
    )
    # Above the diagonal: rounding noise and dropped channels' residuals. A dropped
    # channel's row still holds its regression on earlier channels.
    eye = jnp.eye(size, dtype=bool)
    keep = (index[:, None] >= index[None, :]) & ~(dependent[..., :, None] & ~eye)
    return jnp.where(keep, work, 0), dependent


def whitening(matrix, cutoff):
    """W with W matrix W^T = I on the kept channels and zero rows for dropped ones.

    Args:
      matrix: (..., D, D) symmetric positive semidefinite (a correlation matrix).
      cutoff: (...) or scalar, as in `dropping_cholesky`.

    Returns:
      (whiten, dependent): whiten (..., D, D) lower triangular; dependent (..., D).
    """
    factor, dependent = dropping_cholesky(matrix, cutoff)
    eye = jnp.broadcast_to(jnp.eye(matrix.shape[-1], dtype=matrix.dtype), matrix.shape)
    inverse = jax.lax.linalg.triangular_solve(factor, eye, left_side=True, lower=True)
    return jnp.where(dependent[..., :, None], 0, inverse), dependent
