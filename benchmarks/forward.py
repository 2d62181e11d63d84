"""Forward (feature-extraction) throughput: jaxtransfer vs Keras 3's own ResNet50.

Both run in the same process on the same device, at the same input size and batch,
inference mode, after warm-up; each timed call is blocked on. Keras runs on its JAX
backend through ``predict_on_batch`` (its compiled predict step). Keras is optional:
without it only jaxtransfer is measured and the Keras row says why it is missing.

Usage:
  python benchmarks/forward.py [--size 112] [--batch 32] [--iters 10]
      [--output benchmarks/forward.json]
Prints one JSON object per line per measurement and writes them all to --output.
"""

import argparse
import json
import os
import platform
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

# Importable from a plain checkout too (the GPU machines run it without installing).
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import timing  # noqa: E402  (benchmarks/timing.py, beside this script)

from jaxtransfer.models import resnet  # noqa: E402


def bench_jaxtransfer(images: np.ndarray, iters: int, dtype: str) -> dict:
    model = resnet.ResNet50(dtype=jnp.dtype(dtype), rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(model)
    taps = (*resnet.STUDY_TAPS, "pooled")

    @jax.jit
    def forward(state, x):
        return nnx.merge(graphdef, state)(x, taps=taps)[1]

    x = jax.device_put(images)
    seconds = timing.median_seconds(
        lambda: jax.block_until_ready(forward(state, x)), iters
    )
    return {"impl": "jaxtransfer", "dtype": dtype, "seconds_per_batch": seconds}


def bench_keras(images: np.ndarray, iters: int) -> dict:
    try:
        import keras
    except ImportError:
        return {"impl": "keras", "skipped": "keras is not installed"}
    base = keras.applications.ResNet50(
        include_top=False, weights=None, input_shape=images.shape[1:]
    )
    outputs = [base.get_layer(name).output for name in resnet.STUDY_TAPS]
    probe = keras.Model(base.inputs, outputs + [base.output])
    seconds = timing.median_seconds(
        lambda: jax.block_until_ready(probe.predict_on_batch(images)), iters
    )
    return {
        "impl": "keras",
        "backend": keras.backend.backend(),
        "keras_version": keras.__version__,
        "dtype": "float32",
        "seconds_per_batch": seconds,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--bf16", action="store_true", help="also jaxtransfer in bf16")
    parser.add_argument("--output", default="benchmarks/forward.json")
    args = parser.parse_args(argv)

    malloc = timing.reuse_freed_memory()
    device = jax.devices()[0]
    images = np.random.default_rng(0).normal(
        0, 60, (args.batch, args.size, args.size, 3)
    )
    images = images.astype(np.float32)
    common = {
        "benchmark": "forward",
        "workload": f"resnet50 taps {args.size}x{args.size} batch {args.batch}",
        "batch": args.batch,
        "size": args.size,
        "device": f"{device.platform}:{device.device_kind}",
        "num_devices": jax.device_count(),
        "cpu_count": os.cpu_count(),
        "jax_version": jax.__version__,
        "python": platform.python_version(),
        **malloc,
    }
    runs = [bench_jaxtransfer(images, args.iters, "float32")]
    if args.bf16:
        runs.append(bench_jaxtransfer(images, args.iters, "bfloat16"))
    runs.append(bench_keras(images, args.iters))
    results = []
    for run in runs:
        row = {**common, **run}
        if "seconds_per_batch" in row:
            row["images_per_s"] = round(args.batch / row["seconds_per_batch"], 2)
        results.append(row)
        print(json.dumps(row), flush=True)
    with open(args.output, "w") as f:
        json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    main()
