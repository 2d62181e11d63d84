"""XLA flags that work around compiler problems seen here; set before jax starts.

XLA reads ``XLA_FLAGS`` once, when its backend starts: the package adds
``CPU_NO_DEADLOCK`` on import, the entry points add the others they need before
their first jax computation.

- ``CPU_NO_DEADLOCK``: jaxlib 0.10 on small CPUs can deadlock (all threads asleep)
  in jitted programs that mix large matrix products with eigh/svd, as the CCA
  kernels do; turning off the concurrency-optimised scheduler avoided it in every
  trial. Set on import of the package (``jaxtransfer/__init__.py``).
- ``GPU_REMAT``: with jax/jaxlib 0.11.2 on an H200, compiling the rematerialised
  train step (``config.train.remat``) aborts the process inside XLA's Triton GEMM
  fusion (``triton_tiling_propagation.cc: Check failed: subdim_size_accumulator ==
  dim_size (196 vs. 28)``); without Triton GEMMs it compiles and runs
  (benchmarks/RESULTS.md). Added by the entry points when remat is on.
"""

import os

CPU_NO_DEADLOCK = "--xla_cpu_enable_concurrency_optimized_scheduler=false"
GPU_REMAT = "--xla_gpu_enable_triton_gemm=false"


def is_set(flag: str) -> bool:
    """Whether ``flag`` is one of the flags in ``XLA_FLAGS``."""
    return flag in os.environ.get("XLA_FLAGS", "").split()


def add(flag: str) -> None:
    """Appends ``flag`` to ``XLA_FLAGS`` unless it is there already."""
    if not is_set(flag):
        current = os.environ.get("XLA_FLAGS", "")
        os.environ["XLA_FLAGS"] = f"{current} {flag}".strip()


def check_remat_compiles(platform: str) -> None:
    """Raises, instead of letting XLA abort the process, for remat on a GPU without
    ``GPU_REMAT`` in ``XLA_FLAGS``."""
    if platform == "gpu" and not is_set(GPU_REMAT):
        raise RuntimeError(
            f"train.remat on a GPU needs XLA_FLAGS to contain {GPU_REMAT} before jax "
            "starts: XLA's Triton GEMM fusion aborts the process compiling the "
            "rematerialised step (seen with jaxlib 0.11.2). `python -m "
            "jaxtransfer.main` adds it when config.train.remat is set; elsewhere call "
            "xla_flags.add(xla_flags.GPU_REMAT) first (jaxtransfer.runtime.xla_flags)."
        )
