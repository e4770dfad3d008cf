"""Learning-rate schedule: linear warm-up, then cosine decay to zero (or constant)."""
from __future__ import annotations

import math


def lr_factor(step: int, warmup: int, total: int, kind: str = "cosine") -> float:
    """Multiplier of the base learning rate for optimiser step ``step`` (0-based)."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if kind == "constant":
        return 1.0
    if kind != "cosine":
        raise ValueError(f"unknown schedule {kind!r}")
    span = max(1, total - warmup)
    progress = min(1.0, (step - warmup) / span)
    return 0.5 * (1.0 + math.cos(math.pi * progress))
