"""Test set-up: CPU only, Keras on the JAX backend, the deadlock-safe XLA flag."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("KERAS_BACKEND", "jax")

import pytest  # noqa: E402

import jaxtransfer  # noqa: E402, F401  (sets the XLA flag that avoids a CPU deadlock)
from jaxtransfer import xla_flags  # noqa: E402

# The tests compile far more than they compute (tiny models, few steps): LLVM at -O0
# compiles XLA:CPU programs faster (tests/test_fit.py 64 s -> 42 s). Numerics stay the
# same (no fast-math at either level), and the heavy kernels (YNNPACK, Eigen) come
# precompiled. Set before any test starts jax; subprocesses inherit it.
xla_flags.add("--xla_backend_optimization_level=0")


@pytest.fixture(scope="session")
def demo_sources(tmp_path_factory) -> dict[str, str]:
    """The demo's two stand-in sources (pre-trained, HDF5, converted), made once."""
    from configs import demo
    from jaxtransfer import experiment, pretraining

    config = demo.get_config()
    root = tmp_path_factory.mktemp("sources")
    return {
        name: str(
            pretraining.make(experiment.synthetic_source(config, name), root / name)
        )
        for name in config.init.synthetic_domains
    }
