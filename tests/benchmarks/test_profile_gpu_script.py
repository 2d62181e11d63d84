"""benchmarks/profile_gpu.py runs end to end and sorts real GPU kernel names by kind.

The script is for GPUs; on the CPU it runs the same code and finds no GPU kernels.
The kernel names below are the ones cuDNN, cuBLAS, XLA and PyTorch launched in the
H100 profile of benchmarks/RESULTS.md.
"""

import gzip
import json
import sys

import benchmark_script
import pytest

sys.path.insert(0, str(benchmark_script.ROOT / "benchmarks"))
import profile_gpu  # noqa: E402


@pytest.mark.parametrize(
    "name, kind",
    [
        (
            "sm90_xmma_wgrad_indexed_implicit_gemm_bf16bf16_bf16f32_f32_nhwckrsc_nhwc_"
            "tilesize128x128x64_warpgroupsize1x1x1_g1_execute_segment_k_on_kernel__5x_cudnn",
            "conv",
        ),
        ("input_convert_reduce_fusion_21", "reduce"),  # 'convert' is no convolution
        ("loop_convert_fusion_3", "elementwise"),
        ("nvjet_sm90_tst_128x128_64x6_2x1_v_bz_TNT", "matmul"),
        ("gemm_fusion_dot_general_209", "matmul"),
        (
            "void at::native::batch_norm_collect_statistics_channels_last_kernel<"
            "at::native::Var, c10::BFloat16, float, 4>(c10::BFloat16 const*)",
            "batchnorm",
        ),
        (
            "void at::native::(anonymous namespace)::max_pool_backward_nhwc<"
            "c10::BFloat16, float>(c10::BFloat16 const*, long const*)",
            "other",
        ),
        ("Memset 3", "other"),
    ],
)
def test_kernel_kind(name, kind):
    assert profile_gpu.kernel_kind(name) == kind


def test_runs_on_the_cpu_and_keeps_the_trace(tmp_path):
    trace = tmp_path / "trace.json.gz"
    rows = benchmark_script.rows(
        "profile_gpu.py",
        *("--impl", "jaxtransfer", "--model", "tiny", "--size", "32"),
        *("--batch", "2", "--steps", "2", "--trace-out", str(trace)),
    )
    assert rows[0]["what"] == "step" and rows[0]["wall_ms"] > 0
    assert rows[0]["kernels"] == 0 and len(rows) == 1  # no GPU, no kernels
    with gzip.open(trace, "rt") as f:
        events = json.load(f)["traceEvents"]
    assert any(e.get("ph") == "X" for e in events)  # the CPU side was traced
