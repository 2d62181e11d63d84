"""Bring your own target: class folders or a CSV, through the same prepare path."""

import collections
import csv
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds
import tfds_helpers as h
from PIL import Image

from configs import byo_example
from jaxtransfer import main
from jaxtransfer.data import builders, byo, decode, loader, prepare, sources, splits
from jaxtransfer.data.synthetic import draw_image

CLASSES = ("cyst", "lesion", "normal")


def _write_tree(root, per_class=(7, 9, 26), seed=0):
    """<root>/<class>/[sub/]img_<i>.png|jpg; returns {path: class}."""
    rng = np.random.default_rng(seed)
    truth = {}
    for c, (name, count) in enumerate(zip(CLASSES, per_class)):
        for i in range(count):
            sub = "sub/" if i % 3 == 0 else ""
            suffix = "jpg" if i % 2 else "png"
            path = f"{name}/{sub}img_{i}.{suffix}"
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            channels = 3 if i % 2 else 1
            Image.fromarray(draw_image(c, 3, 20, rng, channels)).save(root / path)
            truth[path] = name
    (root / "normal" / ".DS_Store").write_text("litter")
    return truth


def _write_csv(root, truth, groups):
    path = root / "labels.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "class", "group"] if groups else ["path", "class"])
        for i, (image, name) in enumerate(sorted(truth.items())):
            writer.writerow(
                [image, name, f"p{i // 2:03d}"] if groups else [image, name]
            )
    return path


def test_folder_tree_reads_and_prepares(tmp_path, capsys):
    raw = tmp_path / "raw"
    truth = _write_tree(raw)
    examples = byo.read_byo(raw)
    assert {e.path: e.class_name for e in examples} == truth
    assert byo.class_names(examples) == CLASSES
    assert all(e.label == CLASSES.index(e.class_name) for e in examples)
    assert (
        _run(
            "--dataset",
            "byo",
            "--manual_dir",
            raw,
            "--data_dir",
            tmp_path / "out",
            "--size",
            24,
        )
        == 0
    )
    assert "byo size24" in capsys.readouterr().out
    read = tfds.builder_from_directory(
        str(builders.prepared_dir(tmp_path / "out", "byo", 24))
    )
    assert read.info.features["label"].names == list(CLASSES)
    folds = byo.make_byo_folds(examples)
    splits.check_folds(folds, len(examples), labels=[e.label for e in examples])
    for fold in folds:
        got = h.records(read.as_data_source(f"fold{fold.number}_val"))
        np.testing.assert_array_equal([r["index"] for r in got], fold.val)
        for r in got:
            assert truth[r["path"]] == r["class_name"] and r["group"] == ""
            np.testing.assert_array_equal(
                r["image"], decode.load_image(raw / r["path"], 24).image
            )
    arrays = loader.load_split(read, "fold3_train")
    assert sorted(arrays.indices) == sorted(folds[2].train)
    # Another BYO target into the same data_dir is refused, not silently reused.
    other = tmp_path / "other"
    _write_tree(other, seed=1)
    assert (
        _run(
            "--dataset",
            "byo",
            "--manual_dir",
            other,
            "--data_dir",
            tmp_path / "out",
            "--size",
            24,
        )
        == 1
    )
    assert "use another --data_dir" in capsys.readouterr().err


def test_csv_with_groups_gives_grouped_folds(tmp_path):
    raw = tmp_path / "raw"
    truth = _write_tree(raw, per_class=(14, 14, 14))
    csv_file = _write_csv(raw, truth, groups=True)
    examples = byo.read_byo(raw, csv_file)
    assert byo.is_grouped(examples)
    folds = byo.make_byo_folds(examples)
    groups = np.asarray([e.group for e in examples])
    splits.check_folds(folds, len(examples), groups=groups)
    assert (
        _run(
            "--dataset",
            "byo",
            "--manual_dir",
            raw,
            "--csv",
            csv_file,
            "--data_dir",
            tmp_path / "out",
            "--size",
            16,
        )
        == 0
    )
    read = tfds.builder_from_directory(
        str(builders.prepared_dir(tmp_path / "out", "byo", 16))
    )
    for fold in folds:
        parts = {}
        for part in ("train", "val", "test"):
            split = builders.split_expression(f"fold{fold.number}_{part}")
            records = h.records(read.as_data_source(split))
            assert sorted(r["index"] for r in records) == sorted(getattr(fold, part))
            parts[part] = {r["group"] for r in records}
        assert not parts["train"] & parts["val"]
        assert not parts["train"] & parts["test"]
        assert not parts["val"] & parts["test"]
    counts = collections.Counter(
        r["class_name"] for r in h.records(read.as_data_source("all"))
    )
    assert counts == collections.Counter(truth.values())


