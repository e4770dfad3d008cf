"""vitlens: ViT-Lens for every modality (3D, depth, audio, tactile, EEG, images) — embed, evaluate, search,
train and ask, on CPU or GPU.

The public names load on first use, so ``import vitlens_cli`` (and the CLI's ``--help``) does not pay
for torch and open_clip until a model is actually needed.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
_EXPORTS = {
    "ViTLens": "vitlens_cli.models", "list_models": "vitlens_cli.models", "load_model": "vitlens_cli.models",
    "prepare_points": "vitlens_cli.models", "PointCloud": "vitlens_cli.points", "read_points": "vitlens_cli.points",
}
__all__ = ["PointCloud", "ViTLens", "__version__", "list_models", "load_model", "prepare_points", "read_points"]

if TYPE_CHECKING:
    from .models import ViTLens, list_models, load_model, prepare_points
    from .points import PointCloud, read_points


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'vitlens_cli' has no attribute {name!r}")
