"""Steady-state timing and JSON-lines output shared by the benchmark scripts."""

import json
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


def best_seconds_interleaved(fns: dict, rounds: int) -> dict:
    """Best seconds of each ``fns[name]()`` over ``rounds`` rounds calling them in turn.

    One warm-up call each first; every ``fn`` must block until its work is done. On a
    shared VM the machine's speed drifts over minutes; timed in turns, the compared
    implementations see the same drift, so their ratio is steadier than when each is
    timed in its own block.
    """
    for fn in fns.values():
        fn()
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def write_json_lines(path: str, records: list[dict]) -> None:
    """One JSON object per line, the format every benchmark prints and saves."""
    with open(path, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)


def reuse_freed_memory() -> dict:
    """Applies the entry points' allocator setting; the record says which one ran.

    Call first in ``main``, before jax starts its backend. Every implementation in
    the run shares it (it is process-wide), so comparisons stay like for like;
    ``JAXTRANSFER_DEFAULT_MALLOC=1`` measures glibc's defaults instead.
    """
    from jaxtransfer.runtime import host

    return {"host_malloc": "reuse" if host.reuse_freed_memory() else "default"}
