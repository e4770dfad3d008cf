"""The machine a benchmark ran on, recorded beside every result: CPU model, the SIMD flags that matter, threads."""
from __future__ import annotations

import os
import platform
from pathlib import Path

_FLAG_PREFIXES = ("avx", "sse4", "fma", "f16c", "amx")


def cpu_info() -> dict:
    info: dict = {"machine": platform.machine(), "logical_cpus": os.cpu_count(), "python": platform.python_version()}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and "model" not in info:
            info["model"] = value.strip()
        if key.strip() == "flags" and "simd_flags" not in info:
            info["simd_flags"] = sorted(f for f in value.split() if f.startswith(_FLAG_PREFIXES))
    try:
        import torch
    except ImportError:
        return info
    info["torch"] = torch.__version__
    info["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    info["torch_threads"] = torch.get_num_threads()
    return info
