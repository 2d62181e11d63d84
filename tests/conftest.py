"""Test set-up: CPU only, Keras on the JAX backend, the deadlock-safe XLA flag."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("KERAS_BACKEND", "jax")

import jaxtransfer  # noqa: E402, F401  (sets the XLA flag that avoids a CPU deadlock)
