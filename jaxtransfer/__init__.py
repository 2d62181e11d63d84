"""jaxtransfer: ImageNet vs RadImageNet transfer to medical imaging, in JAX."""

from jaxtransfer.runtime import xla_flags

__version__ = "0.1.0"

# Before any jax computation: see xla_flags.CPU_NO_DEADLOCK.
xla_flags.add(xla_flags.CPU_NO_DEADLOCK)
