"""glibc mmap threshold pinning, seen through mallinfo2 in a fresh interpreter."""
from __future__ import annotations

import subprocess
import sys

import pytest

_MMAP_PROBE = """
import ctypes, sys
libc = ctypes.CDLL(None)
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                "fsmblks", "uordblks", "fordblks", "keepcost")]
libc.mallinfo2.restype = Info
libc.malloc.restype, libc.malloc.argtypes, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_size_t], [ctypes.c_void_p]
if sys.argv[1] == "pin":
    from vitlens_cli.allocator import pin_mmap_threshold
    assert pin_mmap_threshold()
big = libc.malloc(24 << 20)
libc.free(big)  # freeing a mapped block raises glibc's threshold to its size, unless it is pinned
before = libc.mallinfo2().hblks
block = libc.malloc(8 << 20)
print(libc.mallinfo2().hblks - before)
libc.free(block)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt/mallinfo2")
def test_pinned_mmap_threshold_keeps_large_blocks_mapped():
    # Pinned, large per-batch arrays are mapped and returned, not carved from a heap that fragments
    # (vitlens embed's RSS grew per file); the unpinned control shows the difference.
    runs = {mode: subprocess.run([sys.executable, "-c", _MMAP_PROBE, mode], capture_output=True, text=True,
                                 timeout=120) for mode in ("pin", "control")}
    assert all(r.returncode == 0 for r in runs.values()), {m: r.stderr[-500:] for m, r in runs.items()}
    assert (runs["pin"].stdout.strip(), runs["control"].stdout.strip()) == ("1", "0")
