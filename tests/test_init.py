"""Importing jaxtransfer makes the CPU path safe from the jaxlib 0.10 deadlock."""

import subprocess
import sys

# Jitted programs mixing large products with eigh and svd, the pattern that hung
# jaxlib 0.10.2 on 2-core CPUs without the flag (non-deterministically).
_WORKLOAD = """
import os
import jaxtransfer
import jax, jax.numpy as jnp
assert jaxtransfer.runtime.xla_flags.CPU_NO_DEADLOCK in os.environ["XLA_FLAGS"].split()

@jax.jit
def f(x):
    c = jnp.einsum("bnd,bne->bde", x, x) / x.shape[1]
    w, v = jnp.linalg.eigh(c + jnp.eye(c.shape[-1]))
    s = jnp.linalg.svd(v @ c @ v.swapaxes(-1, -2), compute_uv=False)
    return w.sum() + s.sum()

for i in range(20):
    x = jax.random.normal(jax.random.key(i), (16, 2048, 128))
    f(x).block_until_ready()
print("done")
"""


def test_flag_is_set_and_eigh_svd_workload_finishes():
    result = subprocess.run(
        [sys.executable, "-c", _WORKLOAD],
        capture_output=True,
        text=True,
        timeout=300,
        env={"JAX_PLATFORMS": "cpu", "PATH": ""},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("done")
