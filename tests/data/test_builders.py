"""Every target: synthetic raw download -> prepare -> read back with plain tfds."""

import collections
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow_datasets as tfds
import tfds_helpers as h

from jaxtransfer.data import builders, decode, sources, splits

NAMES = list(h.TARGETS)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """name -> (raw root, written truth, read-only builder), each prepared once."""
    out = {}
    data_dir = tmp_path_factory.mktemp("prepared")
    for name in NAMES:
        raw = tmp_path_factory.mktemp(f"raw_{name}")
        written = h.write_raw(name, raw)
        builder = h.prepare(name, raw, data_dir)
        sample_size = h.TARGETS[name][3]
        path = builders.prepared_dir(data_dir, name, h.SIZE, sample_size=sample_size)
        assert path == builder.data_path
        out[name] = (raw, written, tfds.builder_from_directory(str(path)))
    return out


def _expected(name, written):
    """(path, class, group) per example as the synthetic writer meant them."""
    if name == "pcam_middle":
        # The HDF5 patches are named as the converter named them; a later split's patch
        # with the same name replaces an earlier one (docs/protocol.md#pcam-small).
        by_name = {}
        for w in written:
            label = sources.PCAM_CLASSES.index(w.class_name)
            png = sources.pcam_png_name(w.h5_index, label)
            by_name[png] = (f"{sources.PCAM_PNG_DIR}/{png}", w.class_name, "")
        return collections.Counter(by_name.values())
    return collections.Counter((w.path, w.class_name, w.group) for w in written)


@pytest.mark.parametrize("name", NAMES)
def test_records_are_what_the_generator_wrote(prepared, name):
    _, written, builder = prepared[name]
    records = h.records(builder.as_data_source("all"))
    got = collections.Counter((r["path"], r["class_name"], r["group"]) for r in records)
    assert got == _expected(name, written)
    class_names = list(sources.CLASS_NAMES[h.TARGETS[name][0]])
    assert builder.info.features["label"].names == class_names
    for r in records:
        assert r["label"] == class_names.index(r["class_name"])
        assert r["image"].shape == (h.SIZE, h.SIZE, 3)
        assert r["image"].dtype == np.uint8
    counts = collections.Counter(r["class_name"] for r in records)
    assert counts == collections.Counter(
        c for _, c, _ in _expected(name, written).elements()
    )


@pytest.mark.parametrize("name", NAMES)
def test_folds_are_the_split_procedure(prepared, name):
    raw, _, builder = prepared[name]
    examples = h.read_examples(name, raw)
    folds = splits.make_target_folds(h.TARGETS[name][0], examples)
    assert set(builder.info.splits) == set(builders.stored_split_names())
    for fold in folds:
        for part in ("train", "val", "test"):
            split = f"fold{fold.number}_{part}"
            expression = builders.split_expression(split)
            assert builder.info.metadata["splits"][split] == expression
            got = h.records(builder.as_data_source(expression))
            indices = [r["index"] for r in got]
            expected = getattr(fold, part)
            if part == "train":  # the union of other folds' parts, in their order
                np.testing.assert_array_equal(np.sort(indices), np.sort(expected))
            else:  # stored in the fold's own order
                np.testing.assert_array_equal(indices, expected)
            for r in got:
                example = examples[r["index"]]
                assert r["path"] == (example.paper_path or example.path)
                assert r["class_name"] == example.class_name
    assert builder.info.metadata["num_left_out"] == 0
    assert sum(s.num_examples for s in builder.info.splits.values()) == len(examples)


@pytest.mark.parametrize("name", NAMES)
def test_pixels_equal_decode(prepared, name):
    raw, _, builder = prepared[name]
    examples = h.read_examples(name, raw)
    records = h.records(builder.as_data_source("all"))
    with decode.ExampleDecoder(raw, h.SIZE) as decoder:
        for r in records[:: max(1, len(records) // 4)]:
            expected = decoder(examples[r["index"]]).image
            np.testing.assert_array_equal(r["image"], expected)
            assert not r["truncated"]
    # and the images are not all alike (a constant writer would pass the above)
    assert len({r["image"].tobytes() for r in records}) > len(records) // 2


def test_builder_class_reads_back_without_raw(prepared):
    _, _, read_only = prepared["breast"]
    data_dir = read_only.data_path.parents[2]  # <data_dir>/breast/size32/1.0.0
    builder = builders.make_builder("breast", data_dir, h.SIZE)
    assert builder.is_prepared()
    source = builder.as_data_source("fold1_val")
    assert len(source) == read_only.info.splits["fold1_val"].num_examples


def test_split_expression():
    assert builders.split_expression("all") == "all"
    assert builders.split_expression("fold3_val") == "fold3_val"
    train = builders.split_expression("fold3_train").split("+")
    assert len(train) == 8 and not any(s.startswith("fold3_") for s in train)
    with pytest.raises(ValueError):
        builders.split_expression("fold7_train")


def test_held_out_layout_rejects_overlapping_folds():
    fold = splits.Fold(1, np.array([2, 3]), np.array([0]), np.array([1]))
    clash = splits.Fold(2, np.array([1, 3]), np.array([0]), np.array([2]))
    with pytest.raises(splits.FoldCheckError):
        builders.held_out_layout([fold, clash], 4)


_NO_TF = textwrap.dedent(
    """
    import importlib.abc, sys, traceback
    attempts, probes = [], []
    class Spy(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "tensorflow" or name.startswith("tensorflow."):
                stack = traceback.extract_stack()
                # etils asks importlib.util.find_spec whether TF is installed (to
                # pick tf.io.gfile for remote paths): a probe, not an import.
                if any(f.name == "find_spec" and "importlib" in f.filename
                       and "util" in f.filename for f in stack):
                    probes.append(name)
                else:
                    attempts.append(name)
            return None
    sys.meta_path.insert(0, Spy())
    import tensorflow_datasets as tfds
    from jaxtransfer.data import builders, loader, synthetic
    raw, out = sys.argv[1], sys.argv[2]
    synthetic.write_breast(raw)
    builder = builders.make_builder("breast", out, 16, workers=2)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=raw))
    read = tfds.builder_from_directory(str(builders.prepared_dir(out, "breast", 16)))
    record = read.as_data_source(builders.split_expression("fold2_train"))[0]
    arrays = loader.load_split(read, "fold1_test")
    assert record["image"].shape == (16, 16, 3) and len(arrays) > 0
    assert "tensorflow" not in sys.modules, "tensorflow imported"
    assert not attempts, f"tried to import {sorted(set(attempts))}"
    print("NO_TF_OK", len(arrays), "probes:", len(probes))
    """
)


def test_prepare_and_read_never_import_tensorflow(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", _NO_TF, str(tmp_path / "raw"), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "NO_TF_OK" in result.stdout
