"""Batched mean-CCA kernel against the float64 NumPy svcca reference, same run.

Workloads:
- `paper`: the study's 1750 CCAs (14 pairs x 5 folds x 5 layers x 5 repetitions), each
  64 channels x 10000 datapoints per side, every pair with its own sample. The kernel
  runs on chunks of `--chunk` pairs; the reference is timed on `--reference-count`
  pairs and extrapolated to 1750 (the output says so). Kernel and reference are
  timed in turns, best of `--repeats` rounds each, so that both see the same state
  of a shared machine.
- `full_width`: a few CCAs of 2048 channels x 10000 datapoints (all of block4).
- `paper_shared_sample` (with `--shared-sample`): one sample per (fold, layer,
  repetition) shared by the 8 networks of a target, so one (N, 8 x 64) Gram product
  serves all 14 pairs and each network is whitened once: the analysis's own call
  (`pairs.pairwise_mean_cca`, see `jaxtransfer/analysis/sampling.py` for how its
  sampling relates to the paper's per-pair samples). Each call holds
  `--shared-repetitions` samples: by default the analysis's 5 (one fold and layer
  a call); 125 is the whole workload in one call. Its reference runs on the first
  `--reference-count` of its own pairs, in turns with it.
- `full_depth_pairs`: the 14 pairs of 8 networks at one 1024-channel tap from
  streamed sums (`pairs.mean_cca_from_sums`), each network whitened once, against
  whitening both sides of every pair.

`--decompositions linalg,jacobi,cholesky` times the kernel (paper, shared-sample and
full-depth workloads) with each of `cca.DECOMPOSITIONS`: jnp.linalg's eigh/SVD (LAPACK,
cuSOLVER), the batched Jacobi methods, or no decomposition (Cholesky whitening and the
polar iteration's sum of singular values); rows of a non-default method carry its
name in `impl`.
`--gram-precisions highest,bf16_3x,bf16_6x,tf32_3x` also times the paper workload with
the covariance's Gram product in XLA's multi-pass tensor-core algorithms
(`cca.covariance(precision=...)`), with each decomposition, and reports the error
against the float64 reference (rows `..._gram_<name>`). For GPUs: XLA:CPU computes the
bf16 presets in float32 and has no tf32.

Every measurement is one JSON object per line with keys impl, workload, count,
seconds, per_cca_ms, device, decomposition, and speedup where it applies. Run:

    .venv/bin/python benchmarks/cca.py            # full run (a few minutes)
    .venv/bin/python benchmarks/cca.py --quick    # small smoke run
"""

import argparse
import functools
import json
import math
import os
import sys
import time

# Importable from a plain checkout too (the GPU machines run it without installing).
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import timing  # noqa: E402  (benchmarks/timing.py, beside this script)

from jaxtransfer.analysis import cca, pairs, sampling  # noqa: E402

PAPER_NUM_CCAS = 14 * 5 * 5 * 5
# The 14 pairs of one target (docs/protocol.md#cca) over 8 networks: 0 ImageNet, 1
# RadImageNet, 2 and 3 two random inits, 4 T-ImageNet-freezeFalse, 5
# T-ImageNet-freezeTrue, 6 T-RadImageNet-freezeFalse, 7 T-RadImageNet-freezeTrue.
PAPER_PAIRS = (
    (0, 1), (0, 2), (1, 2), (2, 3), (4, 0), (4, 5), (4, 6),
    (4, 2), (5, 0), (5, 7), (6, 1), (6, 7), (6, 2), (7, 1),
)  # fmt: skip
NUM_NETWORKS = 8
REFERENCE = "numpy_float64_reference"  # its key among the interleaved passes


_RUN = {}  # what every record of this run shares (the allocator setting)


def _emit(**record):
    print(json.dumps({**record, **_RUN}), flush=True)


def _workload(name, count, points, channels, **extra):
    """The keys every row of one workload shares."""
    return dict(
        workload=name,
        count=count,
        device=_device(),
        points=points,
        channels=channels,
        **extra,
    )


def _device():
    device = jax.devices()[0]
    return f"{device.platform}:{device.device_kind} ({os.cpu_count()} cores)"


