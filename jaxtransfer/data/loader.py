"""A prepared split as uint8 arrays in host memory, on device, or a host's share.

The whole split is small enough to hold in memory for every target of the paper
(the largest, isic at 224 px, is 10015 x 150528 B = 1.5 GB), so training reads it
once into one `(N, H, W, 3)` uint8 array and draws batches from it. Reading goes
through `as_data_source` (array_record random access), never TensorFlow.

**Multi-host share.** Process `i` of `n` loads only its share of the split's
order: `contiguous` gives host i the rows [i*m, min((i+1)*m, N)) with
m = ceil(N / n); `strided` gives rows i, i+n, i+2n, ... Both are the same on every
host (they depend only on N, i, n). Every host then pads its share to m rows by
repeating its last row (or row 0 if it has none) with `mask` False, so all hosts
hold the same count and run the same number of steps; padded rows must be ignored
through the mask (as big_vision's `_mask`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from jaxtransfer.data import builders

SHARE_MODES = ("contiguous", "strided")
_CHUNK = 256
DEFAULT_DEVICE_FRACTION = 0.5

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class SplitArrays:
    """One split (or one host's share of it) in host memory.

    Attributes:
        images: uint8 (N, H, W, 3).
        labels: int32 (N,) class indices.
        group_ids: int32 (N,) index of each row's group among the split's sorted
            distinct groups (all 0 where the target has none).
        groups: (N,) str patient ids ('' where none).
        paths: (N,) str image paths relative to the data root.
        indices: int64 (N,) position of each row in the reader's example list.
        mask: bool (N,) False on padding rows of a host share.
        class_names: the sorted class names (label = position).
        num_padding: padding rows at the end.
    """

    images: np.ndarray
    labels: np.ndarray
    group_ids: np.ndarray
    groups: np.ndarray
    paths: np.ndarray
    indices: np.ndarray
    mask: np.ndarray
    class_names: tuple[str, ...]
    num_padding: int = 0

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def nbytes(self) -> int:
        """Bytes of the numeric arrays (images, labels, group ids, mask)."""
        return sum(
            a.nbytes for a in (self.images, self.labels, self.group_ids, self.mask)
        )


def open_prepared(path_or_builder) -> tfds.core.DatasetBuilder:
    """A read-only builder for a prepared dataset directory (or the builder given).

    Args:
        path_or_builder: `<data_dir>/<name>/<config>/<version>` (see
            `builders.prepared_dir`) or a builder instance.
    """
    if isinstance(path_or_builder, (str, os.PathLike)):
        path = Path(path_or_builder)
        if not (path / "dataset_info.json").is_file():
            raise FileNotFoundError(
                f"{path} is not a prepared dataset (no dataset_info.json); prepare "
                "it with `python -m jaxtransfer.data.prepare`."
            )
        return tfds.builder_from_directory(os.fspath(path))
    return path_or_builder


def num_examples(builder: tfds.core.DatasetBuilder, split: str) -> int:
    """Examples in `split` ('all', 'fold{k}_{train,val,test}' or a tfds split)."""
    expression = builders.split_expression(split)
    if expression == builders.ALL:
        return sum(s.num_examples for s in builder.info.splits.values())
    return builder.info.splits[expression].num_examples


def host_share(
    total: int, process_index: int = 0, process_count: int = 1, mode: str = "contiguous"
) -> tuple[np.ndarray, int]:
    """Rows of a split of `total` rows held by host `process_index`, padded.

    Returns:
        (row positions, length m = ceil(total / process_count); num_padding), the
        padding being repeats of the host's last row (row 0 when it has none).
    """
    if mode not in SHARE_MODES:
        raise ValueError(f"mode must be one of {SHARE_MODES}, got {mode!r}")
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} not in [0, {process_count})")
    per_host = math.ceil(total / process_count)
    if mode == "contiguous":
        start = min(process_index * per_host, total)
        rows = np.arange(start, min(start + per_host, total))
    else:
        rows = np.arange(process_index, total, process_count)
    num_padding = per_host - len(rows)
    fill = rows[-1] if len(rows) else 0
    return np.concatenate([rows, np.full(num_padding, fill)]).astype(np.int64), int(
        num_padding
    )


def estimate_bytes(
    builder: tfds.core.DatasetBuilder,
    split: str,
    process_index: int = 0,
    process_count: int = 1,
) -> int:
    """Host memory `load_split` will take for this host's share (before loading)."""
    count = math.ceil(num_examples(builder, split) / process_count)
    image_shape = builder.info.features["image"].shape
    per_row = int(np.prod(image_shape)) + 4 + 4 + 8 + 1  # image, label, gid, idx, mask
    return count * per_row


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def load_split(
    path_or_builder,
    split: str,
    *,
    process_index: int = 0,
    process_count: int = 1,
    mode: str = "contiguous",
    max_bytes: int | None = None,
) -> SplitArrays:
    """A prepared split (this host's share of it) as arrays in host memory.

    Args:
        path_or_builder: a prepared dataset directory or a builder.
        split: 'all', 'fold{k}_train', 'fold{k}_val', 'fold{k}_test' (or any tfds
            split string of the stored splits).
        process_index: this host (`jax.process_index()`).
        process_count: the number of hosts (`jax.process_count()`).
        mode: 'contiguous' or 'strided' share (module docstring).
        max_bytes: refuse to load more than this (checked with `estimate_bytes`
            before reading anything).

    Returns:
        The `SplitArrays`, rows in the stored order of the split.
    """
    builder = open_prepared(path_or_builder)
    needed = estimate_bytes(builder, split, process_index, process_count)
    if max_bytes is not None and needed > max_bytes:
        raise MemoryError(
            f"{split} needs {needed / 2**20:.1f} MiB, more than max_bytes "
            f"{max_bytes / 2**20:.1f} MiB."
        )
    source = builder.as_data_source(builders.split_expression(split))
    rows, num_padding = host_share(len(source), process_index, process_count, mode)
    image_shape = builder.info.features["image"].shape
    images = np.empty((len(rows), *image_shape), dtype=np.uint8)
    labels = np.empty(len(rows), dtype=np.int32)
    indices = np.empty(len(rows), dtype=np.int64)
    groups, paths = [], []
    # Read each distinct row once (padding repeats a row).
    real = len(rows) - num_padding
    distinct = rows[:real] if real else rows[: min(1, len(source))]
    for start in range(0, len(distinct), _CHUNK):
        chunk = distinct[start : start + _CHUNK].tolist()
        records = source.__getitems__(chunk) if len(source) else []
        for offset, record in enumerate(records):
            position = start + offset
            images[position] = record["image"]
            labels[position] = record["label"]
            indices[position] = record["index"]
            groups.append(_text(record["group"]))
            paths.append(_text(record["path"]))
    filled = len(groups)
    if filled < len(rows):  # padding: repeat the last row read
        last = filled - 1
        images[filled:] = images[last] if filled else 0
        labels[filled:] = labels[last] if filled else 0
        indices[filled:] = indices[last] if filled else -1
        groups += [groups[last] if filled else ""] * (len(rows) - filled)
        paths += [paths[last] if filled else ""] * (len(rows) - filled)
    mask = np.zeros(len(rows), dtype=bool)
    mask[:real] = True
    groups_array = np.asarray(groups, dtype=object)
    _, group_ids = np.unique(groups_array.astype(str), return_inverse=True)
    return SplitArrays(
        images=images,
        labels=labels,
        group_ids=group_ids.astype(np.int32).reshape(-1),
        groups=groups_array,
        paths=np.asarray(paths, dtype=object),
        indices=indices,
        mask=mask,
        class_names=tuple(builder.info.features["label"].names),
        num_padding=num_padding,
    )


def device_budget(device=None, fraction: float = DEFAULT_DEVICE_FRACTION) -> int | None:
    """`fraction` of the device's memory limit in bytes, None when unknown (CPU)."""
    import jax

    device = device or jax.local_devices()[0]
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if not stats or "bytes_limit" not in stats:
        return None
    return int(stats["bytes_limit"] * fraction)


def put_on_device(
    arrays: SplitArrays, budget_bytes: int | None = None, device=None
) -> dict | None:
    """The split's images, labels and mask as device arrays, if they fit.

    Args:
        arrays: from `load_split`.
        budget_bytes: the most device memory to use; default `device_budget()`.
            Where the device reports no limit (CPU) and no budget is given, the
            arrays are put without a check.
        device: the target device or sharding (default: the first local device).

    Returns:
        {'images', 'labels', 'mask'} as jax arrays, or None when they do not fit
        (the caller then keeps feeding batches from host memory).
    """
    import jax

    budget = budget_bytes if budget_bytes is not None else device_budget(device)
    needed = arrays.images.nbytes + arrays.labels.nbytes + arrays.mask.nbytes
    if budget is not None and needed > budget:
        log.info(
            "Split of %.1f MiB exceeds the device budget of %.1f MiB; kept on host.",
            needed / 2**20,
            budget / 2**20,
        )
        return None
    device = device or jax.local_devices()[0]
    return {
        name: jax.device_put(getattr(arrays, name), device)
        for name in ("images", "labels", "mask")
    }
