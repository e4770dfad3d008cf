"""Where vitlens keeps what it can rebuild (classifiers, caption embeddings, checkpoint verifications):
``$VITLENS_CACHE``, else ``~/.cache/vitlens``."""
from __future__ import annotations

import os
from pathlib import Path


def cache_dir(kind: str) -> Path:
    """The folder of one kind of cached thing; it need not exist yet."""
    return Path(os.environ.get("VITLENS_CACHE", Path.home() / ".cache" / "vitlens")) / kind
