"""Which model an index was built with, recorded so that search uses the same one."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import VitlensError

# Elements sampled per tensor: enough to tell two checkpoints apart, cheap even for ViT-bigG (GBs of weights).
_SAMPLES = 4096


@dataclass(frozen=True)
class ModelRef:
    """How to load a model: a zoo name, or a checkpoint (with an optional config), as ``load_model`` takes."""

    name: str | None = None
    checkpoint: str | None = None
    config: str | None = None

    def __post_init__(self) -> None:
        if self.checkpoint is not None:
            object.__setattr__(self, "checkpoint", os.path.abspath(self.checkpoint))
        if self.config is not None:
            object.__setattr__(self, "config", os.path.abspath(self.config))

    def load(self, device: str = "cpu"):
        from ..models import load_model

        if self.checkpoint is not None and not Path(self.checkpoint).exists():
            raise VitlensError(f"{self.checkpoint}: checkpoint not found (pass --checkpoint where it is now)")
        return load_model(self.name if self.checkpoint is None else None, checkpoint=self.checkpoint,
                          config=self.config, device=device)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "checkpoint": self.checkpoint, "config": self.config}


def fingerprint(model) -> str:
    """A digest of the configuration and a fixed sample of every weight tensor."""
    import json

    import torch

    h = hashlib.sha256(b"vitlens-model/1")
    # The card (name, source path) is left out: a checkpoint moved to another folder is the same model.
    cfg = {k: v for k, v in model.cfg.to_dict().items() if k != "card"}
    h.update(json.dumps(cfg, sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().reshape(-1)
        h.update(f"{name}|{t.dtype}|{tuple(tensor.shape)}".encode())
        if t.numel():
            idx = torch.linspace(0, t.numel() - 1, min(_SAMPLES, t.numel()), device=t.device).long()
            h.update(t[idx].float().cpu().numpy().tobytes())
    return h.hexdigest()


def record(ref: ModelRef, model) -> dict[str, Any]:
    return {**ref.to_dict(), "card": model.cfg.card.name, "dim": int(model.embed_dim),
            "modalities": list(getattr(model, "modalities", ["3d"])), "fingerprint": fingerprint(model)}


def describe(rec: dict[str, Any]) -> str:
    return rec.get("checkpoint") or rec.get("name") or rec.get("card") or "?"
