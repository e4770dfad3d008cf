"""The process's C allocator: settings that only the program owning the process should make.

A library call must not change them behind its caller's back (they hold for the rest of the process and
cannot be undone), so the CLI commands that stream many files call :func:`pin_mmap_threshold` themselves.
"""
from __future__ import annotations

import ctypes
import sys

_M_MMAP_THRESHOLD = -3          # glibc's mallopt parameter number
_MMAP_THRESHOLD = 128 * 1024    # glibc's own starting value


def pin_mmap_threshold() -> bool:
    """Keep glibc's mmap threshold fixed (at its default, 128 KiB) for the rest of the process.

    glibc raises the threshold each time a mapped block is freed, up to 32 MiB; after the first batches the
    forward's activations (and the readers' arrays) are then carved from the heap instead of mapped and
    unmapped, and the heap fragments: ``vitlens embed``'s peak RSS grew ~30-45 KB per file embedded, without
    any Python object kept (``benchmarks/README.md``, "Embed streaming"). Pinned, large blocks go back to the
    system when freed and the peak stays flat. Returns whether it was pinned (False off glibc).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # a libc without mallopt: nothing to pin
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD))
