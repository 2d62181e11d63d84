"""XLA flag workarounds: added once, and remat on a GPU fails clearly without one."""

import os

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from jaxtransfer import ensemble, train, xla_flags
from jaxtransfer.models import resnet


def test_add_appends_once_and_keeps_other_flags(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_dump_to=somewhere")
    xla_flags.add(xla_flags.GPU_REMAT)
    xla_flags.add(xla_flags.GPU_REMAT)
    assert xla_flags.GPU_REMAT in os.environ["XLA_FLAGS"]
    assert os.environ["XLA_FLAGS"].split() == [
        "--xla_dump_to=somewhere",
        xla_flags.GPU_REMAT,
    ]


def test_add_to_unset_variable(monkeypatch):
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    xla_flags.add(xla_flags.CPU_NO_DEADLOCK)
    assert os.environ["XLA_FLAGS"] == xla_flags.CPU_NO_DEADLOCK


def test_remat_check_only_concerns_gpus_without_the_flag(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", xla_flags.CPU_NO_DEADLOCK)
    xla_flags.check_remat_compiles("cpu")
    with pytest.raises(RuntimeError, match="xla_gpu_enable_triton_gemm=false"):
        xla_flags.check_remat_compiles("gpu")
    xla_flags.add(xla_flags.GPU_REMAT)
    xla_flags.check_remat_compiles("gpu")


@pytest.mark.parametrize("members", [1, 2])
def test_remat_steps_on_a_gpu_need_the_flag(monkeypatch, members):
    monkeypatch.setenv("XLA_FLAGS", xla_flags.CPU_NO_DEADLOCK)
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    model = resnet._ResNetTiny(num_classes=2, rngs=nnx.Rngs(0))
    # A config no other test uses, so the cached steps are traced afresh.
    config = train.StepConfig(remat=True, learning_rate=0.123)
    graphdef, state = train.create_state(model, config.optimizer, nnx.Param)
    images = jnp.zeros((4 * members, 16, 16, 3), jnp.uint8)
    labels = jnp.zeros((4 * members,), jnp.int32)
    if members == 1:
        step, _ = train.make_steps(graphdef, 2, config)
        args = (state, images, labels, jnp.arange(4), jax.random.key(0))
    else:
        step, _ = ensemble.make_ensemble_steps(graphdef, 2, config)
        indices = jnp.arange(4 * members).reshape(members, 4)
        keys = jnp.stack([jax.random.key(m) for m in range(members)])
        active = jnp.ones(members, bool)
        args = (
            ensemble.stack([state] * members),
            images,
            labels,
            indices,
            keys,
            active,
        )
    with pytest.raises(RuntimeError, match="train.remat on a GPU"):
        jax.eval_shape(step, *args)  # tracing is enough; nothing compiles
