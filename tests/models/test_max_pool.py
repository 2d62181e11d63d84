"""max_pool: nnx.max_pool's values, and the gradient XLA's select-and-scatter gives."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxtransfer.models.max_pool import max_pool


def _post_relu(shape, seed=0):
    """Non-negative values on a coarse grid, so that many windows hold ties."""
    x = np.random.default_rng(seed).standard_normal(shape)
    return jnp.asarray(np.round(np.maximum(x, 0) * 2) / 2, jnp.float32)


def _grads(pool, x, dy):
    return jax.jit(lambda x: jax.vjp(pool, x)[1](dy)[0])(x)


@pytest.mark.parametrize(
    "shape, window, stride",
    [
        ((2, 9, 9, 3), 3, 2),  # ResNet's pool after its 1-pixel padding: odd size
        ((2, 10, 7, 4), 3, 2),  # even height, the last row of the input unused
        ((1, 8, 8, 2), 2, 2),  # windows that do not overlap
        ((1, 6, 5, 2), 3, 1),  # stride 1: every pixel in up to nine windows
    ],
)
def test_values_and_gradients_equal_autodiff_of_nnx_max_pool(shape, window, stride):
    x = _post_relu(shape)

    def reference(x):
        return nnx.max_pool(x, (window, window), (stride, stride), "VALID")

    def ours(x):
        return max_pool(x, window, stride)

    y = ours(x)
    np.testing.assert_array_equal(y, reference(x))
    dy = jnp.asarray(np.random.default_rng(1).standard_normal(y.shape), jnp.float32)
    got, want = _grads(ours, x, dy), _grads(reference, x, dy)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    # Each output's gradient goes to exactly one pixel: a tie is not shared.
    np.testing.assert_allclose(got.sum(), dy.sum(), rtol=1e-5)


def test_a_tie_goes_to_the_first_offset_in_row_major_order():
    x = jnp.zeros((1, 3, 3, 1)).at[0, 1, 2, 0].set(5.0).at[0, 2, 0, 0].set(5.0)
    grad = jax.grad(lambda x: max_pool(x, 3, 2).sum())(x)
    expected = jnp.zeros_like(x).at[0, 1, 2, 0].set(1.0)
    np.testing.assert_array_equal(grad, expected)


def test_batched_and_bfloat16_gradients():
    """Under vmap (the fold ensemble) and in bf16 compute."""
    x = _post_relu((3, 2, 7, 7, 2), seed=2).astype(jnp.bfloat16)
    dy = jnp.ones((3, 2, 3, 3, 2), jnp.bfloat16)

    def grad(pool):
        return jax.vmap(lambda x, dy: jax.vjp(pool, x)[1](dy)[0])(x, dy)

    got = grad(lambda x: max_pool(x, 3, 2))
    want = grad(lambda x: nnx.max_pool(x, (3, 3), (2, 2), "VALID"))
    assert got.dtype == jnp.bfloat16
    np.testing.assert_array_equal(got, want)


def test_input_smaller_than_the_window_is_an_error():
    with pytest.raises(ValueError, match="smaller than the window"):
        max_pool(jnp.zeros((1, 2, 5, 1)), 3, 2)