def _relu_activations(rng, leading, num_points, num_channels, latent):
    """ReLU 'activations' that share `latent` factors, with a few dead channels."""
    mixing = rng.standard_normal((*leading, latent.shape[-1], num_channels))
    mixing = mixing.astype(np.float32)
    noise = rng.standard_normal((*leading, num_points, num_channels), np.float32)
    bias = rng.standard_normal((*leading, 1, num_channels)).astype(np.float32)
    acts = np.maximum(latent @ mixing + noise + 0.5 * bias, 0)
    acts[..., :, :2] = 0  # dead channels, dropped by the svcca rule
    return acts


def _pairs(rng, count, num_points, num_channels):
    latent = rng.standard_normal((count, num_points, 8), np.float32)
    x = _relu_activations(rng, (count,), num_points, num_channels, latent)
    y = _relu_activations(rng, (count,), num_points, num_channels, latent)
    return x, y


def _time(fn, *args, repeats=1):
    """Best wall time of `repeats` calls after one warm-up call."""
    jax.block_until_ready(fn(*args))
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - start)
    return best


def _blocking(fn, *args):
    """``fn(*args)``, blocked on: for `timing.best_seconds_interleaved`."""
    return jax.block_until_ready(fn(*args))


def _timed_with_reference(passes, sides, count, repeats, common):
    """Kernel passes and the float64 reference on ``sides``, timed in turns.

    Emits the reference's row, extrapolated from ``len(sides)`` CCAs to ``count``.

    Returns:
      (best seconds of each pass, reference seconds for ``count`` CCAs, the
      reference's values on ``sides``).
    """
    reference = []

    def reference_pass():
        reference[:] = [cca.mean_cca_reference_numpy(x, y) for x, y in sides]

    best = timing.best_seconds_interleaved(
        {**passes, REFERENCE: reference_pass}, repeats
    )
    reference_seconds = best.pop(REFERENCE) / len(sides) * count
    _emit(
        impl=REFERENCE,
        seconds=reference_seconds,
        per_cca_ms=reference_seconds / count * 1e3,
        extrapolated_from=len(sides),
        **common,
    )
    return best, reference_seconds, np.asarray(reference)


def _time_calls(fn, fn_args, num_calls, repeats):
    """Best wall time of `num_calls` calls of `fn(*fn_args)` (see `_time`)."""
    return _time(lambda: [fn(*fn_args) for _ in range(num_calls)], repeats=repeats)


def _matmul_peak_gflops(size=4096):
    """float32 GFLOP/s of a large square XLA matmul: the compute bound used below.

    Random data at the kernel's precision (HIGHEST: no TF32 or bf16 passes on
    accelerators), so the bound is one the covariance products could reach.
    """
    a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32)
    matmul = jax.jit(lambda a: jnp.matmul(a, a, precision=jax.lax.Precision.HIGHEST))
    seconds = _time(matmul, a, repeats=3)
    return 2 * size**3 / seconds / 1e9


def _copy_bandwidth_gbs():
    """Memory bandwidth (read + write) where the kernel's data live.

    On the CPU a large preallocated NumPy copy; on an accelerator a jitted
    elementwise pass over device memory.
    """
    if jax.default_backend() != "cpu":
        src = jax.random.normal(jax.random.key(1), (64 * 2**20,), jnp.float32)
        seconds = _time(jax.jit(lambda a: a + 1), src, repeats=3)
        return 2 * src.nbytes / seconds / 1e9
    src = np.ones(64 * 2**20, np.float32)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    best = math.inf
    for _ in range(3):
        start = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - start)
    return 2 * src.nbytes / best / 1e9


def _covariance_cost(num_points, width):
    """FLOPs and bytes of one joint covariance as computed (full (N, D) Gram)."""
    flops = 2 * num_points * width**2
    # Read the inputs, write the centred stack, read it again in the Gram product.
    bytes_moved = 3 * 4 * num_points * width
    return flops, bytes_moved


