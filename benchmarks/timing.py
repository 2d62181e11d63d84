"""Steady-state timing shared by the benchmark scripts."""

import time

import numpy as np


def median_seconds(fn, iters: int, warmup: int = 2) -> float:
    """Median seconds of ``fn()`` over ``iters`` calls, after ``warmup`` calls.

    ``fn`` must block until its work is done (``jax.block_until_ready``).
    """
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))
