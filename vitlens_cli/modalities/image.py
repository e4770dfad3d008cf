"""RGB images for the CLIP image tower, through open_clip's own eval transform.

The contract holds the fields of open_clip's ``PreprocessCfg`` (the model card records the CLIP
checkpoint's values), so images are fed exactly as the frozen CLIP image tower expects.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ._imaging import IMAGE_SUFFIXES, read_rgb
from .base import Modality, ModalityError
from .tactile import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD


@dataclass(frozen=True)
class ImageContract:
    """open_clip's eval preprocessing (defaults: the OpenAI / ViT-L-14 CLIP towers)."""

    size: int = 224
    mean: tuple[float, float, float] = OPENAI_CLIP_MEAN
    std: tuple[float, float, float] = OPENAI_CLIP_STD
    interpolation: str = "bicubic"
    resize_mode: str = "shortest"
    fill_color: int = 0


@lru_cache(maxsize=8)
def _transform(contract: ImageContract) -> Callable:
    from open_clip.transform import PreprocessCfg, image_transform_v2

    try:
        return image_transform_v2(PreprocessCfg(**asdict(contract)), is_train=False)
    except (AssertionError, ValueError, KeyError) as exc:
        raise ModalityError(f"open_clip cannot build this image transform: {exc}") from exc


def preprocess(rgb: np.ndarray, contract: ImageContract) -> torch.Tensor:
    """``(3, size, size)`` float32."""
    from PIL import Image

    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ModalityError(f"expected (H, W, 3) uint8 RGB pixels, got {rgb.shape} {rgb.dtype}")
    return _transform(contract)(Image.fromarray(rgb, mode="RGB"))


def read(path: Path) -> np.ndarray:
    return read_rgb(path)


MODALITY = Modality(
    name="image", lens="image", contract=ImageContract,
    extensions=(), ambiguous_extensions=IMAGE_SUFFIXES, reader=read, preprocessor=preprocess,
    description="RGB images for the CLIP image tower itself",
)
