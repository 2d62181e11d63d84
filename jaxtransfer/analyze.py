"""Analyses a finished grid: CCA, prediction similarity, CCA vs AUC gain, report.

Usage:
  python -m jaxtransfer.analyze --workdir RUN [--reference DIR] [--full_depth]

Writes into RUN/analysis/ (docs/analysis.md); ``jaxtransfer.analysis.study`` does
the work. Options left out take the run's recorded config (config.json).
"""

import argparse
import logging
from pathlib import Path

from jaxtransfer.analysis import study
from jaxtransfer.analysis.cca import DECOMPOSITION_CHOICES
from jaxtransfer.runtime import cli, host, lock


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", required=True, help="a finished grid workdir")
    # Unset options take the run's config (config.json), as the grid's own analysis.
    parser.add_argument(
        "--reference",
        default=None,
        help="the paper's result CSVs, for report.md ('' for none; default: "
        "config.analysis.reference)",
    )
    parser.add_argument(
        "--full_depth",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also CCA at every block on all channels (streamed; slow; default: "
        "config.analysis.full_depth)",
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="default: the run's config.seed"
    )
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument(
        "--cca_decomposition",
        choices=DECOMPOSITION_CHOICES,
        default=None,
        help="eigen/singular values of the CCA kernel: jnp.linalg (LAPACK/cuSOLVER), "
        "batched Jacobi (for GPUs, where cuSOLVER decomposes one matrix at a time), "
        "cholesky (no decomposition: Cholesky whitening and matrix products), "
        "or auto: cholesky on a GPU, jnp.linalg elsewhere (default: "
        "config.analysis.cca_decomposition)",
    )
    cli.add_verbose(parser)
    args = parser.parse_args(argv)
    host.reuse_freed_memory()  # before jax starts its backend
    logging.basicConfig(level=logging.INFO)
    with cli.reported_errors(args.verbose), lock.hold(args.workdir):
        summary = study.run(
            args.workdir,
            args.reference,
            full_depth=args.full_depth,
            seed=args.seed,
            batch_size=args.batch_size,
            decomposition=args.cca_decomposition,
        )
    print(f"wrote {Path(args.workdir) / 'analysis'}: report.md, {summary['figures']}")
    for note in summary["notes"]:
        print(f"note: {note}")
    return 0


if __name__ == "__main__":
    main()
