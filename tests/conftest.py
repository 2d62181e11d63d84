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
# For the same reason XLA skips most of its HLO optimisation passes in the tests
# and the subprocesses they start: fusion and layout choices change float rounding
# at most, and every comparison a test makes is between programs compiled alike or
# within a tolerance.
jax.config.update("jax_disable_most_optimizations", True)
os.environ["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "true"

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


# The slowest test files, slowest first (pytest --durations on 2 cores). xdist
# hands whole files to its workers in collection order (--dist loadfile
# --no-loadscope-reorder, pyproject.toml): starting with the longest leaves the
# many short files to fill the end evenly, instead of one worker finishing a long
# file alone.
SLOWEST_FILES = (
    "benchmarks/test_faults_script.py",
    "training/test_devices.py",
    "training/test_engine.py",
    "models/formats/test_keras_h5_backbones.py",
    "models/formats/test_keras_h5.py",
    "analysis/test_study.py",
    "test_main.py",
    "benchmarks/test_train_throughput_script.py",
    "benchmarks/test_grid_script.py",
    "grid/test_grid.py",
    "benchmarks/test_cca_script.py",
    "models/test_backbones.py",
)


def pytest_collection_modifyitems(config, items):
    tests = os.path.dirname(__file__)

    def rank(item):
        path = os.path.relpath(str(item.path), tests)
        return (
            SLOWEST_FILES.index(path) if path in SLOWEST_FILES else len(SLOWEST_FILES)
        )

    items.sort(key=rank)  # stable: the rest keep their order
