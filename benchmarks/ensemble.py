"""Training throughput: M runs as one ensemble step vs one run after the other.

Times the jitted train step only (no host loop, no evaluation): M members
stepped one by one with ``train.make_steps`` (the sequential grid), as one
vmapped ``ensemble.make_ensemble_steps`` call, and as one ``lax.map`` call.
Every timed call is blocked on, after warm-up; the rate is member-steps per
second (M per ensemble call, 1 per sequential call).

Usage:
  python benchmarks/ensemble.py [--model tiny|resnet50] [--size 32] [--batch 8]
      [--members 3] [--iters 10] [--output benchmarks/ensemble.json]
Prints one JSON object per line per measurement and writes them all to --output.
"""

import argparse
import json
import os
import platform
import sys

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

# Importable from a plain checkout too (the GPU machines run it without installing).
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import timing  # noqa: E402  (benchmarks/timing.py, beside this script)

from jaxtransfer import ensemble, train  # noqa: E402
from jaxtransfer.data import augment  # noqa: E402
from jaxtransfer.models import resnet  # noqa: E402


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=("tiny", "resnet50"), default="tiny")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--output", default="benchmarks/ensemble.json")
    args = parser.parse_args(argv)
    malloc = timing.reuse_freed_memory()

    make = resnet._ResNetTiny if args.model == "tiny" else resnet.ResNet50
    config = train.StepConfig(augment=augment.AugmentConfig())
    states = []
    for seed in range(args.members):
        model = make(num_classes=2, rngs=nnx.Rngs(seed))
        graphdef, state = train.create_state(model, config.optimizer, nnx.Param)
        states.append(state)
    rng = np.random.default_rng(0)
    n = args.batch * args.members
    images = jax.device_put(
        rng.integers(0, 256, (n, args.size, args.size, 3)).astype(np.uint8)
    )  # (n, H, W, 3)
    labels = jax.device_put(rng.integers(0, 2, n).astype(np.int32))  # (n,)
    indices = np.arange(n).reshape(args.members, args.batch)  # (M, B)
    keys = [jax.random.key(m) for m in range(args.members)]
    common = {
        "model": args.model,
        "size": args.size,
        "batch": args.batch,
        "members": args.members,
        "device": jax.devices()[0].device_kind,
        "host": platform.node(),
        **malloc,
    }
    results = []

    single, _ = train.make_steps(graphdef, 2, config)
    holder = {"states": [jax.tree.map(jnp.copy, s) for s in states]}

    def sequential():
        for m in range(args.members):
            holder["states"][m], _ = single(
                holder["states"][m], images, labels, indices[m], keys[m]
            )
        jax.block_until_ready(holder["states"])

    seconds = timing.median_seconds(sequential, args.iters)
    results.append(
        {**common, "mode": "sequential", "member_steps_per_s": args.members / seconds}
    )
    for mode, vectorize in (("vmap", True), ("lax.map", False)):
        step, _ = ensemble.make_ensemble_steps(graphdef, 2, config, vectorize)
        holder["stacked"] = ensemble.stack(states)
        active = np.ones(args.members, bool)
        stacked_keys = jnp.stack(keys)

        def together(step=step, active=active, stacked_keys=stacked_keys):
            holder["stacked"], _ = step(
                holder["stacked"], images, labels, indices, stacked_keys, active
            )
            jax.block_until_ready(holder["stacked"])

        seconds = timing.median_seconds(together, args.iters)
        results.append(
            {**common, "mode": mode, "member_steps_per_s": args.members / seconds}
        )
    for record in results:
        print(json.dumps(record), flush=True)
    timing.write_json_lines(args.output, results)
    return results


if __name__ == "__main__":
    main()
