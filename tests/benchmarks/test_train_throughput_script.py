"""benchmarks/train_throughput.py runs end to end on the tiny model and reports what
the issue asks. A smoke test, so a GPU lease is not spent on a broken script;
speeds are not checked.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
KEYS = {"impl", "size", "batch", "dtype", "members", "images_per_s", "device"}


def _run(tmp_path, *options):
    output = tmp_path / "rows.jsonl"
    result = subprocess.run(
        [sys.executable, "benchmarks/train_throughput.py", "--model", "tiny"]
        + ["--sizes", "32", "--batch", "2", "--iters", "1", "--output", str(output)]
        + list(options),
        cwd=ROOT,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [json.loads(line) for line in output.read_text().splitlines()] == rows
    return rows


def test_every_jaxtransfer_row_and_skipped_twins(tmp_path):
    rows = _run(
        tmp_path,
        *["--dtypes", "bfloat16", "--members", "2", "--flax-batchnorm"],
        *["--impls", "jaxtransfer,torch_eager,keras"],
    )
    timed = [row for row in rows if row["impl"] == "jaxtransfer"]
    for row in timed:
        assert KEYS <= set(row), row
        assert row["images_per_s"] > 0 and row["compiled_bytes_per_member"] > 0
        assert (row["model"], row["dtype"], row["size"]) == ("tiny", "bfloat16", 32)
    found = [(r["members"], r["augment"], r["batchnorm"]) for r in timed]
    assert found == [
        (1, False, "closed_form_vjp"),
        (1, False, "flax"),
        (1, True, "closed_form_vjp"),
        (2, True, "closed_form_vjp"),
    ]
    # The tiny model has no PyTorch or Keras twin: said, not measured.
    assert {r["impl"] for r in rows if "skipped" in r} == {"torch_eager", "keras"}


def test_memory_only_with_every_step_option(tmp_path):
    rows = _run(
        tmp_path,
        *["--dtypes", "float32", "--members", "3", "--memory-only"],
        *["--remat", "--ensemble-map", "--pointwise-as-conv"],
    )
    [row] = rows
    assert row["members"] == 3 and row["compiled_bytes_per_member"] > 0
    assert (row["remat"], row["ensemble_vectorize"], row["pointwise"]) == (
        True,
        False,
        "conv",
    )
