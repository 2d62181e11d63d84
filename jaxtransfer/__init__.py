"""jaxtransfer: ImageNet vs RadImageNet transfer to medical imaging, in JAX."""

import os

__version__ = "0.1.0"

# jaxlib 0.10 on small CPUs can deadlock (all threads asleep) in jitted programs
# that mix large matrix products with eigh/svd, as the CCA kernels do. This XLA
# flag avoided it in every trial; XLA reads it when the backend starts, so setting
# it here protects every entry point that imports jaxtransfer before using jax.
XLA_CPU_SAFE_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler=false"
if XLA_CPU_SAFE_FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        f"{os.environ.get('XLA_FLAGS', '')} {XLA_CPU_SAFE_FLAG}".strip()
    )
