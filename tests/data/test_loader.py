"""loader.py: whole splits as arrays, memory estimate, host shares, device put."""

import jax
import numpy as np
import pytest
import tfds_helpers as h

from jaxtransfer.data import builders, loader, sources, splits


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    raw = tmp_path_factory.mktemp("raw")
    h.write_raw("chest", raw)
    data_dir = tmp_path_factory.mktemp("prepared")
    h.prepare("chest", raw, data_dir)
    return raw, builders.prepared_dir(data_dir, "chest", h.SIZE)


def test_split_arrays_match_the_records_and_folds(prepared):
    raw, path = prepared
    examples = sources.read_chest(raw)
    fold = splits.make_target_folds("chest", examples)[1]  # fold 2
    builder = loader.open_prepared(path)
    for part in ("train", "val", "test"):
        arrays = loader.load_split(path, f"fold2_{part}")
        n = len(getattr(fold, part))
        assert arrays.images.shape == (n, h.SIZE, h.SIZE, 3)
        assert arrays.images.dtype == np.uint8 and arrays.labels.dtype == np.int32
        assert sorted(arrays.indices) == sorted(getattr(fold, part))
        assert arrays.mask.all() and arrays.num_padding == 0
        assert arrays.class_names == sources.CHEST_CLASSES
        for i, index in enumerate(arrays.indices):
            example = examples[index]
            assert arrays.labels[i] == example.label
            assert arrays.paths[i] == example.path
            assert arrays.groups[i] == example.group
        # group ids: equal ids <=> equal patient ids
        same_id = arrays.group_ids[:, None] == arrays.group_ids[None, :]
        same_group = arrays.groups[:, None] == arrays.groups[None, :]
        np.testing.assert_array_equal(same_id, same_group)
        source = builder.as_data_source(builders.split_expression(f"fold2_{part}"))
        np.testing.assert_array_equal(
            arrays.images[-1], source[len(source) - 1]["image"]
        )


def test_memory_estimate_is_made_before_loading(prepared, monkeypatch):
    _, path = prepared
    builder = loader.open_prepared(path)
    estimate = loader.estimate_bytes(builder, "all")
    arrays = loader.load_split(builder, "all")
    assert estimate == arrays.nbytes + arrays.indices.nbytes
    assert loader.num_examples(builder, "all") == len(arrays)
    monkeypatch.setattr(builder, "as_data_source", pytest.fail)
    with pytest.raises(MemoryError, match="max_bytes"):
        loader.load_split(builder, "all", max_bytes=estimate - 1)


@pytest.mark.parametrize("mode", loader.SHARE_MODES)
@pytest.mark.parametrize("total,count", [(10, 3), (9, 3), (2, 4), (7, 1)])
def test_host_shares_partition_and_pad(mode, total, count):
    seen = []
    for index in range(count):
        rows, padding = loader.host_share(total, index, count, mode)
        assert len(rows) == -(-total // count)  # the same count on every host
        real = rows[: len(rows) - padding]
        assert np.all(rows[len(real) :] == (real[-1] if len(real) else 0))
        seen += real.tolist()
    assert sorted(seen) == list(range(total))
    if mode == "contiguous":
        assert seen == list(range(total))


def test_host_loads_only_its_share(prepared):
    _, path = prepared
    full = loader.load_split(path, "fold1_train")
    shares = [
        loader.load_split(path, "fold1_train", process_index=i, process_count=3)
        for i in range(3)
    ]
    assert len({len(s) for s in shares}) == 1
    real = np.concatenate([s.indices[s.mask] for s in shares])
    np.testing.assert_array_equal(real, full.indices)
    images = np.concatenate([s.images[s.mask] for s in shares])
    np.testing.assert_array_equal(images, full.images)
    assert sum(s.num_padding for s in shares) == 3 * len(shares[0]) - len(full)


def test_put_on_device_checks_the_budget(prepared):
    _, path = prepared
    arrays = loader.load_split(path, "fold1_val")
    assert loader.put_on_device(arrays, budget_bytes=arrays.images.nbytes - 1) is None
    on_device = loader.put_on_device(arrays, budget_bytes=10 * arrays.nbytes)
    assert isinstance(on_device["images"], jax.Array)
    np.testing.assert_array_equal(np.asarray(on_device["images"]), arrays.images)
    np.testing.assert_array_equal(np.asarray(on_device["labels"]), arrays.labels)


@pytest.mark.bad_input
def test_open_prepared_names_the_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="jaxtransfer.data.prepare"):
        loader.open_prepared(tmp_path)
