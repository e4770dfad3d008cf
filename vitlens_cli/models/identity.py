"""What names a frozen tower's weights, for the caches keyed by them (training features, zero-shot classifiers)."""
from __future__ import annotations

import json
from pathlib import Path


def tower_identity(clip_model: str | None, clip_pretrained: str | None, spec: str, seed: int,
                   sha256: str | None = None) -> str:
    """What names a frozen tower's weights: a checkpoint file's sha256, an open_clip tag, or a seeded init.

    Cheap next to hashing the tower's tensors (gigabytes for bigG): a file is read once per run, or not at
    all when its ``sha256`` is already known (the Hub's record, checked on download); a tag or a seed is
    only a name.
    """
    if clip_pretrained and Path(clip_pretrained).is_file():
        from ..atomic import file_digest

        weights = "sha256:" + (sha256 or file_digest(clip_pretrained)[0])
    elif clip_model:
        weights = f"open_clip:{clip_pretrained}" if clip_pretrained else f"random:seed={seed}"
    else:
        weights = f"random:seed={seed}"
    return json.dumps({"model": clip_model or spec, "weights": weights}, sort_keys=True)
