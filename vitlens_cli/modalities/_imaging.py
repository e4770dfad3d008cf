"""Tensor image operations shared by the depth, tactile and image modalities.

The official processors run torchvision 0.12/0.13 ``Resize``/``CenterCrop`` on float tensors: no
antialiasing (newer torchvision antialiases by default, which moves the outputs far outside the
parity tolerances), bicubic a = -0.75, no clamping, and Python's half-to-even rounding of the crop
offset. These functions pin that behaviour whatever torchvision is installed.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .base import ModalityError, ModalityFileError, first_line

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def resized_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """torchvision's ``Resize(int)`` geometry: the shorter side becomes ``short_side``, the longer
    side ``int(short_side * long / short)`` (truncated)."""
    if height <= width:
        return short_side, int(short_side * width / height)
    return int(short_side * height / width), short_side


def resize_short_side(x: torch.Tensor, short_side: int) -> torch.Tensor:
    """``(C, H, W)`` float → bicubic, ``align_corners=False``, no antialiasing, not clamped."""
    height, width = x.shape[-2:]
    size = resized_size(height, width, short_side)
    if size == (height, width):
        return x
    return F.interpolate(x[None], size=size, mode="bicubic", align_corners=False, antialias=False)[0]


def resize_bilinear(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(C, H, W)`` float → ``(C, *size)``, bilinear, ``align_corners=False``, no antialiasing (torchvision's
    tensor resize in the releases the official code ran)."""
    return F.interpolate(x[None], size=size, mode="bilinear", align_corners=False, antialias=False)[0]


def center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    height, width = x.shape[-2:]
    if height < size or width < size:
        raise ModalityError(f"cannot centre-crop {height}x{width} to {size}x{size}")
    top = int(round((height - size) / 2.0))
    left = int(round((width - size) / 2.0))
    return x[..., top:top + size, left:left + size]


def normalize_channels(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """``(x - mean[c]) / std[c]`` with float32 constants, as ``transforms.Normalize``."""
    mean_t = torch.tensor(mean, dtype=x.dtype).view(-1, 1, 1)
    std_t = torch.tensor(std, dtype=x.dtype).view(-1, 1, 1)
    return (x - mean_t) / std_t


def read_rgb(path: Path) -> np.ndarray:
    """``(H, W, 3)`` uint8, as ``PIL.Image.open(path).convert("RGB")`` decodes it."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            rgb = image.convert("RGB")
    except UnidentifiedImageError:
        raise ModalityFileError(path, "not an image file (unrecognised format)") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ModalityFileError(path, f"cannot decode image ({first_line(exc)})") from exc
    return np.array(rgb, dtype=np.uint8)  # a writable copy: torch warns on read-only views