def test_csv_without_groups_is_stratified(tmp_path):
    raw = tmp_path / "raw"
    truth = _write_tree(raw, per_class=(10, 10, 25))
    examples = byo.read_byo(raw, _write_csv(raw, truth, groups=False))
    assert not byo.is_grouped(examples)
    folds = byo.make_byo_folds(examples)
    expected = splits.make_folds([e.label for e in examples])
    for got, want in zip(folds, expected):
        np.testing.assert_array_equal(got.val, want.val)


def _run(*argv):
    """The command's exit status."""
    try:
        return prepare.main([str(a) for a in argv])
    except SystemExit as stop:
        return stop.code


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([["path", "label"], ["a.png", "x"]], "lacks columns"),
        ([["path", "class"], ["missing.png", "x"], ["other.png", "y"]], "missing"),
        ([["path", "class"]], "no rows"),
    ],
)
@pytest.mark.bad_input
def test_bad_csv_is_a_layout_error(tmp_path, capsys, rows, message):
    csv_file = tmp_path / "bad.csv"
    with open(csv_file, "w", newline="") as f:
        csv.writer(f).writerows(rows)
    with pytest.raises(sources.LayoutError, match=message):
        byo.read_csv(csv_file, tmp_path)
    assert (
        _run(
            "--dataset",
            "byo",
            "--manual_dir",
            tmp_path,
            "--csv",
            csv_file,
            "--data_dir",
            tmp_path / "out",
        )
        == 1
    )
    assert "Expected" in capsys.readouterr().err or message == "no rows"


@pytest.mark.bad_input
def test_too_few_groups_or_examples_are_rejected(tmp_path):
    raw = tmp_path / "raw"
    truth = _write_tree(raw, per_class=(4, 9, 9))
    with pytest.raises(
        sources.LayoutError,
        match="has 4; the paper's stratified folds need at least 5 ",
    ):
        byo.make_byo_folds(byo.read_byo(raw))
    (raw / "cyst" / "extra.png").write_bytes(
        (raw / "cyst" / "sub/img_0.png").read_bytes()
    )
    with pytest.raises(
        sources.LayoutError, match=r"the largest class, '\w+', has 9 images"
    ):
        byo.make_byo_folds(byo.read_byo(raw))
    with open(raw / "few.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "class", "group"])
        for i, (path, name) in enumerate(sorted(truth.items())):
            writer.writerow([path, name, f"p{i % 6}"])
    with pytest.raises(sources.LayoutError, match="6 groups"):
        byo.make_byo_folds(byo.read_byo(raw, raw / "few.csv"))


@pytest.mark.bad_input
def test_one_class_folder_is_rejected(tmp_path):
    (tmp_path / "only").mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "only" / "a.png")
    with pytest.raises(sources.LayoutError, match="1 class folder"):
        byo.read_folders(tmp_path)


def test_example_config_prepares_and_runs_the_grid(tmp_path):
    config = byo_example.get_config()
    assert config.data.name == "byo"
    config.data.manual_dir = str(tmp_path / "raw")
    config.data.data_dir = str(tmp_path / "out")
    config.data.size = 16
    _write_tree(Path(config.data.manual_dir))
    argv = [
        "--dataset",
        config.data.name,
        "--manual_dir",
        config.data.manual_dir,
        "--data_dir",
        config.data.data_dir,
        "--size",
        config.data.size,
    ]
    if config.data.csv:
        argv += ["--csv", config.data.csv]
    assert _run(*argv) == 0
    path = builders.prepared_dir(config.data.data_dir, "byo", config.data.size)
    arrays = loader.load_split(path, "fold1_train")
    assert arrays.images.shape[1:] == (16, 16, 3)
    # The same config runs the grid (random init alone: no weights here).
    config.model.name = "tiny"
    config.data.size = 32
    assert _run(*argv[:-1], 32) == 0
    config.grid.sources = ("random",)
    config.grid.folds = (1,)
    config.train.num_epochs = 1
    config.analysis.enabled = False
    config.host.reuse_freed_memory = False
    summary = main.run(config, tmp_path / "run")
    assert list(summary["AUC"]) == ["random-freezeFalse"]
    assert (
        (tmp_path / "run" / "AUC.csv")
        .read_text()
        .startswith("target,source,freeze,fold,AUC\nbyo,random,freezeFalse,fold1,")
    )
