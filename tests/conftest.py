"""Test set-up: CPU only, the deadlock-free XLA scheduler, Keras on the JAX backend."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("KERAS_BACKEND", "jax")
# jaxlib 0.10.2 on small CPUs can deadlock in programs mixing matmuls with eigh/svd.
_flag = "--xla_cpu_enable_concurrency_optimized_scheduler=false"
if _flag not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _flag).strip()
