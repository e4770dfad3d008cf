"""glibc's malloc thresholds fixed by the CLI, seen through mallinfo2 in a fresh interpreter."""
from __future__ import annotations

import subprocess
import sys

import pytest

_PROBE = """
import ctypes, sys
libc = ctypes.CDLL(None)
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                "fsmblks", "uordblks", "fordblks", "keepcost")]
libc.mallinfo2.restype = Info
libc.malloc.restype, libc.malloc.argtypes, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_size_t], [ctypes.c_void_p]
if sys.argv[1] == "pin":
    from vitlens_cli.allocator import pin_malloc_thresholds
    assert pin_malloc_thresholds()
before = libc.mallinfo2().hblks
block = libc.malloc(8 << 20)  # one batch's activation
mapped = libc.mallinfo2().hblks - before
libc.free(block)
kept = libc.mallinfo2().arena >= 8 << 20  # the heap still holds the freed block for the next batch
print(mapped, int(kept))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt/mallinfo2")
def test_fixed_thresholds_serve_large_blocks_from_the_heap_and_keep_them():
    # Fixed, an 8 MiB block is carved from the heap and stays there when freed, ready for the next batch; with
    # glibc's defaults (the control) it is mapped and given back, to be faulted in again.
    runs = {mode: subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True,
                                 timeout=120) for mode in ("pin", "control")}
    assert all(r.returncode == 0 for r in runs.values()), {m: r.stderr[-500:] for m, r in runs.items()}
    assert (runs["pin"].stdout.split(), runs["control"].stdout.split()) == (["0", "1"], ["1", "0"])
