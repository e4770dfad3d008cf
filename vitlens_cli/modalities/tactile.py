"""Tactile (GelSight) frames: RGB images through the official tactile processor.

Unlike the RGB-image processor, the official one converts to a float tensor *first* and then resizes
the tensor (bicubic, no antialiasing): ``ToTensor → Resize(256) → CenterCrop(224) → Normalize``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ._imaging import IMAGE_SUFFIXES, center_crop, normalize_channels, read_rgb, resize_short_side
from .base import Modality, ModalityError

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class TactileContract:
    """The Touch-and-Go eval processor of ``vitlensL_tactile.pt`` / the one-stop ``TactileProcessor``."""

    resize: int = 256
    crop: int = 224
    mean: tuple[float, float, float] = OPENAI_CLIP_MEAN
    std: tuple[float, float, float] = OPENAI_CLIP_STD


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """``(H, W, 3)`` uint8 → ``(3, H, W)`` float32 in [0, 1] (``ToTensor``: uint8 / 255 in float32)."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ModalityError(f"expected (H, W, 3) uint8 RGB pixels, got {rgb.shape} {rgb.dtype}")
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).to(torch.float32).div(255)


def preprocess(rgb: np.ndarray, contract: TactileContract) -> torch.Tensor:
    """``(3, crop, crop)`` float32."""
    x = center_crop(resize_short_side(to_tensor(rgb), contract.resize), contract.crop)
    return normalize_channels(x, contract.mean, contract.std)


def read(path: Path) -> np.ndarray:
    return read_rgb(path)


MODALITY = Modality(
    name="tactile", lens="tactile_vit", contract=TactileContract,
    extensions=(), ambiguous_extensions=IMAGE_SUFFIXES, reader=read, preprocessor=preprocess,
    description="GelSight tactile frames (RGB images; the tower is a CLIP ViT with its own early weights)",
)
