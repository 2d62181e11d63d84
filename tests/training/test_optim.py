"""Keras Adam in optax against keras.optimizers.Adam itself."""

import keras
import numpy as np
import optax
import pytest

from jaxtransfer.training.optim import keras_adam


@pytest.mark.parametrize("lr", [1e-5, 1e-3])
def test_matches_keras_adam_over_steps(lr):
    rng = np.random.default_rng(0)
    start = rng.normal(0, 1, (5, 3)).astype(np.float32)
    grads = [rng.normal(0, s, (5, 3)).astype(np.float32) for s in (1e-4, 1, 1e-3, 5)]

    variable = keras.Variable(start)
    optimizer = keras.optimizers.Adam(learning_rate=lr)
    for g in grads:
        optimizer.apply_gradients([(g, variable)])

    transform = keras_adam(lr)
    params = {"w": start}
    state = transform.init(params)
    for g in grads:
        updates, state = transform.update({"w": g}, state)
        params = optax.apply_updates(params, updates)
    keras_moved = np.asarray(variable) - start
    np.testing.assert_allclose(params["w"] - start, keras_moved, rtol=1e-3, atol=1e-7)
    # optax.adam places epsilon differently; the tiny first gradient exposes it.
    optax_moved = _optax_adam(start, grads, lr) - start
    assert np.abs(optax_moved - keras_moved).max() > 1e-2 * np.abs(keras_moved).max()


def _optax_adam(start, grads, lr):
    transform = optax.adam(lr, eps=1e-7)
    params, state = start, transform.init(start)
    for g in grads:
        updates, state = transform.update(g, state)
        params = optax.apply_updates(params, updates)
    return np.asarray(params)
