"""Prepare a target from its raw download: `python -m jaxtransfer.data.prepare`.

    python -m jaxtransfer.data.prepare --dataset knee --manual_dir RAW \\
        --data_dir OUT [--size 112] [--paper_folds DIR]
    python -m jaxtransfer.data.prepare --dataset byo --manual_dir RAW \\
        --data_dir OUT [--csv FILE]

RAW is the data root holding the target's folder in its download layout (the
builder's MANUAL_DOWNLOAD_INSTRUCTIONS say which); a mismatch stops with the
reader's message naming the expected layout. The prepared dataset lands in
`OUT/<dataset>/<config>/1.0.0` (array_record, readable by
`tfds.builder_from_directory`); preparing again reuses it. A summary follows:
class counts per fold and the files dropped, left out or truncated.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from jaxtransfer.data import builders, sources, splits
from jaxtransfer.runtime import cli


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command-line flags."""
    parser = argparse.ArgumentParser(
        prog="python -m jaxtransfer.data.prepare", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--dataset", required=True, help=", ".join(builders.BUILDERS))
    parser.add_argument(
        "--manual_dir",
        required=True,
        help="the raw data root, or the download's own folder (e.g. RAW/chest_xray)",
    )
    parser.add_argument("--data_dir", required=True, help="where prepared data go")
    parser.add_argument(
        "--size", type=int, default=None, help="image side (default: the CCA size)"
    )
    parser.add_argument(
        "--paper_folds", default=None, help="the paper's fold CSVs of this target"
    )
    parser.add_argument("--csv", default=None, help="byo: a path,class[,group] CSV")
    parser.add_argument(
        "--sample_size",
        type=int,
        default=-1,
        help="pcam: -1 the paper's sample (with --paper_folds: the patches its CSVs "
        "name), 0 every patch, n a sample of n",
    )
    parser.add_argument("--workers", type=int, default=None, help="decoding threads")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    cli.add_verbose(parser)
    return parser.parse_args(argv)


def summary(builder) -> str:
    """Class counts per fold and the notes of a prepared builder, as text."""
    metadata = builder.info.metadata or {}
    counts = metadata.get("class_counts", {})
    names = list(metadata.get("class_names", builder.info.features["label"].names))
    lines = [
        f"{builder.name} {builder.builder_config.name}: "
        f"{sum(s.num_examples for s in builder.info.splits.values())} examples, "
        f"classes {', '.join(names)}; folds: {metadata.get('fold_source', '?')}",
        f"  {'split':<12}" + "".join(f"{n:>11}" for n in names) + f"{'total':>8}",
    ]
    for k in range(1, splits.NUM_FOLDS + 1):
        parts = {
            "train": [
                s
                for s in builders.stored_split_names()
                if not s.startswith(f"fold{k}_")
            ],
            "val": [f"fold{k}_val"],
            "test": [f"fold{k}_test"],
        }
        for part, stored in parts.items():
            row = [sum(counts.get(s, {}).get(n, 0) for s in stored) for n in names]
            lines.append(
                f"  fold{k}_{part:<7}"
                + "".join(f"{c:>11}" for c in row)
                + f"{sum(row):>8}"
            )
    notes = list(metadata.get("reader_notes", []))
    truncated = list(metadata.get("truncated", []))
    lines.append(f"  skipped/dropped: {len(notes) and '; '.join(notes) or 'none'}")
    shown = f" (e.g. {', '.join(truncated[:3])})" if truncated else ""
    lines.append(
        f"  truncated images (decoded as far as they go): {len(truncated)}{shown}"
    )
    lines.append(f"  prepared in {builder.data_dir}")
    return "\n".join(lines)


def prepare(
    dataset: str,
    manual_dir: str | os.PathLike,
    data_dir: str | os.PathLike,
    size: int | None = None,
    *,
    paper_folds: str | None = None,
    csv: str | None = None,
    sample_size: int = -1,
    workers: int | None = None,
    show_progress: bool = True,
):
    """Prepare (or reuse) a dataset, as the command's flags of the same names say;
    returns its builder."""
    import tensorflow_datasets as tfds

    manual_dir = Path(manual_dir)
    if not manual_dir.is_dir():
        raise sources.LayoutError(f"--manual_dir {manual_dir} is not a folder.")
    name = builders.dataset_name(dataset)
    if name != "byo":  # the download's own folder works as well as its parent
        manual_dir = sources.data_root(builders.BUILDERS[name].TARGET, manual_dir)
    if csv is not None and name != "byo":
        raise ValueError("--csv is for --dataset byo only.")
    builder = builders.make_builder(
        name,
        data_dir,
        size,
        paper_folds_dir=paper_folds,
        sample_size=sample_size,
        manual_dir=manual_dir if name == "byo" else None,
        csv_file=csv,
        workers=workers,
        show_progress=show_progress,
    )
    if builder.is_prepared():
        recorded = (builder.info.metadata or {}).get("source")
        wanted = builder.source_description(manual_dir)
        if name == "byo" and recorded != wanted:
            # Every BYO target prepares into <data_dir>/byo/<config>/.
            raise ValueError(
                f"{builder.data_dir} already holds a BYO target prepared from "
                f"{recorded}, not {wanted}; use another --data_dir."
            )
        print(f"Reusing the prepared dataset in {builder.data_dir}")
        return builder
    if not any(manual_dir.iterdir()):  # else TFDS fails with a bare AssertionError
        raise sources.LayoutError(
            f"--manual_dir {manual_dir} is empty. "
            + builder.MANUAL_DOWNLOAD_INSTRUCTIONS.strip()
        )
    tfds.disable_progress_bar()  # our own bar counts decoded images
    scaffold = _scaffold(builder, data_dir)
    existed = {path for path in scaffold if path.exists()}
    # TFDS writes into incomplete.<random>_<version> and removes it on an error,
    # but a killed prepare leaves it for good. (One prepare of a dataset and size
    # at a time per data_dir, as TFDS itself needs.)
    version_dir = Path(builder.data_dir)
    for stale in version_dir.parent.glob(f"incomplete.*_{version_dir.name}"):
        shutil.rmtree(stale, ignore_errors=True)
    try:
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir))
        )
    except BaseException:
        # TFDS removes its incomplete data folder itself; the folders and the
        # config file it made around it are left, so a failed prepare would leave
        # an empty dataset folder behind.
        _remove_new_scaffold(scaffold, existed)
        raise
    return builder


def _scaffold(builder, data_dir) -> list[Path]:
    """What TFDS creates around a dataset before writing data, deepest first."""
    root = Path(data_dir)
    dataset = root / builder.name
    downloads = root / "downloads"
    return [
        dataset / ".config" / "metadata.json",
        dataset / ".config",
        Path(builder.data_dir).parent,  # <data_dir>/<dataset>/<config>
        dataset,
        downloads / "extracted",
        downloads,
        root,
    ]


def _remove_new_scaffold(scaffold: list[Path], existed: set[Path]):
    """Removes the scaffold paths that did not exist before, where nothing else
    has been put in them."""
    for path in scaffold:
        if path in existed or not path.exists():
            continue
        if path.is_dir():
            try:
                path.rmdir()  # only empty folders
            except OSError:
                pass
        else:
            path.unlink()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    args = parse_args(argv)
    with cli.reported_errors(args.verbose):
        builder = prepare(
            args.dataset,
            args.manual_dir,
            args.data_dir,
            args.size,
            paper_folds=args.paper_folds,
            csv=args.csv,
            sample_size=args.sample_size,
            workers=args.workers,
            show_progress=not args.no_progress,
        )
    print(summary(builder))
    return 0


if __name__ == "__main__":
    sys.exit(main())
