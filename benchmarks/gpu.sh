#!/usr/bin/env bash
# Every GPU benchmark in one go, most important first, each under its own time
# limit and all under one budget, for a short run on a GPU machine.
#
#   BUDGET_S=480 bash benchmarks/gpu.sh
#   STEPS="grid_112 train_fp32_112" BUDGET_S=300 bash benchmarks/gpu.sh
#
# STEPS picks steps by name (all, in the order below, when unset).
# Writes everything printed to $OUT/log.txt and every JSON row to
# $OUT/results.jsonl ($OUT defaults to benchmarks/gpu_results). Wheels in .whl/
# are installed first when present, since such machines have no package index;
# the H200 run of benchmarks/RESULTS.md carried the flax and optax the tests use:
#   pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --platform manylinux_2_17_x86_64 -d .whl flax==0.12.12 optax==0.2.8
# The grid step imports the grid driver, which needs ml-collections, tensorboardX
# and tensorflow-datasets (without TensorFlow); where the machine lacks them:
#   pip download --only-binary=:all: --python-version 3.12 \
#     --platform manylinux_2_17_x86_64 -d .whl ml-collections tensorboardX \
#     tensorflow-datasets
set -u
out=${OUT:-benchmarks/gpu_results}
mkdir -p "$out"
exec > >(tee -a "$out/log.txt") 2>&1

if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --upgrade --target /tmp/jaxtransfer_site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/jaxtransfer_site
fi
export PYTHONUNBUFFERED=1
# Grow JAX's GPU memory on demand, so PyTorch in the same process finds room.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
export JAX_COMPILATION_CACHE_DIR=/tmp/jaxtransfer_jax_cache

deadline=$((SECONDS + ${BUDGET_S:-480}))

# run NAME LIMIT_S COMMAND...: runs COMMAND unless the budget is spent, keeps its rows.
run() {
  local name=$1 limit=$2 left=$((deadline - SECONDS)) start=$SECONDS
  shift 2
  if [[ -n "${STEPS:-}" && " $STEPS " != *" $name "* ]]; then
    return
  fi
  if ((left < 30)); then
    echo "== $name: skipped, ${left} s of the budget left"
    return
  fi
  ((limit > left)) && limit=$left
  echo "== $name (limit ${limit} s): $*"
  timeout -k 10 "$limit" "$@" 2>&1 | tee "/tmp/jaxtransfer_$name.log"
  echo "== $name: exit ${PIPESTATUS[0]} after $((SECONDS - start)) s"
  grep '^{' "/tmp/jaxtransfer_$name.log" |
    python3 -c "import json,sys; [print(json.dumps({'step': '$name', **json.loads(l)})) for l in sys.stdin]" \
      >> "$out/results.jsonl"
}

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
python3 -c "import jax, flax, optax, torch; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, 'torch', torch.__version__, jax.devices())"

tt=benchmarks/train_throughput.py
run train_bf16_112 150 python3 $tt --sizes 112 --batch 128 --dtypes bfloat16 \
  --members 1 --iters 10 --impls jaxtransfer,torch_eager --flax-batchnorm \
  --output /tmp/tt1.json
run cca 120 python3 benchmarks/cca.py --shared-sample --chunk 350 \
  --reference-count 20 --repeats 3 --decompositions linalg,cholesky
# No decomposition at all (Cholesky whitening, Newton-Schulz sum of singular values:
# batched products and D elementwise steps instead of ~2600 Jacobi rounds), against
# Jacobi in the same run, the whole paper workload in one call (on an H100: 1055x
# the reference, Jacobi 151x; the full-width rows did not finish in 200 s).
run cca_cholesky 200 python3 benchmarks/cca.py --chunk 1750 --reference-count 20 \
  --repeats 2 --decompositions jacobi,cholesky --shared-sample \
  --shared-repetitions 125 --gram-precisions highest,bf16_3x
# The CCA kernel's GPU options, each with its error against the float64 reference:
# batched Jacobi decompositions beside jnp.linalg's (cuSOLVER decomposes 64x64
# matrices one at a time), and the Gram product in XLA's multi-pass bf16/tf32
# tensor-core algorithms (the HIGHEST-precision products alone took 21 ms of the
# 19.8 ms that 1000x allows). Larger calls than the cca step: a Jacobi round should
# cost about the same for any batch on a GPU (not yet measured).
run cca_jacobi 240 python3 benchmarks/cca.py --chunk 875 --reference-count 20 \
  --repeats 2 --decompositions linalg,jacobi --shared-sample \
  --gram-precisions highest,bf16_3x,bf16_6x,tf32_3x
# Whether the Jacobi rounds, not the batch, set the time (on an H200: 158 ms for
# two calls of 875 CCAs): the whole paper workload in one call.
run cca_jacobi_one_call 150 python3 benchmarks/cca.py --chunk 1750 \
  --reference-count 20 --repeats 2 --decompositions jacobi \
  --gram-precisions highest,bf16_3x
# A knee-sized grid (25 runs, ResNet50, bf16, 112 px, batch 128) through the
# engine on one device: its wall time against image-steps / the step's rate above.
run grid_112 300 python3 benchmarks/grid.py --devices 1 --model resnet50 \
  --size 112 --images 5200 --epochs 2 --batch 128 --dtype bfloat16 \
  --layout members --output /tmp/grid.json
# Five member slots in one step, vmapped (ensemble_map_112 at the end runs them
# as lax.map, the engine's mode on accelerators).
run ensemble_112 300 python3 $tt --sizes 112 --batch 128 --dtypes bfloat16 \
  --members 5 --iters 10 --impls jaxtransfer --ensemble-only --output /tmp/tt6.json
run train_bf16_224 150 python3 $tt --sizes 224 --batch 128 --dtypes bfloat16 \
  --members 1 --iters 10 --impls jaxtransfer,torch_eager --output /tmp/tt4.json
# Where the 224 px step's GPU time goes, kernel by kernel, in both frameworks.
run profile_224 180 bash -c "python3 benchmarks/profile_gpu.py --impl jaxtransfer \
  && python3 benchmarks/profile_gpu.py --impl torch_channels_last"
# Ablation: 1x1 convolutions as cuDNN convolutions instead of matrix products
# (the H200's remat abort was in XLA's GEMM fusion, most likely of those products).
run pointwise_conv_224 150 python3 $tt --sizes 224 --batch 128 --dtypes bfloat16 \
  --members 1 --iters 10 --impls jaxtransfer --pointwise-as-conv --output /tmp/tt8.json
run memory_25 120 python3 $tt --memory-only --sizes 112 --batch 128 \
  --dtypes bfloat16 --members 25 --output /tmp/tt2.json
# --remat adds XLA_FLAGS=--xla_gpu_enable_triton_gemm=false (jaxtransfer/runtime/xla_flags.py).
run memory_25_remat 120 python3 $tt --memory-only --sizes 112 --batch 128 \
  --dtypes bfloat16 --members 25 --remat --output /tmp/tt3.json
run train_fp32_112 150 python3 $tt --sizes 112 --batch 128 --dtypes float32 \
  --members 1 --iters 10 --impls jaxtransfer,torch_eager --output /tmp/tt5.json
run augment 60 python3 benchmarks/augment.py --size 112 --batch 128 --iters 50
run ensemble_map_112 300 python3 $tt --sizes 112 --batch 128 --dtypes bfloat16 \
  --members 5 --iters 10 --impls jaxtransfer --ensemble-only --ensemble-map \
  --output /tmp/tt7.json
echo "== done after $SECONDS s"