def bench_paper(args, rng, peak_gflops, bandwidth_gbs):
    """The study's 1750 independent 64-channel CCAs."""
    num_points, channels, total = args.points, 64, args.num_ccas
    chunk = min(args.chunk, total)
    x_host, y_host = _pairs(rng, chunk, num_points, channels)
    x, y = jnp.asarray(x_host), jnp.asarray(y_host)
    covariance_only = jax.jit(cca.joint_covariance)
    num_calls = math.ceil(total / chunk)
    count = num_calls * chunk

    def run_all(fn):
        return [fn(x, y) for _ in range(num_calls)]

    def decompose_all(fn):
        return [fn(*blocks) for _ in range(num_calls)]

    cov_seconds = _time(lambda: run_all(covariance_only), repeats=args.repeats)
    blocks = jax.block_until_ready(covariance_only(x, y))
    kernels, passes = {}, {}
    for decomposition in args.decompositions:
        kernel = jax.jit(functools.partial(cca.mean_cca, decomposition=decomposition))
        # The rest of the kernel (masks, eigh, SVD) on precomputed covariance blocks.
        decompose = jax.jit(
            functools.partial(cca.mean_cca_from_covariance, decomposition=decomposition)
        )
        kernels[decomposition] = dict(
            kernel=kernel,
            decompose_seconds=_time(
                functools.partial(decompose_all, decompose), repeats=args.repeats
            ),
        )
        passes[decomposition] = functools.partial(_blocking, run_all, kernel)

    # Reference on a subset, extrapolated; timed in turns with the kernels.
    subset = min(args.reference_count, chunk)
    common = _workload("paper", count, num_points, channels)
    sides = [(x_host[i], y_host[i]) for i in range(subset)]
    best, reference_seconds, reference = _timed_with_reference(
        passes, sides, count, args.repeats, common
    )
    for decomposition, timed in kernels.items():
        timed["seconds"] = best[decomposition]

    flops, bytes_moved = _covariance_cost(num_points, 2 * channels)
    bound_seconds = count * max(
        flops / (peak_gflops * 1e9), bytes_moved / (bandwidth_gbs * 1e9)
    )
    for decomposition, timed in kernels.items():
        values = np.asarray(timed["kernel"](x, y))[:subset]
        seconds = timed["seconds"]
        _emit(
            impl=_impl("jax_mean_cca_float32", decomposition),
            seconds=seconds,
            per_cca_ms=seconds / count * 1e3,
            speedup=reference_seconds / seconds,
            chunk=chunk,
            max_abs_error_vs_reference=float(np.max(np.abs(values - reference))),
            covariance_gflops=count * flops / seconds / 1e9,
            decomposition=decomposition,
            **common,
        )
        _emit(
            impl=_impl("jax_decompositions_only", decomposition),
            seconds=timed["decompose_seconds"],
            per_cca_ms=timed["decompose_seconds"] / count * 1e3,
            note="mean_cca_from_covariance on precomputed blocks: masks, eigh, SVD",
            decomposition=decomposition,
            **common,
        )
    _emit(
        impl="jax_joint_covariance_only",
        seconds=cov_seconds,
        per_cca_ms=cov_seconds / count * 1e3,
        covariance_gflop_per_cca=flops / 1e9,
        covariance_mb_per_cca=bytes_moved / 1e6,
        gflops=count * flops / cov_seconds / 1e9,
        matmul_peak_gflops=peak_gflops,
        copy_bandwidth_gbs=bandwidth_gbs,
        bound_seconds=bound_seconds,
        fraction_of_bound=bound_seconds / cov_seconds,
        **common,
    )
    return dict(
        x=x,
        y=y,
        reference=reference,
        per_cca_seconds=reference_seconds / count,
        num_calls=num_calls,
        chunk=chunk,
    )


def _impl(name, decomposition):
    """Row name: the default decomposition keeps the plain name of earlier runs."""
    return name if decomposition == "linalg" else f"{name}_{decomposition}"


