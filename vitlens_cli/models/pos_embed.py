"""Positional-embedding resize from a CLIP patch grid to the lens's latent count."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def resize_pos_embed(pos: torch.Tensor, num_latents: int) -> torch.Tensor:
    """``(grid²+1, W)`` → ``(num_latents+1, W)``, the official rule.

    Row 0 (class token) is kept. The grid is resized to ``s × s`` with ``s = ⌊√num_latents⌋`` by
    antialiased bicubic interpolation (``align_corners=False``); when ``s² ≠ num_latents`` a 1-D
    nearest resize along the token axis makes up the count.
    """
    cls_row, grid_rows = pos[:1], pos[1:]
    grid = math.isqrt(grid_rows.shape[0])
    if grid * grid != grid_rows.shape[0]:
        raise ValueError(f"positional embedding has {grid_rows.shape[0]} grid rows, not a square")
    width = pos.shape[1]
    side = math.isqrt(num_latents)
    img = grid_rows.reshape(1, grid, grid, width).permute(0, 3, 1, 2)
    resized = F.interpolate(img.float(), size=(side, side), mode="bicubic", antialias=True, align_corners=False)
    rows = resized.permute(0, 2, 3, 1).reshape(side * side, width)
    if side * side != num_latents:
        rows = F.interpolate(rows.T[None], size=num_latents, mode="nearest")[0].T
    return torch.cat([cls_row, rows.to(pos.dtype)], dim=0)
