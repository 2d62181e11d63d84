"""BatchNorm whose training-mode gradient is written out in closed form.

Why: differentiating `nnx.BatchNorm` in training mode goes through its batch
statistics (E[x] and E[x^2] in float32, the variance clipped at 0) and leaves
XLA:CPU several more passes over every activation than the textbook gradient,
which needs two per-channel reductions and one elementwise pass
(benchmarks/RESULTS.md has the train-step measurement). `BatchNorm` is
`nnx.BatchNorm` with that gradient as a custom VJP: the same parameters, statistics
and outputs, and the same gradients up to float rounding
(tests/models/test_batch_norm.py). Inference mode is `nnx.BatchNorm`'s own.
"""

import functools

import jax
import jax.numpy as jnp
from flax import nnx


def _stats_dtype(dtype):
    return jnp.promote_types(dtype, jnp.float32)  # at least float32, as Flax


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def normalize_with_batch_stats(x, scale, bias, epsilon, out_dtype):
    """BatchNorm of ``x`` (..., C) on its own batch statistics.

    Returns ``(y, mean, var)``: y in ``out_dtype``; the per-channel mean and biased
    variance (E[x^2] - E[x]^2, clipped at 0, as Flax) in at least float32.
    """
    return _forward(x, scale, bias, epsilon, out_dtype)[0]


def _forward(x, scale, bias, epsilon, out_dtype):
    axes = tuple(range(x.ndim - 1))
    x32 = x.astype(_stats_dtype(x.dtype))
    mean = jnp.mean(x32, axes)
    var = jnp.maximum(0.0, jnp.mean(jnp.square(x32), axes) - jnp.square(mean))
    inv_std = jax.lax.rsqrt(var + epsilon)
    y = (x32 - mean) * (inv_std * scale) + bias
    return (y.astype(out_dtype), mean, var), (x, mean, inv_std, scale)


def _backward(epsilon, out_dtype, residuals, cotangents):
    del epsilon, out_dtype
    x, mean, inv_std, scale = residuals
    dy, dmean, dvar = cotangents
    axes = tuple(range(x.ndim - 1))
    count = x.size // x.shape[-1]
    dy = dy.astype(mean.dtype)
    centered = x.astype(mean.dtype) - mean
    x_hat = centered * inv_std
    dbias = jnp.sum(dy, axes)
    dscale = jnp.sum(dy * x_hat, axes)
    dx = (inv_std * scale) * (dy - (dbias + x_hat * dscale) / count)
    # The statistics' own cotangents (zero when, as here, only the moving
    # averages read them); the variance clip is ignored, as it only acts on
    # constant channels.
    dx += (dmean + 2.0 * dvar * centered) / count
    return dx.astype(x.dtype), dscale.astype(scale.dtype), dbias.astype(scale.dtype)


normalize_with_batch_stats.defvjp(_forward, _backward)


class BatchNorm(nnx.BatchNorm):
    """`nnx.BatchNorm` (channels last, with a bias) with a closed-form
    training-mode gradient; see the module docstring."""

    def __call__(self, x, use_running_average: bool | None = None, *, mask=None):
        if use_running_average is None:
            use_running_average = self.use_running_average
        if use_running_average is not False or mask is not None or self.axis_name:
            # Inference mode, masks and pmapped statistics: Flax's own code.
            return super().__call__(x, use_running_average, mask=mask)
        if self.axis not in (-1, x.ndim - 1) or self.bias is None:
            raise ValueError(
                "jaxtransfer BatchNorm supports the channels-last axis with a bias "
                f"only (axis={self.axis})"
            )
        # Without a scale (Keras scale=False, the Inception networks) the scale is
        # a constant 1; its gradient is computed and dropped.
        scale = jnp.ones_like(self.bias[...]) if self.scale is None else self.scale[...]
        x, scale, bias = self.promote_dtype(
            (x, scale, self.bias[...]), dtype=self.dtype
        )
        out_dtype = self.dtype or jnp.result_type(x, scale, bias)
        y, mean, var = normalize_with_batch_stats(
            x, scale, bias, self.epsilon, jnp.dtype(out_dtype)
        )
        momentum = self.momentum
        self.mean[...] = jax.lax.stop_gradient(
            momentum * self.mean[...] + (1 - momentum) * mean
        )
        self.var[...] = jax.lax.stop_gradient(
            momentum * self.var[...] + (1 - momentum) * var
        )
        return y