def bench_shared_sample(args, rng):
    """The analysis's own call (`pairs.pairwise_mean_cca`): one (N, 8 x 64) Gram per
    (fold, layer, repetition) serving all 14 pairs, each network whitened once.

    The float64 reference runs on the same samples' pairs, in turns with the kernel
    (one row per decomposition of `--decompositions`).
    """
    num_points, channels = args.points, 64
    groups_total = math.ceil(args.num_ccas / len(PAPER_PAIRS))
    chunk = min(groups_total, args.shared_repetitions)
    latent = rng.standard_normal((chunk, num_points, 8), np.float32)
    nets = _relu_activations(rng, (chunk,), num_points, NUM_NETWORKS * channels, latent)
    nets = nets.reshape(chunk, num_points, NUM_NETWORKS, channels)
    # (groups, nets, N, 64): the layout jaxtransfer.analysis.pairs samples into.
    host_nets = np.ascontiguousarray(nets.transpose(0, 2, 1, 3))
    nets = jnp.asarray(host_nets)
    first = jnp.array([p[0] for p in PAPER_PAIRS])
    second = jnp.array([p[1] for p in PAPER_PAIRS])
    shared = {
        decomposition: functools.partial(
            pairs.pairwise_mean_cca,
            first=first,
            second=second,
            epsilon=1e-12,
            decomposition=decomposition,
        )  # .values (groups, 14)
        for decomposition in args.decompositions
    }
    num_calls = math.ceil(groups_total / chunk)
    count = num_calls * chunk * len(PAPER_PAIRS)

    def kernel_pass(kernel):
        return [_blocking(kernel, nets) for _ in range(num_calls)]

    passes = {d: functools.partial(kernel_pass, kernel) for d, kernel in shared.items()}
    # The reference on the first `subset` (group, pair) CCAs of a call.
    subset = min(args.reference_count, chunk * len(PAPER_PAIRS))
    sides = [
        (host_nets[g, a], host_nets[g, b]) for g in range(chunk) for a, b in PAPER_PAIRS
    ][:subset]
    common = _workload("paper_shared_sample", count, num_points, channels)
    best, reference_seconds, reference = _timed_with_reference(
        passes, sides, count, args.repeats, common
    )
    for decomposition, kernel in shared.items():
        values = np.asarray(kernel(nets).values).reshape(-1)[:subset]
        _emit(
            impl=_impl("jax_mean_cca_float32_shared_sample", decomposition),
            decomposition=decomposition,
            seconds=best[decomposition],
            per_cca_ms=best[decomposition] / count * 1e3,
            speedup=reference_seconds / best[decomposition],
            max_abs_error_vs_reference=float(np.max(np.abs(values - reference))),
            repetitions_per_call=chunk,
            **common,
        )


def bench_full_width(args, rng):
    """A few CCAs over all channels of a wide layer."""
    num_points, channels, count = args.points, args.full_width, args.full_width_count
    x_host, y_host = _pairs(rng, count, num_points, channels)
    x, y = jnp.asarray(x_host), jnp.asarray(y_host)
    kernel = jax.jit(cca.mean_cca)
    seconds = _time(kernel, x, y)
    start = time.perf_counter()
    reference = cca.mean_cca_reference_numpy(x_host[0], y_host[0])
    reference_seconds = (time.perf_counter() - start) * count
    error = abs(float(kernel(x, y)[0]) - reference)
    common = _workload("full_width", count, num_points, channels)
    _emit(
        impl=REFERENCE,
        seconds=reference_seconds,
        per_cca_ms=reference_seconds / count * 1e3,
        extrapolated_from=1,
        **common,
    )
    _emit(
        impl="jax_mean_cca_float32",
        seconds=seconds,
        per_cca_ms=seconds / count * 1e3,
        speedup=reference_seconds / seconds,
        max_abs_error_vs_reference=error,
        decomposition="linalg",
        **common,
    )


# Gram-product precisions (`cca.covariance(precision=...)`) the benchmark can time.
GRAM_PRECISIONS = {
    "highest": jax.lax.Precision.HIGHEST,
    "bf16_6x": jax.lax.DotAlgorithmPreset.BF16_BF16_F32_X6,
    "bf16_3x": jax.lax.DotAlgorithmPreset.BF16_BF16_F32_X3,
    "tf32_3x": jax.lax.DotAlgorithmPreset.TF32_TF32_F32_X3,
}
_CPU_NOTE = "XLA:CPU computes the bf16 presets in float32: same numbers as highest"


