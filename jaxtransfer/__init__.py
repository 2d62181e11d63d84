"""jaxtransfer: ImageNet vs RadImageNet transfer to medical imaging, in JAX."""

from jaxtransfer import host, xla_flags

__version__ = "0.1.0"

# Before any jax computation: see xla_flags.CPU_NO_DEADLOCK.
xla_flags.add(xla_flags.CPU_NO_DEADLOCK)
# Before NumPy loads OpenBLAS: see host.shorten_blas_spin.
host.shorten_blas_spin()
