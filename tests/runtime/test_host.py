"""The allocator setting stops XLA:CPU from page-faulting its buffers on every call."""

import json
import os
import subprocess
import sys

import pytest

from jaxtransfer.runtime import host

# 64 MiB in and out per call: above glibc's largest default mmap threshold (32 MiB).
_WORKLOAD = """
import json, resource, sys
from jaxtransfer.runtime import host
applied = host.reuse_freed_memory()
import jax, jax.numpy as jnp
x = jnp.ones((16 * 1024 * 1024,), jnp.float32)
f = jax.jit(lambda x: jnp.maximum(x * 2.0 + 1.0, 0.0))
blocks = []  # the heap grows during the first calls (and now and then), then stays
for _ in range(6):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        f(x).block_until_ready()
    blocks.append((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5)
print(json.dumps({"applied": applied, "faults_per_call": min(blocks)}))
"""


def _run(script: str, **env) -> dict:
    """The JSON line ``script`` prints last, run in a fresh CPU-only process."""
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        env={"JAX_PLATFORMS": "cpu", "PATH": os.environ.get("PATH", ""), **env},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _faults_per_call(default_malloc: bool) -> dict:
    env = {host.DEFAULT_MALLOC_ENV: "1"} if default_malloc else {}
    return _run(_WORKLOAD, **env)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_reused_memory_does_not_fault_per_call():
    default = _faults_per_call(default_malloc=True)
    reused = _faults_per_call(default_malloc=False)
    assert not default["applied"] and reused["applied"]
    pages = 64 * 1024 * 1024 // 4096
    # glibc's default maps the 64 MiB output afresh on every call, in every block
    # of calls...
    assert default["faults_per_call"] > pages / 2, default
    # ...the setting reuses it: whole blocks of calls fault nothing.
    assert reused["faults_per_call"] < pages / 100, reused


def test_opt_out_keeps_defaults(monkeypatch):
    monkeypatch.setenv(host.DEFAULT_MALLOC_ENV, "1")
    assert host.reuse_freed_memory() is False


def test_blas_calls_side_by_side_run_single_threaded_in_order():
    before = host.blas_threads()
    seen = host.map_single_threaded_blas(lambda i: (i, host.blas_threads()), range(3))
    assert seen == [(0, 1), (1, 1), (2, 1)]
    assert host.blas_threads() == before