def bench_gram_precisions(args, paper):
    """The paper workload with faster Gram-product algorithms (GPU tensor cores).

    The kernel is `mean_cca_from_covariance` on `joint_covariance(x, y, precision)`,
    i.e. `mean_cca` with only the Gram product's precision changed, on the paper
    workload's data (`paper`, from `bench_paper`); the error is measured against
    the float64 reference values of its first pairs.
    """
    x, y, reference = paper["x"], paper["y"], paper["reference"]
    num_calls, chunk = paper["num_calls"], paper["chunk"]
    subset, count = len(reference), num_calls * chunk
    common = _workload("paper", count, args.points, 64, chunk=chunk)
    if jax.default_backend() == "cpu":
        common["note"] = _CPU_NOTE
    for name in args.gram_precisions:
        if name == "highest":
            continue  # the paper workload's own rows
        precision = GRAM_PRECISIONS[name]
        covariance = jax.jit(
            functools.partial(cca.joint_covariance, precision=precision)
        )
        seconds = _time_calls(covariance, (x, y), num_calls, args.repeats)
        _emit(
            impl=f"jax_joint_covariance_only_gram_{name}",
            seconds=seconds,
            per_cca_ms=seconds / count * 1e3,
            gram_precision=name,
            **common,
        )
        for decomposition in args.decompositions:

            @jax.jit
            def kernel(x, y, precision=precision, decomposition=decomposition):
                return cca.mean_cca_from_covariance(
                    *cca.joint_covariance(x, y, precision),
                    decomposition=decomposition,
                )

            seconds = _time_calls(kernel, (x, y), num_calls, args.repeats)
            values = np.asarray(kernel(x, y))[:subset]
            _emit(
                impl=_impl(f"jax_mean_cca_float32_gram_{name}", decomposition),
                seconds=seconds,
                per_cca_ms=seconds / count * 1e3,
                speedup=paper["per_cca_seconds"] * count / seconds,
                max_abs_error_vs_reference=float(np.max(np.abs(values - reference))),
                gram_precision=name,
                decomposition=decomposition,
                **common,
            )


