"""Two tiny-model runs through the engine, in a subprocess with a device set-up.

    python tests/training/engine_run.py OUT.json [--devices N] [--members S]
        [--process I --processes P --coordinator HOST:PORT] [--collectives S,...]

Writes each run's per-epoch history and weight checksum to OUT.json, checkpoints
under OUT.json.ckpt/, and run "a"'s model (`pretrained.save`, called by every
process) to OUT.json.model. With ``--collectives 4,2,1`` it instead compiles the
train program of 4 member slots on each members x (devices / members) mesh and
writes its collectives.
"""

import argparse
import faulthandler
import json
import os
import sys

parser = argparse.ArgumentParser()
parser.add_argument("output")
parser.add_argument("--devices", type=int, default=1)
parser.add_argument("--members", type=int, default=None, help="mesh members axis")
parser.add_argument("--process", type=int, default=0)
parser.add_argument("--processes", type=int, default=1)
parser.add_argument("--coordinator", default="")
parser.add_argument("--compilation_cache", default="")
parser.add_argument("--collectives", default="", help="e.g. 4,2,1: members axes")
args = parser.parse_args()
# Where every thread was if a process is aborted (a multi-process run ends so when
# another process dies).
faulthandler.enable(all_threads=True)

os.environ["JAX_PLATFORMS"] = "cpu"
# Importing jaxtransfer below adds its CPU flag (jaxtransfer/runtime/xla_flags.py).
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.devices}"
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

from jaxtransfer.models import pretrained, resnet  # noqa: E402
from jaxtransfer.runtime import processes  # noqa: E402
from jaxtransfer.training import engine, steps  # noqa: E402
from jaxtransfer.training import mesh as mesh_lib  # noqa: E402

# Short tests: XLA's optimisation passes cost more than they save here.
jax.config.update("jax_disable_most_optimizations", True)
if args.compilation_cache:  # reruns of the same set-up skip compiling
    jax.config.update("jax_compilation_cache_dir", args.compilation_cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
if args.processes > 1:
    processes.initialize_distributed(args.coordinator, args.processes, args.process)

rng = np.random.default_rng(0)
STEP_CONFIG = steps.StepConfig(augment=None)


def split(n):
    labels = rng.integers(0, 2, n).astype(np.int32)
    images = rng.integers(0, 60, (n, 32, 32, 3)) + labels[:, None, None, None] * 120
    return engine.Split(images.astype(np.uint8), labels)


def write(result):
    if jax.process_index() == 0:
        with open(args.output, "w") as f:
            json.dump(result, f)


def collectives(members: int) -> dict:
    """The step of 4 member slots on ``members`` x (devices / members), compiled
    and read back: what crosses devices."""
    mesh = mesh_lib.make_mesh(4, members)
    model = resnet.ResNetTiny(num_classes=2, rngs=nnx.Rngs(0))
    graphdef, state = steps.create_state(model, STEP_CONFIG.optimizer, nnx.Param)
    with jax.set_mesh(mesh):
        stacked = engine._zeros(state, 4, mesh)
        train_step, _ = engine.programs(graphdef, 2, STEP_CONFIG, mesh, "map")
        data = split(64)
        images, labels = mesh_lib.put_replicated((data.images, data.labels), mesh)
        keys = np.zeros((4, 2), np.uint32)
        compiled = train_step.lower(
            stacked, images, labels, np.zeros((4, 16), np.int32), keys,
            np.ones(4, bool), 0,
        ).compile()  # fmt: skip
    return {
        "mesh": dict(mesh.shape),
        "param_bytes": sum(x.nbytes for x in jax.tree.leaves(state.trainable)),
        "collectives": [
            {
                "op": c.op,
                "bytes": c.bytes,
                "crosses_members": mesh_lib.crosses_members(c, mesh),
            }
            for c in mesh_lib.collectives(compiled.as_text())
        ],  # fmt: skip
    }


if args.collectives:
    write({m: collectives(int(m)) for m in args.collectives.split(",")})
    sys.exit(0)

val = split(16)
runs = [
    engine.Run(
        name,
        resnet.ResNetTiny(num_classes=2, rngs=nnx.Rngs(seed)),
        {"train": split(n), "val": val},
        jax.random.key(seed),
        # One checkpoint directory for all processes (a shared filesystem).
        os.path.abspath(args.output) + f".ckpt/{name}",
    )
    for name, seed, n in (("a", 0, 36), ("b", 1, 28))
]
stages = [
    engine.Stage("head", 1e-3, 1, "accuracy", 10, True, False, False),
    # The paper's fine-tuning rate: Adam turns rounding-level gradients into
    # steps of about the rate, so a larger one would amplify partition rounding.
    engine.Stage("finetune", 1e-5, 2, "loss", 30, False, True, True),
]
mesh = mesh_lib.make_mesh(len(runs), args.members)
histories = engine.train(
    runs,
    stages,
    num_classes=2,
    step_config=STEP_CONFIG,
    settings=engine.Settings(16, 8, checkpoint_every_s=0, progress=False),
    mesh=mesh,
)
# Every process saves, as the grid does; one directory results.
metadata = pretrained.make_metadata(runs[0].model, source_format="engine_run")
pretrained.save(runs[0].model, metadata, os.path.abspath(args.output) + ".model")


def _checksum(model) -> float:
    leaves = jax.tree.leaves(nnx.state(model, nnx.Param))
    return float(sum(np.abs(np.asarray(w, np.float64)).sum() for w in leaves))


write(
    {
        "devices": jax.device_count(),
        "mesh": dict(mesh.shape),
        "runs": {
            run.name: {
                "history": [
                    {k: v for k, v in r.items() if not k.startswith("timing")}
                    for r in histories[run.name]
                ],
                "checksum": _checksum(run.model),
            }
            for run in runs
        },
    }
)
