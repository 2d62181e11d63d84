"""benchmarks/cca.py runs end to end (small sizes) and reports what the issue asks.

A smoke test, so GPU time is not spent on a broken script; speeds are not checked.
"""

import benchmark_script
import pytest


def test_quick_run_reports_every_kernel_with_its_accuracy():
    rows = benchmark_script.rows(
        "cca.py",
        "--quick",
        "--shared-sample",
        "--decompositions",
        "linalg,jacobi,cholesky",
        "--gram-precisions",
        "highest,bf16_3x",
    )
    for row in rows:
        assert {"impl", "workload", "count", "seconds", "device"} <= set(row), row
        assert row["seconds"] > 0
    found = {(row["workload"], row["impl"]) for row in rows}
    assert found == {
        ("paper", "numpy_float64_reference"),
        ("paper", "jax_mean_cca_float32"),
        ("paper", "jax_mean_cca_float32_jacobi"),
        ("paper", "jax_decompositions_only"),
        ("paper", "jax_decompositions_only_jacobi"),
        ("paper", "jax_joint_covariance_only"),
        ("paper", "jax_joint_covariance_only_gram_bf16_3x"),
        ("paper", "jax_mean_cca_float32_gram_bf16_3x"),
        ("paper", "jax_mean_cca_float32_gram_bf16_3x_jacobi"),
        ("paper", "jax_mean_cca_float32_cholesky"),
        ("paper", "jax_decompositions_only_cholesky"),
        ("paper", "jax_mean_cca_float32_gram_bf16_3x_cholesky"),
        ("paper_shared_sample", "numpy_float64_reference"),
        ("paper_shared_sample", "jax_mean_cca_float32_shared_sample"),
        ("paper_shared_sample", "jax_mean_cca_float32_shared_sample_jacobi"),
        ("paper_shared_sample", "jax_mean_cca_float32_shared_sample_cholesky"),
        ("full_width", "numpy_float64_reference"),
        ("full_width", "jax_mean_cca_float32"),
        ("full_depth_pairs", "jax_whiten_every_pair_side"),
        ("full_depth_pairs", "jax_whiten_each_network_once"),
        ("full_depth_pairs", "jax_whiten_each_network_once_jacobi"),
        ("full_depth_pairs", "jax_whiten_each_network_once_cholesky"),
    }
    for row in rows:
        if row["impl"].startswith("jax_mean_cca"):
            assert row["max_abs_error_vs_reference"] < 1e-4, row
        if row["impl"].startswith("jax_whiten_each_network_once"):
            assert row["max_abs_difference"] < 1e-5, row


@pytest.mark.parametrize(
    "option, message",
    [
        (
            ["--decompositions", "qr"],
            "--decompositions='qr': expected one of ('linalg', 'jacobi', 'cholesky')",
        ),
        (
            ["--gram-precisions", "fp8"],
            "--gram-precisions='fp8': expected one of ('highest', 'bf16_6x', "
            "'bf16_3x', 'tf32_3x')",
        ),
        (
            ["--gram-precisions", "tf32_3x"],
            "--gram-precisions='tf32_3x': XLA:CPU has no tf32 products",
        ),
    ],
)
def test_unknown_options_are_refused(option, message):
    result = benchmark_script.run("cca.py", "--quick", *option, timeout=120)
    assert result.returncode == 2
    assert message in result.stderr