def bench_full_depth_pairs(args, rng):
    """The full-depth analysis's decompositions: 14 pairs of 8 networks at one tap.

    From streamed sums (`pairs.mean_cca_from_sums`, each network whitened once and
    shared by its pairs) against whitening both sides of every pair
    (`cca.mean_cca_from_covariance` on the same covariances), same run; then the
    shared form with each other method of `--decompositions` against jnp.linalg's.
    """
    channels, num_points = args.full_depth_width, 3 * args.full_depth_width
    latent = rng.standard_normal((1, num_points, channels), np.float32)
    acts = np.maximum(
        rng.standard_normal((NUM_NETWORKS, num_points, channels), np.float32) + latent,
        0,
    )
    first = jnp.array([p[0] for p in PAPER_PAIRS])
    second = jnp.array([p[1] for p in PAPER_PAIRS])
    acc = dict(
        shift=jnp.zeros((NUM_NETWORKS, channels)),
        count=jnp.zeros(()),
        total=jnp.zeros((NUM_NETWORKS, channels)),
        gram=jnp.zeros((NUM_NETWORKS, channels, channels)),
        cross=jnp.zeros((len(PAPER_PAIRS), channels, channels)),
    )
    acc = pairs._accumulate(acc, jnp.asarray(acts), jnp.ones(num_points), first, second)

    @jax.jit
    def per_pair_whitening(acc):
        sigma_self, sigma_xy = pairs._covariances_from_sums(acc, first, second)
        return cca.mean_cca_from_covariance(
            sigma_self[first], sigma_xy, sigma_self[second], 1e-12
        )

    shared = functools.partial(pairs.mean_cca_from_sums, epsilon=1e-12)
    count = len(PAPER_PAIRS)
    common = _workload(
        "full_depth_pairs", count, num_points, channels, networks=NUM_NETWORKS
    )
    seconds = _time(per_pair_whitening, acc)
    _emit(
        impl="jax_whiten_every_pair_side",
        seconds=seconds,
        per_cca_ms=seconds / count * 1e3,
        **common,
    )
    shared_seconds = _time(lambda acc: shared(acc, first, second), acc)
    values = shared(acc, first, second)
    _emit(
        impl="jax_whiten_each_network_once",
        seconds=shared_seconds,
        per_cca_ms=shared_seconds / count * 1e3,
        speedup=seconds / shared_seconds,
        speedup_note="against whitening every pair side",
        max_abs_difference=float(jnp.max(jnp.abs(values - per_pair_whitening(acc)))),
        **common,
    )
    for decomposition in args.decompositions:
        if decomposition == "linalg":
            continue
        method = functools.partial(shared, decomposition=decomposition)
        method_seconds = _time(
            lambda acc, method=method: method(acc, first, second), acc
        )
        difference = jnp.max(jnp.abs(method(acc, first, second) - values))
        _emit(
            impl=_impl("jax_whiten_each_network_once", decomposition),
            decomposition=decomposition,
            seconds=method_seconds,
            per_cca_ms=method_seconds / count * 1e3,
            speedup=shared_seconds / method_seconds,
            speedup_note="against the same call with jnp.linalg",
            max_abs_difference=float(difference),
            **common,
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument(
        "--shared-sample",
        action="store_true",
        help="also time one shared sample per group",
    )
    parser.add_argument("--chunk", type=int, default=50, help="pairs per kernel call")
    parser.add_argument(
        "--shared-repetitions",
        type=int,
        default=sampling.PAPER_REPETITIONS,
        help="shared samples per call of the shared-sample workload (default: the "
        "analysis's, one fold and layer)",
    )
    parser.add_argument(
        "--reference-count", type=int, default=30, help="pairs timed with the reference"
    )
    parser.add_argument(
        "--repeats", type=int, default=2, help="timed passes (best is reported)"
    )
    parser.add_argument(
        "--decompositions",
        default="linalg",
        help="comma-separated cca.DECOMPOSITIONS for the paper, shared-sample and "
        "full-depth workloads (full width always uses linalg)",
    )
    parser.add_argument(
        "--gram-precisions",
        default="highest",
        help="comma-separated Gram-product precisions for the paper workload, of "
        f"{tuple(GRAM_PRECISIONS)}; the bf16/tf32 presets are for GPUs",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.decompositions = args.decompositions.split(",")
    for decomposition in args.decompositions:
        try:
            cca.check_decomposition(decomposition, "--decompositions")
        except ValueError as error:
            parser.error(str(error))
    args.gram_precisions = args.gram_precisions.split(",")
    for name in args.gram_precisions:
        if name not in GRAM_PRECISIONS:
            parser.error(
                f"--gram-precisions={name!r}: expected one of {tuple(GRAM_PRECISIONS)}"
            )
        if name.startswith("tf32") and jax.default_backend() == "cpu":
            parser.error(f"--gram-precisions={name!r}: XLA:CPU has no tf32 products")
    _RUN.update(timing.reuse_freed_memory())
    args.points, args.num_ccas = 10_000, PAPER_NUM_CCAS
    args.full_width, args.full_width_count = 2048, 2
    args.full_depth_width = 1024
    args.peak_size = 4096
    if args.quick:
        args.peak_size = 1024
        args.points, args.num_ccas, args.chunk = 1000, 20, 10
        args.reference_count, args.repeats = 5, 1
        args.full_width, args.full_width_count = 256, 2
        args.full_depth_width = 64
    rng = np.random.default_rng(args.seed)
    peak_gflops = _matmul_peak_gflops(args.peak_size)
    bandwidth_gbs = _copy_bandwidth_gbs()
    paper = bench_paper(args, rng, peak_gflops, bandwidth_gbs)
    bench_gram_precisions(args, paper)
    if args.shared_sample:
        bench_shared_sample(args, rng)
    bench_full_width(args, rng)
    bench_full_depth_pairs(args, rng)


if __name__ == "__main__":
    main()
