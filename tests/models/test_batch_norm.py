"""jaxtransfer BatchNorm: Keras's training-mode numbers, Flax's module, our gradient."""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax
import jax.numpy as jnp
import keras
import numpy as np
import pytest
from flax import nnx

from jaxtransfer.models import batch_norm, layers, resnet

CHANNELS = 6


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    # Channels of different offsets and scales, one nearly constant.
    x = rng.standard_normal((4, 5, 3, CHANNELS)) * [3, 1, 0.1, 10, 1, 1e-3]
    x += [1, -2, 0, 50, 0.5, 0]
    weights = rng.standard_normal(x.shape)  # the loss below: sum(sin(y) * weights)
    gamma = rng.uniform(0.5, 2.0, CHANNELS)
    beta = rng.standard_normal(CHANNELS)
    return [np.asarray(a, np.float32) for a in (x, weights, gamma, beta)]


def _ours(dtype=jnp.float32, cls=batch_norm.BatchNorm):
    layer = cls(
        CHANNELS,
        momentum=layers.BN_MOMENTUM,
        epsilon=resnet.KERAS_BN_EPSILON,
        dtype=dtype,
        rngs=nnx.Rngs(0),
    )
    _, _, gamma, beta = _inputs()
    layer.scale[...] = jnp.asarray(gamma)
    layer.bias[...] = jnp.asarray(beta)
    return layer


def _grads(layer, x, weights):
    def loss(layer, x):
        y = layer(x, use_running_average=False).astype(jnp.float32)
        return jnp.sum(jnp.sin(y) * weights), y

    (_, y), (d_layer, dx) = nnx.value_and_grad(loss, argnums=(0, 1), has_aux=True)(
        layer, jnp.asarray(x)
    )
    return y, dx, d_layer.scale[...], d_layer.bias[...]


def test_training_mode_matches_keras_outputs_statistics_and_gradients():
    x, weights, gamma, beta = _inputs()
    keras_layer = keras.layers.BatchNormalization(
        momentum=layers.BN_MOMENTUM, epsilon=resnet.KERAS_BN_EPSILON
    )
    keras_layer.build(x.shape)
    keras_layer.gamma.assign(gamma)
    keras_layer.beta.assign(beta)
    trainable = [v.value for v in keras_layer.trainable_variables]
    frozen = [v.value for v in keras_layer.non_trainable_variables]

    def keras_loss(trainable, x):
        y, new_frozen = keras_layer.stateless_call(trainable, frozen, x, training=True)
        return jnp.sum(jnp.sin(y) * weights), (y, new_frozen)

    (_, (keras_y, keras_stats)), (keras_dparams, keras_dx) = jax.value_and_grad(
        keras_loss, argnums=(0, 1), has_aux=True
    )(trainable, jnp.asarray(x))

    layer = _ours()
    y, dx, dscale, dbias = _grads(layer, x, weights)
    np.testing.assert_allclose(y, keras_y, atol=2e-5)
    np.testing.assert_allclose(layer.mean[...], keras_stats[0], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(layer.var[...], keras_stats[1], rtol=1e-5, atol=1e-7)
    scale = np.abs(keras_dx).max()
    np.testing.assert_allclose(dx, keras_dx, atol=1e-4 * scale)
    np.testing.assert_allclose(dscale, keras_dparams[0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dbias, keras_dparams[1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype, atol", [(jnp.float32, 1e-5), (jnp.bfloat16, 2e-2)])
def test_same_numbers_as_flax_batchnorm_in_both_compute_dtypes(dtype, atol):
    x, weights, _, _ = _inputs(1)
    ours, flax_layer = _ours(dtype), _ours(dtype, nnx.BatchNorm)
    ours_out = _grads(ours, x, weights)
    flax_out = _grads(flax_layer, x, weights)
    assert ours_out[0].dtype == flax_out[0].dtype
    for a, b in zip(ours_out, flax_out):
        assert a.dtype == b.dtype
        scale = max(1.0, float(jnp.abs(b.astype(jnp.float32)).max()))
        np.testing.assert_allclose(
            np.asarray(a, np.float32), np.asarray(b, np.float32), atol=atol * scale
        )
    for name in ("mean", "var"):
        np.testing.assert_array_equal(
            getattr(ours, name)[...], getattr(flax_layer, name)[...]
        )
    # Inference mode is Flax's own code path.
    np.testing.assert_array_equal(
        ours(jnp.asarray(x), use_running_average=True),
        flax_layer(jnp.asarray(x), use_running_average=True),
    )


def test_without_a_scale_same_numbers_as_flax_batchnorm():
    """Keras's scale=False (the Inceptions'): no gamma, the same bias gradient."""
    x, weights, _, beta = _inputs(2)
    made = []
    for cls in (batch_norm.BatchNorm, nnx.BatchNorm):
        layer = cls(
            CHANNELS, momentum=layers.BN_MOMENTUM, epsilon=layers.KERAS_BN_EPSILON,
            use_scale=False, rngs=nnx.Rngs(0),
        )  # fmt: skip
        layer.bias[...] = jnp.asarray(beta)
        made.append(layer)

    def outputs(layer):
        def loss(layer, x):
            y = layer(x, use_running_average=False)
            return jnp.sum(jnp.sin(y) * weights), y

        grad = nnx.value_and_grad(loss, argnums=(0, 1), has_aux=True)
        (_, y), (d_layer, dx) = grad(layer, jnp.asarray(x))
        assert "scale" not in d_layer
        return y, dx, d_layer.bias[...], layer.mean[...], layer.var[...]

    for a, b in zip(*map(outputs, made)):
        scale = max(1.0, float(jnp.abs(b).max()))
        np.testing.assert_allclose(a, b, atol=1e-5 * scale)
