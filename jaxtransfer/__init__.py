"""jaxtransfer: ImageNet vs RadImageNet transfer to medical imaging, in JAX."""

__version__ = "0.1.0"
