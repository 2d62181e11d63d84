"""benchmarks/grid.py runs a small grid end to end in both layouts and reports
what it promises. A smoke test: speeds are not checked."""

import benchmark_script

KEYS = {
    "layout", "devices", "members", "mesh", "wall_s", "compile_s", "train_s",
    "eval_s", "checkpoint_s", "input_s", "idle_s", "images_per_s",
    "collective_bytes_per_step",
}  # fmt: skip


def test_both_layouts_train_the_same_grid_and_members_move_far_less():
    rows = benchmark_script.rows(
        "grid.py",
        *["--devices", "2", "--folds", "1", "--images", "120", "--size", "32"],
        *["--epochs", "1", "--batch", "16", "--freeze", "False"],
        *["--sources", "ImageNet,RadImageNet"],
    )
    members, replicated = rows
    for row in rows:
        assert KEYS <= set(row), row
        assert row["members"] == 2 and row["devices"] == 2
        parts = sum(row[f"{p}_s"] for p in ("compile", "train", "eval", "input"))
        assert 0 < parts + row["checkpoint_s"] <= row["wall_s"] + 0.05
    assert (members["layout"], replicated["layout"]) == ("members", "replicated")
    # Two runs of one architecture and stage: one group, a device each, or both
    # on every device with each batch split in two.
    assert members["mesh"] == [{"members": 2, "data": 1}]
    assert replicated["mesh"] == [{"members": 1, "data": 2}]
    assert members["image_steps"] == replicated["image_steps"] > 0
    # Spread over devices, members exchange a few metric floats per step; on every
    # device, each member's gradients are all-reduced.
    assert members["collective_bytes_per_step"] < 1024
    assert replicated["collective_bytes_per_step"] > 100 * 1024
