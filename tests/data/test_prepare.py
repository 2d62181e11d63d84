"""The prepare command: summary, reuse, layout errors, interruption, paper folds."""

import csv
import os
import signal
import subprocess
import sys
import textwrap
import time

import command_line
import numpy as np
import pytest
import tensorflow_datasets as tfds
import tfds_helpers as h

from jaxtransfer.data import (
    builders,
    decode,
    loader,
    prepare,
    sources,
    splits,
    synthetic,
)


def _run(*argv):
    """The command's exit status."""
    try:
        return prepare.main([str(a) for a in argv])
    except SystemExit as stop:
        return stop.code


@pytest.fixture(scope="module")
def knee_raw(tmp_path_factory):
    raw = tmp_path_factory.mktemp("knee_raw")
    return raw, synthetic.write_knee(raw)


def test_prepare_prints_fold_counts_and_reuses(knee_raw, tmp_path, capsys, monkeypatch):
    raw, written = knee_raw
    assert (
        _run(
            "--dataset",
            "knee",
            "--manual_dir",
            raw,
            "--data_dir",
            tmp_path,
            "--size",
            32,
            "--no_progress",
        )
        == 0
    )
    out = capsys.readouterr().out
    examples = sources.read_knee(raw)
    folds = splits.make_target_folds("knee", examples)
    for fold in folds:
        for part, indices in fold.parts().items():
            counts = [
                sum(examples[i].class_name == c for i in indices)
                for c in sources.KNEE_CLASSES
            ]
            row = f"fold{fold.number}_{part:<7}" + "".join(f"{c:>11}" for c in counts)
            assert row + f"{sum(counts):>8}" in out
    assert "1 slices have no MRNet label" in out  # synthetic writes one unlabelled
    assert "truncated images (decoded as far as they go): 0" in out
    # A second call reuses the data: the raw download is not even read.
    monkeypatch.setattr(sources, "read_target", pytest.fail)
    start = time.perf_counter()
    assert (
        _run(
            "--dataset",
            "knee",
            "--manual_dir",
            raw,
            "--data_dir",
            tmp_path,
            "--size",
            32,
        )
        == 0
    )
    assert time.perf_counter() - start < 5
    assert "Reusing the prepared dataset" in capsys.readouterr().out


@pytest.mark.bad_input
def test_wrong_layout_names_the_expected_one(tmp_path, capsys):
    synthetic.write_breast(tmp_path / "raw")
    assert (
        _run(
            "--dataset",
            "chest",
            "--manual_dir",
            tmp_path / "raw",
            "--data_dir",
            tmp_path / "out",
            "--size",
            32,
        )
        == 1
    )
    err = capsys.readouterr().err
    assert "Expected layout" in err and sources.CHEST_LAYOUT in err
    assert not (tmp_path / "out").exists()  # no empty dataset folders left behind


def test_failed_prepare_keeps_what_the_data_dir_held_before(tmp_path, capsys):
    synthetic.write_breast(tmp_path / "raw")
    out = tmp_path / "out"
    (out / "downloads").mkdir(parents=True)
    (out / "chest" / ".config").mkdir(parents=True)
    (out / "chest" / ".config" / "metadata.json").write_text("{}")
    (out / "chest" / "size64").mkdir()  # another size, prepared before
    args = ("--dataset", "chest", "--manual_dir", tmp_path / "raw", "--size", 32)
    assert _run(*args, "--data_dir", out) == 1
    assert "Expected layout" in capsys.readouterr().err
    assert (out / "chest" / ".config" / "metadata.json").is_file()  # TFDS rewrote it
    assert sorted(p.name for p in (out / "chest").iterdir()) == [".config", "size64"]
    assert sorted(p.name for p in out.iterdir()) == ["chest", "downloads"]


@pytest.mark.bad_input
def test_missing_or_empty_manual_dir_is_an_error(tmp_path, capsys):
    args = ("--dataset", "knee", "--data_dir", tmp_path / "out", "--size", 32)
    assert _run("--manual_dir", tmp_path / "nothing", *args) == 1
    assert "is not a folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert _run("--manual_dir", tmp_path / "empty", *args) == 1
    err = capsys.readouterr().err
    assert f"--manual_dir {tmp_path / 'empty'} is empty" in err
    assert sources.KNEE_LAYOUT in err  # the builder's instructions follow
    assert not builders.prepared_dir(tmp_path / "out", "knee", 32).exists()


def test_interrupted_prepare_is_not_prepared_and_reruns(
    knee_raw, tmp_path, monkeypatch
):
    raw, written = knee_raw
    calls = {"n": 0}
    original = decode.ExampleDecoder.__call__

    def failing(self, example):
        calls["n"] += 1
        if calls["n"] > 10:
            raise RuntimeError("interrupted")
        return original(self, example)

    monkeypatch.setattr(decode.ExampleDecoder, "__call__", failing)
    with pytest.raises(RuntimeError, match="interrupted"):
        h.prepare("knee", raw, tmp_path)
    assert calls["n"] > 10
    builder = builders.make_builder("knee", tmp_path, h.SIZE)
    assert not builder.is_prepared()
    assert not builder.data_path.exists()
    monkeypatch.setattr(decode.ExampleDecoder, "__call__", original)
    builder = h.prepare("knee", raw, tmp_path)
    assert builder.is_prepared()
    assert len(builder.as_data_source("all")) == len(written)


