"""Where a GPU train step spends its time: jaxtransfer's or PyTorch's, kernel by kernel.

Runs a few steps of `train_throughput.py`'s step (ResNet50, bf16 compute, same
model, batch and optimizer for both), traces them with the framework's own profiler
(`jax.profiler` or `torch.profiler`, one per process: both drive CUPTI), and sums the
GPU kernels' time per step, by kind (convolution, matrix product, PyTorch's
BatchNorm, reduction, elementwise, other) and by kernel. Kernel time well under the
step's wall time means gaps between kernels (launches, host work); near it, the
kernels themselves. The step runs queued, as the training loop runs it.

    python benchmarks/profile_gpu.py --impl jaxtransfer [--size 224] [--batch 128]
    python benchmarks/profile_gpu.py --impl torch_channels_last [--size 224]

Prints one JSON object per line: the step's wall and busy time, then one row per
kind and per kernel (the top ``--top``). With ``--trace-out FILE`` the raw trace
(gzipped JSON) is kept for reading elsewhere.
"""

import argparse
import collections
import glob
import gzip
import json
import os
import re
import shutil
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_throughput  # noqa: E402  (beside this script; puts the repo on the path)

from jaxtransfer import models  # noqa: E402

KINDS = (  # first match wins
    ("conv", r"conv(?!ert)|fprop|dgrad|wgrad|implicit_gemm|xmma_|cudnn"),
    ("matmul", r"gemm|cutlass|cublas|nvjet|matmul|dot"),
    ("batchnorm", r"batch_norm"),  # PyTorch's; XLA fuses it into the two below
    ("reduce", r"reduce|reduction"),
    ("elementwise", r"fusion|loop_|elementwise|triton|copy"),
)


def kernel_kind(name: str) -> str:
    """The kind of a GPU kernel, read from its name (cuDNN, cuBLAS, XLA, PyTorch)."""
    lowered = name.lower()
    for kind, pattern in KINDS:
        if re.search(pattern, lowered):
            return kind
    return "other"


def kernel_ms(trace: dict, steps: int) -> dict[str, tuple[float, int]]:
    """Milliseconds per step and launches per step of each GPU kernel in a trace.

    Kernels are the complete events that PyTorch's trace marks ``cat: kernel``, or
    (jax's trace) that lie on a GPU process's ``Stream`` threads.
    """
    events = trace["traceEvents"]
    processes, threads = {}, {}
    for e in events:
        if e.get("ph") == "M" and e.get("name") == "process_name":
            processes[e["pid"]] = e["args"].get("name", "")
        if e.get("ph") == "M" and e.get("name") == "thread_name":
            threads[e["pid"], e["tid"]] = e["args"].get("name", "")
    totals = collections.defaultdict(lambda: [0.0, 0])
    for e in events:
        if e.get("ph") != "X":
            continue
        on_stream = "GPU" in processes.get(e.get("pid"), "") and threads.get(
            (e.get("pid"), e.get("tid")), ""
        ).startswith("Stream")
        if e.get("cat") == "kernel" or on_stream:
            totals[e["name"]][0] += e["dur"] / 1e3 / steps
            totals[e["name"]][1] += 1
    return {name: (ms, count / steps) for name, (ms, count) in totals.items()}


def summary_rows(kernels: dict, wall_ms: float, top: int) -> list[dict]:
    """The step's wall and kernel time, then each kind's and the ``top`` kernels'."""
    rows = [
        {
            "what": "step",
            "wall_ms": round(wall_ms, 2),
            "kernel_ms": round(sum(ms for ms, _ in kernels.values()), 2),
            "kernels": round(sum(n for _, n in kernels.values())),
        }
    ]
    kinds = collections.defaultdict(lambda: [0.0, 0.0])
    for name, (ms, count) in kernels.items():
        kinds[kernel_kind(name)][0] += ms
        kinds[kernel_kind(name)][1] += count
    for kind, (ms, count) in sorted(kinds.items(), key=lambda k: -k[1][0]):
        rows.append(
            {"what": f"kind {kind}", "ms": round(ms, 2), "kernels": round(count)}
        )
    by_time = sorted(kernels.items(), key=lambda k: -k[1][0])
    for name, (ms, count) in by_time[:top]:
        rows.append({"what": name[:120], "ms": round(ms, 3), "per_step": count})
    return rows


def _jax_run(args):
    import jax

    variant = train_throughput.Variant(model=args.model)
    step, step_args = train_throughput._jax_step(
        args.size, args.batch, "bfloat16", 1, variant, np.random.default_rng(0)
    )

    def run(count):
        for _ in range(count):
            state, _ = step(*step_args)
            step_args[0] = state
        jax.block_until_ready(step_args[0])

    def trace(count, trace_dir):
        jax.profiler.start_trace(trace_dir, create_perfetto_trace=True)
        run(count)
        jax.profiler.stop_trace()
        return sorted(glob.glob(f"{trace_dir}/**/*.trace.json.gz", recursive=True))[-1]

    return run, trace


def _torch_run(args):
    import torch

    one_step, wait = train_throughput.torch_step(
        torch,
        args.model,
        args.size,
        args.batch,
        "bfloat16",
        args.impl.endswith("channels_last"),
        np.random.default_rng(0),
    )

    def run(count):
        for _ in range(count):
            one_step()
        wait()

    def trace(count, trace_dir):
        activities = [torch.profiler.ProfilerActivity.CUDA]
        with torch.profiler.profile(activities=activities) as profile:
            run(count)
        path = os.path.join(trace_dir, "torch.trace.json")
        profile.export_chrome_trace(path)
        return path

    return run, trace


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--impl",
        default="jaxtransfer",
        choices=("jaxtransfer", "torch_nchw", "torch_channels_last"),
    )
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument(
        "--model",
        choices=sorted(models.MODELS),
        default="resnet50",
        help="jaxtransfer only; tiny: a quick check that the script runs",
    )
    parser.add_argument("--trace-out", default=None, help="keep the raw trace here")
    args = parser.parse_args(argv)
    run, trace = (_jax_run if args.impl == "jaxtransfer" else _torch_run)(args)
    run(3)  # compile, autotune, warm up
    start = time.perf_counter()
    run(args.steps)
    wall_ms = 1e3 * (time.perf_counter() - start) / args.steps
    with tempfile.TemporaryDirectory() as trace_dir:
        path = trace(args.steps, trace_dir)
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rt") as f:
            kernels = kernel_ms(json.load(f), args.steps)
        if args.trace_out and path.endswith(".gz"):
            shutil.copyfile(path, args.trace_out)
        elif args.trace_out:
            with open(path, "rb") as src, gzip.open(args.trace_out, "wb") as dst:
                shutil.copyfileobj(src, dst)
    common = {"impl": args.impl, "size": args.size, "batch": args.batch}
    rows = summary_rows(kernels, wall_ms, args.top)
    for row in rows:
        print(json.dumps({**common, **row}), flush=True)
    return rows


if __name__ == "__main__":
    main()
