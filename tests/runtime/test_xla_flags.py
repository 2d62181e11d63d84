"""XLA flag workarounds: added once, and remat on a GPU fails clearly without one."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxtransfer.models import resnet
from jaxtransfer.runtime import xla_flags
from jaxtransfer.training import engine, steps
from jaxtransfer.training import mesh as mesh_lib


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


@pytest.mark.parametrize("slots", [1, 2])
def test_remat_steps_on_a_gpu_need_the_flag(monkeypatch, slots):
    monkeypatch.setenv("XLA_FLAGS", xla_flags.CPU_NO_DEADLOCK)
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    model = resnet.ResNetTiny(num_classes=2, rngs=nnx.Rngs(0))
    # A config no other test uses, so the cached steps are traced afresh.
    config = steps.StepConfig(remat=True, learning_rate=0.123)
    graphdef, state = steps.create_state(model, config.optimizer, nnx.Param)
    mesh = mesh_lib.make_mesh(slots)
    stacked = jax.tree.map(lambda x: jnp.stack([x] * slots), state)
    images = jnp.zeros((4 * slots, 16, 16, 3), jnp.uint8)
    labels = jnp.zeros((4 * slots,), jnp.int32)
    indices = np.arange(4 * slots, dtype=np.int32).reshape(slots, 4)
    keys = np.zeros((slots, 2), np.uint32)
    train_step, _ = engine.programs(graphdef, 2, config, mesh, "map")
    with jax.set_mesh(mesh), pytest.raises(RuntimeError, match="train.remat on a GPU"):
        # tracing is enough; nothing compiles
        jax.eval_shape(
            train_step, stacked, images, labels, indices, keys, np.ones(slots, bool), 0
        )
