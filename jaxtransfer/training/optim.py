"""Keras's Adam as an optax transformation.

Keras (TF-Keras 2 and Keras 3) adds epsilon to sqrt(v) *before* bias correction
("epsilon hat"): ``w -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)``.
optax.adam adds it after, which differs while v is small, i.e. early in training
and for rarely-updated weights. Fine-tuning at lr 1e-5 lives in that regime, so the
study's optimizer is reproduced exactly here.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax


class KerasAdamState(NamedTuple):
    count: jax.Array
    mu: optax.Updates
    nu: optax.Updates


def keras_adam(
    learning_rate: float,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-7,
) -> optax.GradientTransformation:
    """Adam with Keras's defaults and epsilon placement."""

    def init(params):
        # Two separate trees: train steps donate the state, buffer by buffer.
        mu = jax.tree.map(jnp.zeros_like, params)
        nu = jax.tree.map(jnp.zeros_like, params)
        return KerasAdamState(jnp.zeros([], jnp.int32), mu, nu)

    def update(grads, state, params=None):
        del params
        count = state.count + 1
        t = count.astype(jnp.float32)
        mu = jax.tree.map(lambda m, g: m + (g - m) * (1 - b1), state.mu, grads)
        nu = jax.tree.map(lambda v, g: v + (g * g - v) * (1 - b2), state.nu, grads)
        alpha = learning_rate * jnp.sqrt(1 - b2**t) / (1 - b1**t)
        updates = jax.tree.map(lambda m, v: -alpha * m / (jnp.sqrt(v) + eps), mu, nu)
        return updates, KerasAdamState(count, mu, nu)

    return optax.GradientTransformation(init, update)
