"""Where an XLA:CPU train step spends its time, by kind of operation.

Traces a few steps of the jaxtransfer ResNet50 train step (`train_throughput.py`'s
step, same arguments) with `jax.profiler`, then sums the runtime of each compiled
operation (XLA:CPU thunk) per step and groups it: YNNPACK fusions by what they
compute (convolution, matrix product, reduction) with their GFLOP/s from the
compiled HLO, other fusions by name. Thunks can overlap on the thread pool, so the
sum can exceed the step's wall time. Reads XLA:CPU's trace (thunk names); other
backends name their events differently.

    python benchmarks/profile_step.py [--size 112] [--batch 32] [--steps 3]

Prints one JSON object per line: the step's wall time, then one row per group.
"""

import argparse
import collections
import glob
import gzip
import json
import os
import re
import sys
import tempfile
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_throughput  # noqa: E402  (beside this script)

from jaxtransfer.runtime import host  # noqa: E402

_SHAPE = r"\w+\[[\d,]*\]"


def _dims(shape: str) -> list[int]:
    return [
        int(d) for d in re.match(r"\w+\[([\d,]*)\]", shape).group(1).split(",") if d
    ]


def _fused_computations(hlo: str) -> tuple[dict, dict]:
    """(fusion name -> called computation, computation name -> body) of an HLO text."""
    calls = dict(re.findall(r"%([\w.\-]+) = \S+ fusion\(.*?calls=%([\w.\-]+)", hlo))
    bodies = {
        m.group(1): m.group(2)
        for m in re.finditer(r"^%?([\w.\-]+) \(.*?\{\n(.*?)\n\}", hlo, re.S | re.M)
    }
    return calls, bodies


def _kind_and_flops(body: str) -> tuple[str, int]:
    """What a fused computation computes ('conv', 'dot', 'reduce', 'other'), FLOPs."""
    shapes = dict(re.findall(rf"%([\w.\-]+) = ({_SHAPE})", body))
    for line in body.split("\n"):
        m = re.search(
            rf"= ({_SHAPE})\S* (convolution|dot)\(%([\w.\-]+), %([\w.\-]+)\)", line
        )
        if not m:
            continue
        out = np.prod(_dims(m.group(1)))
        rhs = _dims(shapes[m.group(4)])
        if m.group(2) == "convolution":
            kernel_labels = re.search(r"dim_labels=\w+_(\w+)->", line).group(1)
            per_output = np.prod(rhs) // rhs[kernel_labels.index("o")]
            return "conv", int(2 * out * per_output)
        lhs = _dims(shapes[m.group(3)])
        contracting = re.search(r"lhs_contracting_dims=\{([\d,]*)\}", line).group(1)
        depth = np.prod([lhs[int(d)] for d in contracting.split(",") if d])
        return "dot", int(2 * out * depth)
    return ("reduce", 0) if " reduce(" in body else ("other", 0)


def _thunk_ms(trace_dir: str, steps: int) -> dict[str, float]:
    """Milliseconds per step of every named operation in the profiler's trace."""
    path = sorted(glob.glob(f"{trace_dir}/**/*.trace.json.gz", recursive=True))[-1]
    with gzip.open(path) as f:
        events = json.load(f)["traceEvents"]
    totals = collections.Counter()
    for event in events:
        name = event.get("name", "")
        if event.get("ph") != "X" or name.startswith(("$", "Pjit", "ThunkExecutor")):
            continue
        totals[name] += event["dur"] / 1e3 / steps
    return totals


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args(argv)
    host.reuse_freed_memory()
    variant = train_throughput.Variant()
    step, step_args = train_throughput._jax_step(
        args.size, args.batch, "float32", 1, variant, np.random.default_rng(0)
    )
    calls, bodies = _fused_computations(step.lower(*step_args).compile().as_text())

    def run(count):
        for _ in range(count):
            state, _ = step(*step_args)
            step_args[0] = state
            jax.block_until_ready(state)

    run(2)
    start = time.perf_counter()
    run(args.steps)
    rows = [
        {"what": "step wall", "ms": 1e3 * (time.perf_counter() - start) / args.steps}
    ]
    with tempfile.TemporaryDirectory() as trace_dir:
        jax.profiler.start_trace(trace_dir, create_perfetto_trace=True)
        run(args.steps)
        jax.profiler.stop_trace()
        thunks = _thunk_ms(trace_dir, args.steps)
    groups = collections.defaultdict(lambda: [0.0, 0, 0])  # ms, flops, count
    for name, ms in thunks.items():
        if name.startswith("ynn_fusion"):
            kind, flops = _kind_and_flops(bodies.get(calls.get(name, ""), ""))
            group = f"ynnpack {kind}"
        else:
            group, flops = re.sub(r"[._]\d+$", "", name), 0
        groups[group][0] += ms
        groups[group][1] += flops
        groups[group][2] += 1
    for group, (ms, flops, count) in sorted(groups.items(), key=lambda g: -g[1][0]):
        row = {"what": group, "ms": round(ms, 1), "ops": count}
        if flops:
            row["gflop_per_s"] = round(flops / ms / 1e6, 1)
        rows.append(row)
    for row in rows:
        print(json.dumps({**row, "size": args.size, "batch": args.batch}), flush=True)
    return rows


if __name__ == "__main__":
    main()
