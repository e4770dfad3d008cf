"""The process's C allocator: settings that only the program owning the process should make.

A library call must not change them behind its caller's back (they hold for the rest of the process and
cannot be undone), so the CLI commands that stream many files call :func:`pin_malloc_thresholds` themselves.
"""
from __future__ import annotations

import ctypes
import sys

# glibc's mallopt parameter numbers
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 64 << 20     # blocks smaller than this come from the heap
TRIM_THRESHOLD = 256 << 20    # free memory at the heap's top kept for the next batch before it is given back


def pin_malloc_thresholds() -> bool:
    """Fix glibc's mmap threshold (64 MiB) and trim threshold (256 MiB) for the rest of the process.

    By default glibc maps every block from 128 KiB up and moves both thresholds as mapped blocks are freed, so
    a forward's activations (a few MiB each, every batch) are mapped, faulted in page by page and unmapped, and
    the heap top is trimmed and grown again, until the thresholds have drifted up, and the drift depends on the
    order of the frees. Fixed high, those blocks are carved from the heap and reused batch after batch, with the
    same peak whatever the number of files (``benchmarks/bench_embed.py --part allocator``: files/s and peak
    RSS of ``vitlens embed`` on 1,000 and 10,000 files, against glibc's defaults and against the mmap threshold
    pinned at 128 KiB, which this replaced). Returns whether they were set (False off glibc).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # a libc without mallopt: nothing to set
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
