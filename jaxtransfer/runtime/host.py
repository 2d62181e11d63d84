"""Host settings for CPUs: malloc that keeps XLA:CPU's freed buffers; BLAS on all cores.

XLA:CPU allocates the temporaries of a compiled program on each call and frees them
after. glibc's malloc hands large blocks out as fresh ``mmap`` pages and returns
them to the kernel on ``free``: above its mmap threshold (32 MiB at most by
default), and for anything larger than a thread arena's 64 MiB heap. So every train
step touches hundreds of MB of new pages, and page faults take a large share of a
ResNet50 step.

`reuse_freed_memory` tells malloc to serve blocks up to 1 GiB from one heap and to
keep freed memory for the next call, so steady-state steps allocate without
faulting: ResNet50 steps and the CCA kernel get faster (benchmarks/RESULTS.md). One
heap serialises the allocations of all threads, though: small, compile-bound
programs get slower. So it is a choice of the
entry points (``config.host.reuse_freed_memory``, the analysis and extraction
CLIs, the benchmarks), made before jax starts its backend (thread arenas are
created then); a library import never does it. ``JAXTRANSFER_DEFAULT_MALLOC=1``
keeps glibc's defaults everywhere (e.g. to measure the difference). Elsewhere than
Linux with glibc it does nothing.

`map_single_threaded_blas` runs BLAS calls side by side, one single-threaded call a
core: on the CCA's Gram products that beats OpenBLAS's own threads.
"""

import concurrent.futures
import ctypes
import functools
import os
import sys

DEFAULT_MALLOC_ENV = "JAXTRANSFER_DEFAULT_MALLOC"

# mallopt parameters from glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8


def reuse_freed_memory(max_block_bytes: int = 1 << 30) -> bool:
    """Serves blocks up to ``max_block_bytes`` from one reused heap; True if applied.

    One arena (``M_ARENA_MAX=1``) because a thread arena cannot hold a block larger
    than 64 MiB and would fall back to ``mmap`` for exactly the buffers that
    matter; freed memory is kept up to ``max_block_bytes`` (``M_TRIM_THRESHOLD``).
    The process keeps its peak heap instead of returning it to the kernel.
    """
    if os.environ.get(DEFAULT_MALLOC_ENV) or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own C library
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    settings = (
        (_M_ARENA_MAX, 1),
        (_M_MMAP_THRESHOLD, max_block_bytes),
        (_M_TRIM_THRESHOLD, max_block_bytes),
    )
    # musl's mallopt is a stub that returns 0: report that nothing changed.
    return all(mallopt(option, value) == 1 for option, value in settings)


@functools.cache
def _blas_controller():
    # Imported where it is used: the GPU machines run the benchmarks on a bare JAX
    # stack without threadpoolctl, and never call this.
    import threadpoolctl

    return threadpoolctl.ThreadpoolController()


def blas_threads() -> int:
    """Threads NumPy's BLAS uses for one call now (1 where none is found)."""
    libraries = _blas_controller().select(user_api="blas").lib_controllers
    return max([lib.num_threads for lib in libraries], default=1)


@functools.cache
def _pool(workers: int) -> concurrent.futures.ThreadPoolExecutor:
    return concurrent.futures.ThreadPoolExecutor(workers, "jaxtransfer-blas")


def map_single_threaded_blas(fn, items) -> list:
    """``[fn(item) for item in items]`` in parallel threads, BLAS single-threaded.

    NumPy releases the GIL in BLAS calls, so ``fn``s that are mostly BLAS run side
    by side, one a core. For the CCA's Gram products (10000 rows, 128 or 512
    columns) that is faster than one product on OpenBLAS's own threads. The BLAS
    thread count is process-wide: it is 1 for the whole map.
    """
    items = list(items)
    if len(items) < 2:
        return [fn(item) for item in items]
    with _blas_controller().limit(limits=1, user_api="blas"):
        return list(_pool(len(items)).map(fn, items))