_SLOW_PREPARE = textwrap.dedent(
    """
    import sys, time
    from jaxtransfer.data import decode, prepare
    original = decode.ExampleDecoder.__call__
    def slow(self, example):
        time.sleep(0.05)
        return original(self, example)
    decode.ExampleDecoder.__call__ = slow
    sys.exit(prepare.main(sys.argv[1:]))
    """
)


def test_killed_prepare_leaves_no_complete_dataset(knee_raw, tmp_path):
    raw, written = knee_raw
    argv = [
        "--dataset",
        "knee",
        "--manual_dir",
        raw,
        "--data_dir",
        tmp_path,
        "--size",
        32,
        "--workers",
        1,
    ]
    process = subprocess.Popen(
        [sys.executable, "-c", _SLOW_PREPARE, *map(str, argv)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    target = builders.prepared_dir(tmp_path, "knee", 32).parent
    deadline = time.time() + 120
    # Wait until array_record shards are being written, then kill.
    while time.time() < deadline:
        if any(target.glob("*incomplete*/*.array_record*")):
            break
        assert process.poll() is None, process.stderr.read()
        time.sleep(0.05)
    assert process.poll() is None, "prepare finished before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    builder = builders.make_builder("knee", tmp_path, 32)
    assert not builder.is_prepared()
    assert [p.name for p in target.glob("incomplete.*")]  # what the kill left
    assert _run(*argv) == 0
    assert builders.make_builder("knee", tmp_path, 32).is_prepared()
    assert [p.name for p in target.iterdir()] == [builders.VERSION]  # no leftovers


def test_truncated_mammogram_is_decoded_and_counted(tmp_path, capsys):
    raw = tmp_path / "raw"
    synthetic.write_mammograms(raw, image_size=64)
    victim = sorted((raw / sources.MAMMOGRAM_DIR / "images").glob("*.png"))[0]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    assert (
        _run(
            "--dataset",
            "mammograms",
            "--manual_dir",
            raw,
            "--data_dir",
            tmp_path / "out",
            "--size",
            32,
        )
        == 0
    )
    out = capsys.readouterr().out
    relative = victim.relative_to(raw).as_posix()
    rows = sum(e.path == relative for e in sources.read_mammograms(raw))
    assert f"truncated images (decoded as far as they go): {rows} (e.g." in out
    read = tfds.builder_from_directory(
        str(builders.prepared_dir(tmp_path / "out", "mammograms", 32))
    )
    assert read.info.metadata["truncated"] == [relative] * rows
    records = [
        r for r in h.records(read.as_data_source("all")) if r["path"] == relative
    ]
    assert len(records) == rows and all(r["truncated"] for r in records)
    expected = decode.load_image(victim, 32)
    assert expected.truncated
    np.testing.assert_array_equal(records[0]["image"], expected.image)


def _write_paper_folds(folder, examples, folds):
    """Fold CSVs in the paper's layout (',path,class'), PCam under its PNG names."""
    folder.mkdir(parents=True)
    for fold in folds:
        for part, indices in fold.parts().items():
            with open(folder / f"{part}_fold{fold.number}.csv", "w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(["", "path", "class"])
                for i in indices:
                    name = examples[i].paper_path or examples[i].path
                    path = splits.PAPER_PATH_PREFIX + name
                    writer.writerow([i, path, examples[i].class_name])


def test_paper_folds_are_used_as_given(tmp_path):
    raw = tmp_path / "raw"
    synthetic.write_breast(raw)
    examples = sources.read_breast(raw)
    procedure = splits.make_target_folds("breast", examples)
    # Paper folds that differ from the procedure's: fold k is procedure fold k+1.
    rotated = [
        splits.Fold(k + 1, f.train, f.val, f.test)
        for k, f in enumerate(procedure[1:] + procedure[:1])
    ]
    _write_paper_folds(tmp_path / "folds", examples, rotated)
    assert (
        _run(
            "--dataset",
            "breast",
            "--manual_dir",
            raw,
            "--data_dir",
            tmp_path / "out",
            "--size",
            32,
            "--paper_folds",
            tmp_path / "folds",
        )
        == 0
    )
    path = builders.prepared_dir(tmp_path / "out", "breast", 32, paper_folds=True)
    assert path.name == "1.0.0" and path.parent.name == "size32_paperfolds"
    read = tfds.builder_from_directory(str(path))
    assert read.info.metadata["fold_source"].startswith("paper fold CSVs")
    for fold in rotated:
        for part in ("val", "test"):
            got = [
                r["index"]
                for r in h.records(read.as_data_source(f"fold{fold.number}_{part}"))
            ]
            np.testing.assert_array_equal(got, getattr(fold, part))
        train = h.records(
            read.as_data_source(builders.split_expression(f"fold{fold.number}_train"))
        )
        np.testing.assert_array_equal(
            sorted(r["index"] for r in train), sorted(fold.train)
        )


def test_pcam_paper_folds_choose_their_patches_among_all(tmp_path):
    # The paper drew pcam-small from an os.listdir order no one can reproduce
    # (docs/protocol.md#pcam-small), so a seeded sample of the sorted names holds other
    # patches: with the paper's fold CSVs, every patch is read and the CSVs choose.
    raw = tmp_path / "raw"
    rng = np.random.default_rng(5)
    labels = {
        split: rng.integers(0, 2, n)
        for split, n in zip(sources.PCAM_SPLITS, (120, 30, 30))
    }
    synthetic.write_pcam_h5(raw, labels, image_size=32)
    every = sources.read_pcam_h5(raw, None)
    pick = np.sort(rng.choice(len(every), 60, replace=False))
    chosen = [every[i] for i in pick]
    folds = splits.make_target_folds("pcam-small", chosen)
    _write_paper_folds(tmp_path / "folds", chosen, folds)
    argv = ["--dataset", "pcam-small", "--manual_dir", raw, "--data_dir"]
    argv += [tmp_path / "out", "--size", 32, "--paper_folds", tmp_path / "folds"]
    assert _run(*argv) == 0
    path = builders.prepared_dir(tmp_path / "out", "pcam-small", 32, paper_folds=True)
    read = tfds.builder_from_directory(str(path))
    for fold in folds:
        got = [
            r["path"] for r in h.records(read.as_data_source(f"fold{fold.number}_test"))
        ]
        assert got == [chosen[i].paper_path for i in fold.test]


def test_the_downloads_own_folder_prepares_as_its_parent(knee_raw, tmp_path):
    raw, _ = knee_raw
    common = ["--dataset", "knee", "--data_dir"]
    size = ["--size", 32, "--no_progress"]
    assert _run(*common, tmp_path / "root", "--manual_dir", raw, *size) == 0
    own = raw / sources.KNEE_DIR
    assert _run(*common, tmp_path / "own", "--manual_dir", own, *size) == 0
    for split in ("fold1_train", "fold1_test"):
        a, b = (
            loader.load_split(builders.prepared_dir(tmp_path / d, "knee", 32), split)
            for d in ("root", "own")
        )
        np.testing.assert_array_equal(a.images, b.images)
        assert list(a.paths) == list(b.paths)


@pytest.mark.parametrize("target", sorted(sources.TOP_FOLDERS))
def test_data_root_is_found_from_either_folder(target, tmp_path):
    top = sources.TOP_FOLDERS[target][0]
    (tmp_path / top).mkdir()
    assert sources.data_root(target, tmp_path) == tmp_path
    assert sources.data_root(target, tmp_path / top) == tmp_path
    # A root that merely shares the name (it holds the download inside) stays.
    (tmp_path / top / top).mkdir()
    assert sources.data_root(target, tmp_path / top) == tmp_path / top


# --- bad input: one clear error naming the file, nothing prepared ---------------


def _prepare_fails(raw, tmp_path, capsys, dataset="breast"):
    argv = ["--dataset", dataset, "--manual_dir", raw, "--data_dir", tmp_path / "out"]
    err = command_line.fails(
        prepare.main, [*argv, "--size", 32, "--no_progress"], capsys
    )
    assert not builders.prepared_dir(tmp_path / "out", dataset, 32).exists()
    return err


@pytest.mark.bad_input
@pytest.mark.parametrize(
    "content, expected",
    [
        (b"", "is empty (0 bytes): expected an image file"),
        (b"\x89PNG\r\n\x1a\n" + b"cut" * 10, "expected an image PIL decodes"),
        (b"<!DOCTYPE html><html>Sign in</html>", "not an image format PIL reads"),
    ],
    ids=["zero_bytes", "corrupt_png", "html"],
)
def test_an_undecodable_image_is_named(tmp_path, capsys, content, expected):
    synthetic.write_breast(tmp_path / "raw")
    bad = tmp_path / "raw" / "breast" / "benign (1).png"
    bad.write_bytes(content)
    err = _prepare_fails(tmp_path / "raw", tmp_path, capsys)
    assert f"Cannot decode {bad}" in err or f"{bad} is empty" in err, err
    assert expected in err, err


@pytest.mark.bad_input
def test_a_class_too_small_for_the_papers_folds_is_named(tmp_path, capsys):
    labels = synthetic.default_isic_labels(num_nevi=20, num_per_other_class=3)
    synthetic.write_isic(tmp_path / "raw", labels, image_size=8)
    err = _prepare_fails(tmp_path / "raw", tmp_path, capsys, dataset="isic")
    assert "target isic: the largest class, 'NV', has 20 images" in err, err
    assert "need one with at least 25" in err
