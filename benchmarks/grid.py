"""The whole grid of one target through the training engine, timed and broken down.

A knee-sized synthetic target (5,200 images, 5 classes, 112 px by default) and the
study's 25 runs (ImageNet and RadImageNet with and without the frozen-base stage,
random init without, 5 folds), grouped as the grid groups them, for a few epochs
with early stopping off. All weights start random (the timing does not depend on
where they came from). Each ``--layout`` runs in the same process, one after the
other:

- ``members``: the engine's default mesh, member slots over devices first;
- ``replicated``: every member on every device, each batch split over all of them
  (the mesh's members axis of size 1), as an ensemble was trained before.

Prints one JSON line per layout: wall-clock time of the grid and its breakdown
(compile, train, eval, checkpoint, input, idle = the rest: the host's bookkeeping
between calls and building the models), the checkpoints' share of epoch time
(train + eval + checkpoint + input), images/s (training images over wall time),
the image-steps trained, and the bytes the compiled train program's collectives
move per call (the largest group's, and each group's).

Usage:
  python benchmarks/grid.py [--devices 4] [--model tiny|resnet50] [--size 112]
      [--images 5200] [--epochs 2] [--folds 5] [--layout members,replicated]
      [--sources ImageNet,RadImageNet,random] [--freeze False,True]
      [--checkpoint_every_s 60] [--member_mode auto] [--output FILE.jsonl]

``--devices N`` on a CPU makes N virtual devices; elsewhere it takes the first N.
"""

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import tempfile
import time


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--model", choices=("tiny", "resnet50"), default="tiny")
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--images", type=int, default=5200)
    parser.add_argument("--classes", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--folds", type=int, default=5, help="folds of the grid")
    parser.add_argument("--sources", default="ImageNet,RadImageNet,random")
    parser.add_argument("--freeze", default="False,True")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--layout", default="members,replicated")
    parser.add_argument("--checkpoint_every_s", type=float, default=60.0)
    parser.add_argument("--member_mode", default="auto")
    parser.add_argument("--output", default="")
    return parser.parse_args(argv)


ARGS = parse()
if ARGS.devices > 1 and "cuda" not in os.environ.get("JAX_PLATFORMS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "")
        + f" --xla_force_host_platform_device_count={ARGS.devices}"
    )
# Importable from a plain checkout too (the GPU machines run it without installing).
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

from configs import default  # noqa: E402
from jaxtransfer import models  # noqa: E402
from jaxtransfer.grid import plan  # noqa: E402
from jaxtransfer.training import engine  # noqa: E402
from jaxtransfer.training import mesh as mesh_lib  # noqa: E402


def _folds(rng, images: int, size: int, classes: int) -> dict[int, dict]:
    """Five folds of one synthetic target: 20% test, 16% val, 64% train each."""
    labels = rng.integers(0, classes, images).astype(np.int32)
    pixels = rng.integers(0, 200, (images, size, size, 3), dtype=np.uint8)
    pixels[..., 0] += (labels * 10).astype(np.uint8)[:, None, None]  # a class cue
    order = rng.permutation(images)
    tests = np.array_split(order, 5)
    folds = {}
    for k, test in enumerate(tests, start=1):
        rest = np.setdiff1d(order, test)
        val, train = rest[: len(rest) // 5], rest[len(rest) // 5 :]
        folds[k] = {
            name: engine.Split(pixels[idx], labels[idx])
            for name, idx in (("train", train), ("val", val), ("test", test))
        }
    return folds


def _config():
    config = default.for_target("knee", size=ARGS.size)
    config.train.batch_size = config.train.eval_batch_size = ARGS.batch
    config.train.num_epochs = ARGS.epochs
    config.train.patience = config.train.head_patience = ARGS.epochs + 1
    config.train.augment = True
    config.model.compute_dtype = ARGS.dtype
    config.grid.folds = tuple(range(1, ARGS.folds + 1))
    config.grid.sources = tuple(ARGS.sources.split(","))
    config.grid.freeze = tuple(f == "True" for f in ARGS.freeze.split(","))
    return config


def _groups(config, folds):
    """The grid's runs, grouped as ``runner.train_runs`` groups them."""
    groups = {}
    for spec in plan.runs(config):
        dropout = 0.0 if spec.source == "random" else config.model.head_dropout
        model = models.get(ARGS.model)(
            num_classes=ARGS.classes,
            head_dropout=dropout,
            dtype=jnp.dtype(ARGS.dtype),
            rngs=nnx.Rngs(spec.fold),
        )
        stages = plan.stages(config, spec)
        run = engine.Run(spec.directory, model, folds[spec.fold], plan.run_rng(0, spec))
        groups.setdefault(plan.group_key(model, stages), (stages, []))[1].append(run)
    return list(groups.values())


def _collective_bytes(config, stages, runs, mesh, mode) -> int:
    """Bytes the collectives of a group's first train program move per call."""
    stage = stages[0]
    step_config = dataclasses.replace(
        plan.step_config_for(config, ARGS.classes),
        learning_rate=stage.learning_rate,
        bn_train=stage.bn_train,
    )
    trainable = engine.steps.head_only if stage.head_only else nnx.Param
    graphdef, state = engine.steps.create_state(
        runs[0].model, step_config.optimizer, trainable
    )
    slots = -(-len(runs) // mesh.shape["members"]) * mesh.shape["members"]
    program, _ = engine.programs(graphdef, ARGS.classes, step_config, mesh, mode)
    shape, replicated = jax.ShapeDtypeStruct, mesh_lib.replicated(mesh)
    by_member = mesh_lib.by_member(mesh)
    args = (
        jax.tree.map(
            lambda x: shape((slots, *x.shape), x.dtype, sharding=by_member), state
        ),
        shape((1000, ARGS.size, ARGS.size, 3), jnp.uint8, sharding=replicated),
        shape((1000,), jnp.int32, sharding=replicated),
        shape((slots, ARGS.batch), jnp.int32, sharding=replicated),
        shape((slots, 2), jnp.uint32, sharding=replicated),
        shape((slots,), jnp.bool_, sharding=replicated),
        0,
    )
    with jax.set_mesh(mesh):
        text = program.lower(*args).compile().as_text()
    return sum(c.bytes for c in mesh_lib.collectives(text))


def run_layout(layout: str, config, folds) -> dict:
    devices = jax.devices()[: ARGS.devices]
    groups = _groups(config, folds)
    timings = engine.Timings()
    step_config = plan.step_config_for(config, ARGS.classes)
    meshes, collective_bytes = [], []
    with tempfile.TemporaryDirectory() as workdir:
        start = time.perf_counter()
        for stages, runs in groups:
            for run in runs:
                run.checkpoint_dir = os.path.join(workdir, run.name, "checkpoints")
            mesh = mesh_lib.make_mesh(
                len(runs), 1 if layout == "replicated" else None, devices
            )
            meshes.append(dict(mesh.shape))
            settings = engine.Settings(
                ARGS.batch, ARGS.batch, member_mode=ARGS.member_mode,
                checkpoint_every_s=ARGS.checkpoint_every_s, progress=False,
            )  # fmt: skip
            engine.train(
                runs, stages, num_classes=ARGS.classes, step_config=step_config,
                settings=settings, mesh=mesh, timings=timings,
            )  # fmt: skip
        wall = time.perf_counter() - start
    mode = ARGS.member_mode
    if mode == "auto":
        mode = engine.default_member_mode(mesh)
    for (stages, runs), mesh_shape in zip(groups, meshes, strict=True):
        mesh = mesh_lib.make_mesh(len(runs), mesh_shape["members"], devices)
        collective_bytes.append(_collective_bytes(config, stages, runs, mesh, mode))
    parts = ("compile", "train", "eval", "checkpoint", "input")
    row = {
        "workload": "grid",
        "layout": layout,
        "devices": len(devices),
        "platform": devices[0].platform,
        "device_kind": devices[0].device_kind,
        "members": sum(len(runs) for _, runs in groups),
        "mesh": meshes,
        "member_mode": mode,
        "model": ARGS.model,
        "size": ARGS.size,
        "images": ARGS.images,
        "epochs": ARGS.epochs,
        "folds": ARGS.folds,
        "batch": ARGS.batch,
        "dtype": ARGS.dtype,
        "wall_s": round(wall, 2),
        **{f"{p}_s": round(getattr(timings, p), 2) for p in parts},
        "idle_s": round(wall - sum(getattr(timings, p) for p in parts), 2),
        "checkpoint_share_of_epoch": round(
            timings.checkpoint
            / sum(
                getattr(timings, p) for p in ("train", "eval", "checkpoint", "input")
            ),
            4,
        ),
        "image_steps": timings.train_images,
        "images_per_s": round(timings.train_images / wall, 1),
        # The largest of the groups' train programs, and each group's.
        "collective_bytes_per_step": max(collective_bytes),
        "collective_bytes_per_step_by_group": collective_bytes,
    }
    return row


def main() -> list[dict]:
    config = _config()
    folds = _folds(np.random.default_rng(0), ARGS.images, ARGS.size, ARGS.classes)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
        cwd=os.path.dirname(os.path.abspath(__file__)),
    ).stdout.strip()  # fmt: skip
    rows = []
    for layout in ARGS.layout.split(","):
        row = run_layout(layout, config, folds)
        row.update(
            commit=commit,
            date=time.strftime("%Y-%m-%d"),
            host_cpu=platform.processor() or platform.machine(),
            jax=jax.__version__,
            command=" ".join(["python", "benchmarks/grid.py", *sys.argv[1:]]),
        )
        print(json.dumps(row), flush=True)
        rows.append(row)
    if ARGS.output:
        with open(ARGS.output, "a") as f:
            f.writelines(json.dumps(row) + "\n" for row in rows)
    return rows


if __name__ == "__main__":
    main()
