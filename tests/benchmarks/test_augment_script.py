"""benchmarks/augment.py runs end to end (small sizes) with every row it promises.

A smoke test, so GPU time is not spent on a broken script; speeds are not checked.
"""

import json

import benchmark_script


def test_quick_run_times_jaxtransfer_and_both_keras_paths(tmp_path):
    output = tmp_path / "augment.jsonl"
    rows = benchmark_script.rows(
        "augment.py",
        *("--size", "24", "--batch", "4", "--iters", "2"),
        *("--keras-iters", "1", "--source-size", "48", "--output", str(output)),
    )
    assert [row["impl"] for row in rows] == ["jaxtransfer", "keras", "keras_from_jpeg"]
    for row in rows:
        assert row["images_per_s"] > 0 and row["size"] == 24 and row["batch"] == 4
    for row in rows[1:]:
        assert (
            row["jaxtransfer_speedup"] == rows[0]["images_per_s"] / row["images_per_s"]
        )
    assert rows[2]["source_size"] == 48
    written = [json.loads(line) for line in output.read_text().splitlines()]
    assert written == rows
