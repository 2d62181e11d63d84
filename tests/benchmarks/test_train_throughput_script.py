"""benchmarks/train_throughput.py runs end to end on the tiny model and reports what
the script promises. A smoke test, so GPU time is not spent on a broken script;
speeds are not checked.
"""

import json

import benchmark_script

KEYS = {"impl", "size", "batch", "dtype", "members", "images_per_s", "device"}


def _run(tmp_path, *options):
    output = tmp_path / "rows.jsonl"
    rows = benchmark_script.rows(
        "train_throughput.py",
        *["--model", "tiny", "--sizes", "32", "--batch", "2", "--iters", "1"],
        *["--output", str(output), *options],
    )
    assert [json.loads(line) for line in output.read_text().splitlines()] == rows
    return rows


def test_every_jaxtransfer_row_and_skipped_twins(tmp_path):
    rows = _run(
        tmp_path,
        *["--dtypes", "bfloat16", "--members", "2", "--flax-batchnorm"],
        *["--impls", "jaxtransfer,torch_eager,keras", "--steps-per-sync", "2"],
    )
    timed = [row for row in rows if row["impl"] == "jaxtransfer"]
    for row in timed:
        assert KEYS <= set(row), row
        assert row["steps_per_sync"] == 2
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
