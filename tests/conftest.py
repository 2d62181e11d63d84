"""Test set-up: CPU only, Keras on the JAX backend, the deadlock-safe XLA flag."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("KERAS_BACKEND", "jax")

import pytest  # noqa: E402

import jaxtransfer  # noqa: E402, F401  (sets the XLA flag that avoids a CPU deadlock)


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
