"""Process-wide CPU settings that make batch transforms on CPU fast; opt in, nothing here runs by itself.

Batched transforms allocate a fresh batch-sized tensor (tens to hundreds of MiB) per step. With the
C library's defaults each such buffer is a new ``mmap``: the kernel zero-fills and page-faults it 4 KiB at
a time, and returns it on ``free``, so the next step pays again. On a small machine that costs as much as
the arithmetic. And when a data loader decodes images next to the transforms, OpenMP worker threads that
spin while waiting take the cores the loader needs.

These settings change the whole process (allocator thresholds, environment variables read by torch and
OpenMP), so they apply only when asked for: ``viscy``/``dynaclr`` with ``--tune_cpu`` (or the environment
variable ``VISCY_TUNE_CPU=1``), or a call to :func:`tune_cpu_runtime` at the top of your own script, before
importing torch (the OpenMP setting is read when torch loads). Measured only on 2 cores; on a many-core
node, measure before relying on them. Every setting yields to an explicit choice: an environment
variable the user set wins.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

__all__ = ["enable_huge_page_buffers", "quiet_idle_openmp_threads", "retain_large_cpu_buffers", "tune_cpu_runtime"]

# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: allocations up to this size come from the reusable heap instead of a fresh mmap
MMAP_THRESHOLD_BYTES = 256 * 2**20
#: free memory at the top of the heap kept for reuse before any is returned to the system
TRIM_THRESHOLD_BYTES = 512 * 2**20


def enable_huge_page_buffers() -> None:
    """Ask torch to back large CPU tensors with transparent huge pages, unless the user decided already.

    Sets ``THP_MEM_ALLOC_ENABLE=1`` (a torch setting, read once, at torch's first allocation) when the
    variable is unset: a 2 MiB page faults once where 512 small pages fault 512 times. Measured on a 2-core
    machine, element-wise ops on a (64, 1, 8, 192, 192) batch ran 3-4x faster with huge pages, and the CPU
    augmentation chain of ``multi_experiment_fit.yml`` 1.3x faster. It must run before torch allocates
    anything to take effect; ``THP_MEM_ALLOC_ENABLE=0`` opts out.
    """
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")


def retain_large_cpu_buffers() -> bool:
    """Keep freed tensor buffers up to 256 MiB in the process for reuse instead of unmapping them (glibc).

    glibc serves every allocation above 32 MiB with its own ``mmap`` and unmaps it on ``free``; raising the
    mmap threshold to 256 MiB and the trim threshold to 512 MiB lets the next batch reuse the pages of the
    last one, already faulted in. Measured on a 2-core machine: an out-of-place op on a 52 MiB tensor
    15 ms -> 3 ms; the ``multi_experiment_fit.yml`` CPU transform chain 399 -> 290 ms per 64-sample key set
    (with huge pages). The cost: the process keeps its peak heap resident, like torch's CUDA caching allocator.

    Does nothing (and returns ``False``) when ``MALLOC_MMAP_THRESHOLD_`` or ``MALLOC_TRIM_THRESHOLD_`` is set
    (the user decided; glibc applied it at start-up) or when the C library is not glibc.

    Returns
    -------
    bool
        Whether both thresholds were set.
    """
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (macOS, musl without mallopt, Windows)
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # both: with the default 128 KiB trim threshold a freed buffer at the top of the heap goes straight back
    return bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)) and bool(
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    )


def quiet_idle_openmp_threads() -> None:
    """Let torch's OpenMP threads sleep as soon as they wait (``GOMP_SPINCOUNT=0``), unless the user decided.

    By default GNU OpenMP threads spin for a while after each parallel region; with a data loader decoding
    on the same cores they burn the CPU time the loader needs. Measured on 2 cores (loader + CPU transforms
    of ``multi_experiment_fit.yml``, with :func:`retain_large_cpu_buffers`): 41-57 -> 61-68 samples/s; the
    transforms alone are unchanged within noise. Skipped when ``GOMP_SPINCOUNT`` or ``OMP_WAIT_POLICY`` is
    set; read when torch loads its OpenMP runtime, so call it before importing torch.
    """
    if "OMP_WAIT_POLICY" not in os.environ:
        os.environ.setdefault("GOMP_SPINCOUNT", "0")


def tune_cpu_runtime() -> None:
    """Apply :func:`enable_huge_page_buffers`, :func:`retain_large_cpu_buffers` and :func:`quiet_idle_openmp_threads`.

    This is what ``viscy``/``dynaclr`` do first when given ``--tune_cpu`` (or ``VISCY_TUNE_CPU=1``); call it
    at the top of your own training or benchmark script, before importing torch, to get the same.
    """
    enable_huge_page_buffers()
    retain_large_cpu_buffers()
    quiet_idle_openmp_threads()
