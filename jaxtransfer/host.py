"""Host allocator settings that stop XLA:CPU from page-faulting on every step.

XLA:CPU allocates the temporaries of a compiled program on each call and frees them
after. glibc's malloc hands large blocks out as fresh ``mmap`` pages and returns
them to the kernel on ``free``: above its mmap threshold (32 MiB at most by
default), and for anything larger than a thread arena's 64 MiB heap. So every train
step touches hundreds of MB of new pages: measured on a 2-core VM, 171k minor page
faults and 0.35 s of kernel time per ResNet50 step at 112 px, batch 32, and an
elementwise pass over 100 MB ran at 5 GB/s instead of 19.

`reuse_freed_memory` tells malloc to serve blocks up to 1 GiB from one heap and to
keep freed memory for the next call, so steady-state steps allocate without
faulting: the ResNet50 step above went from 17.9 to 20.5 images/s, the CCA kernel
on the paper's workload from 10.3 to 6.4 s (benchmarks/RESULTS.md). One heap
serialises the allocations of all threads, though: small, compile-bound programs
got slower (the demo grid +54%, compiling a step +14%). So it is a choice of the
entry points (``config.host.reuse_freed_memory``, the analysis and extraction
CLIs, the benchmarks), made before jax starts its backend (thread arenas are
created then); a library import never does it. ``JAXTRANSFER_DEFAULT_MALLOC=1``
keeps glibc's defaults everywhere (e.g. to measure the difference). Elsewhere than
Linux with glibc it does nothing.

`shorten_blas_spin` is the other host setting: OpenBLAS's idle worker threads
spin for 2^28 cycles (about 0.1 s) before they sleep, and the CCA analysis on a CPU
alternates OpenBLAS Gram products (`analysis.cca.host_gram`) with XLA programs
whose threads lost a core to that spinning. OpenBLAS reads the setting once, when
NumPy first loads it, so the package applies it on import, before it imports NumPy.
"""

import ctypes
import os
import sys

DEFAULT_MALLOC_ENV = "JAXTRANSFER_DEFAULT_MALLOC"
BLAS_SPIN_ENV = "OPENBLAS_THREAD_TIMEOUT"

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


def shorten_blas_spin(log2_cycles: int = 20) -> None:
    """Lets OpenBLAS's idle worker threads sleep after 2^log2_cycles cycles of
    spinning (2^20: under a millisecond) instead of 2^28 (about 0.1 s).

    The shared-sample CCA call (`analysis.pairs.pairwise_mean_cca`, 5 x 10000 x 512
    data) took 0.167-0.175 s with OpenBLAS's default and 0.140-0.146 s with this
    (benchmarks/RESULTS.md). Has an effect only before NumPy first loads OpenBLAS;
    a value already in the environment is kept.
    """
    os.environ.setdefault(BLAS_SPIN_ENV, str(log2_cycles))
