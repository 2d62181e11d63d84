"""A short tiny-model training, run in a subprocess with a given device set-up.

    python tests/sharded_run.py OUT.json [--devices N] [--process I --processes P
        --coordinator HOST:PORT]

Prints nothing; writes the per-epoch history and a weight checksum to OUT.json and
the trained model (`pretrained.save`, called by every process) to OUT.json.model.
The test modules compare these across device counts and processes.
"""

import argparse
import json
import os
import sys

parser = argparse.ArgumentParser()
parser.add_argument("output")
parser.add_argument("--devices", type=int, default=1)
parser.add_argument("--process", type=int, default=0)
parser.add_argument("--processes", type=int, default=1)
parser.add_argument("--coordinator", default="")
parser.add_argument("--compilation_cache", default="")
parser.add_argument(
    "--ensemble", action="store_true", help="train two runs as one vmapped ensemble"
)
args = parser.parse_args()

os.environ["JAX_PLATFORMS"] = "cpu"
# Importing jaxtransfer below adds its CPU flag (jaxtransfer/xla_flags.py).
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.devices}"
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

from jaxtransfer import ensemble, fit, sharding, train  # noqa: E402
from jaxtransfer.models import pretrained, resnet  # noqa: E402

# Short tests: XLA's optimisation passes cost more than they save here.
jax.config.update("jax_disable_most_optimizations", True)
if args.compilation_cache:  # reruns of the same set-up skip compiling
    jax.config.update("jax_compilation_cache_dir", args.compilation_cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
if args.processes > 1:
    sharding.initialize_distributed(args.coordinator, args.processes, args.process)

mesh = sharding.make_mesh()
rng = np.random.default_rng(0)


def split(n):
    labels = rng.integers(0, 2, n).astype(np.int32)
    images = rng.integers(0, 60, (n, 32, 32, 3)) + labels[:, None, None, None] * 120
    arrays = sharding.put_replicated((images.astype(np.uint8), labels), mesh)
    return fit.Split(*arrays)


data = {"train": split(36), "val": split(16)}
model = resnet._ResNetTiny(num_classes=2, rngs=nnx.Rngs(0))
stages = [
    fit.Stage("head", 1e-3, 1, "accuracy", 10, True, False, False),
    fit.Stage("finetune", 1e-3, 2, "loss", 30, False, True, True),
]
# One checkpoint directory for all processes (a shared filesystem in real runs).
checkpointer = fit.RunCheckpointer(os.path.abspath(args.output) + ".ckpt")
common = dict(
    num_classes=2,
    step_config=train.StepConfig(augment=None),
    batch_size=16,
    eval_batch_size=8,
    checkpointer=checkpointer,
    mesh=mesh,
)
if args.ensemble:  # the run above and a second one on other data, as one ensemble
    other = resnet._ResNetTiny(num_classes=2, rngs=nnx.Rngs(1))
    members = [
        ensemble.Member("a", model, data, jax.random.key(0)),
        ensemble.Member("b", other, {"train": split(28), "val": data["val"]},
                        jax.random.key(1)),
    ]  # fmt: skip
    history = ensemble.run_members(members, stages, **common)["a"]
    second = jax.tree.leaves(nnx.state(other, nnx.Param))
else:
    history = fit.run_stages(model, stages, data, rng=jax.random.key(0), **common)
    second = []
checkpointer.close()
# Every process saves, as experiment.finish_run does; one directory results.
metadata = pretrained.make_metadata(model, source_format="sharded_run")
pretrained.save(model, metadata, os.path.abspath(args.output) + ".model")


def _checksum(leaves) -> float:
    return float(sum(np.abs(np.asarray(w, np.float64)).sum() for w in leaves))


weights = jax.tree.leaves(nnx.state(model, nnx.Param))
checksum, second_checksum = _checksum(weights), _checksum(second)
history = [{k: v for k, v in r.items() if not k.startswith("timing")} for r in history]
if jax.process_index() == 0:
    with open(args.output, "w") as f:
        json.dump(
            {
                "devices": jax.device_count(),
                "param_devices": len(weights[0].sharding.device_set),
                "history": history,
                "checksum": checksum,
                "second_checksum": second_checksum,
            },
            f,
        )
