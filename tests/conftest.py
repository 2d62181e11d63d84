"""Test set-up: CPU only, Keras on the JAX backend, the deadlock-safe XLA flag."""

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("KERAS_BACKEND", "jax")

import jax  # noqa: E402
import pytest  # noqa: E402

import jaxtransfer  # noqa: E402, F401  (sets the XLA flag that avoids a CPU deadlock)
from jaxtransfer.runtime import xla_flags  # noqa: E402

# The tests compile far more than they compute (tiny models, few steps): LLVM at -O0
# compiles XLA:CPU programs faster. Numerics stay the same (no fast-math at either
# level), and the heavy kernels (YNNPACK, Eigen) come precompiled. Set before any
# test starts jax; subprocesses inherit it.
xla_flags.add("--xla_backend_optimization_level=0")

# Many tests compile the same programs (the tiny model's steps at the same shapes),
# in this process and in the subprocesses they start: one persistent compilation
# cache per test process (each xdist worker has its own, which the subprocesses it
# starts share) compiles each of them once.
_CACHE_DIR = tempfile.mkdtemp(prefix="jaxtransfer_tests_")
atexit.register(shutil.rmtree, _CACHE_DIR, ignore_errors=True)
_CACHE_SETTINGS = {
    "jax_compilation_cache_dir": _CACHE_DIR,
    "jax_persistent_cache_min_compile_time_secs": 0,
    "jax_persistent_cache_min_entry_size_bytes": 0,
}
for _name, _value in _CACHE_SETTINGS.items():
    jax.config.update(_name, _value)
    os.environ[_name.upper()] = str(_value)  # for subprocesses


@pytest.fixture(scope="session")
def demo_sources(tmp_path_factory) -> dict[str, str]:
    """The demo's two stand-in sources (pre-trained, HDF5, converted), made once."""
    from configs import demo
    from jaxtransfer.grid import inputs, pretraining

    config = demo.get_config()
    root = tmp_path_factory.mktemp("sources")
    return {
        name: str(pretraining.make(inputs.synthetic_source(config, name), root / name))
        for name in config.init.synthetic_domains
    }
