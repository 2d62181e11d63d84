"""Pools analysed per-target workdirs into the paper's all-target tables.

Usage:
  python -m jaxtransfer.pool --workdir OUT [--reference DIR] RUN [RUN ...]
  e.g. python -m jaxtransfer.pool --workdir runs/all runs/knee runs/chest runs/isic

``jaxtransfer.analysis.pooling`` does the work (docs/analysis.md#several-targets).
"""

import argparse

from jaxtransfer.analysis import pooling
from jaxtransfer.runtime import cli


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workdirs", nargs="+", help="analysed workdirs, one per target")
    parser.add_argument("--workdir", required=True, help="the pooled workdir")
    parser.add_argument(
        "--reference", default=None, help="the paper's result CSVs, for report.md"
    )
    cli.add_verbose(parser)
    args = parser.parse_args(argv)
    with cli.reported_errors(args.verbose):
        summary = pooling.run(args.workdirs, args.workdir, args.reference)
    print(
        f"wrote {args.workdir}: {len(summary['inputs'])} targets, "
        f"{summary['gain_points']} CCA vs AUC gain points, report.md, "
        f"{summary['figures']}"
    )
    for note in summary["notes"]:
        print(f"note: {note}")
    return 0


if __name__ == "__main__":
    main()
