"""Patch tokenizers of the depth, audio, tactile/image and EEG lenses (the official modules' maths and keys).

Each returns ``(B, tokens, width)`` rows ready for the Perceiver or the ViT; the learned ``pos_emb``
of the depth, audio and EEG tokenizers is added here (the ViT's own ``positional_embedding`` is a
second, separate term added by the tower).
"""
from __future__ import annotations

import torch
from torch import nn


def _tokens(x: torch.Tensor) -> torch.Tensor:
    """Conv output ``(B, W, *grid)`` → ``(B, prod(grid), W)``, row-major over the grid."""
    return x.flatten(2).transpose(1, 2)


class DepthTokenizer(nn.Module):
    """``(B, 1, H, W)`` disparity → bias-free ``p × p`` patch conv (stride p) + ``pos_emb``."""

    def __init__(self, image_size: int, patch_size: int, width: int) -> None:
        super().__init__()
        grid = image_size // patch_size
        self.conv1 = nn.Conv2d(1, width, kernel_size=patch_size, stride=patch_size, bias=False)
        self.pos_emb = nn.Parameter(width**-0.5 * torch.randn(grid * grid, width))

    def forward(self, depth: torch.Tensor) -> torch.Tensor:
        return _tokens(self.conv1(depth)) + self.pos_emb.to(depth.dtype)


class ASTTokenizer(nn.Module):
    """``(B, T, F)`` log-mel frames → the (F, T) image → overlapping ``k × k`` conv, strides (f, t).

    Tokens are frequency-major (``n = f · t_dim + t``), as in AST.
    """

    def __init__(self, mel_bins: int, target_length: int, patch_size: int, fstride: int, tstride: int,
                 width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, kernel_size=patch_size, stride=(fstride, tstride), bias=False)
        f_dim = (mel_bins - patch_size) // fstride + 1
        t_dim = (target_length - patch_size) // tstride + 1
        self.pos_emb = nn.Parameter(width**-0.5 * torch.randn(f_dim * t_dim, width))

    def forward(self, fbank: torch.Tensor) -> torch.Tensor:
        return _tokens(self.conv1(fbank.unsqueeze(1).transpose(2, 3))) + self.pos_emb.to(fbank.dtype)


class PatchEmbed1D(nn.Module):
    """``(B, C, T)`` EEG → Conv1d over time (window k, stride s, with bias) + ``pos_emb``."""

    def __init__(self, channels: int, time_len: int, window_size: int, stride: int, width: int) -> None:
        super().__init__()
        self.proj = nn.Conv1d(channels, width, kernel_size=window_size, stride=stride)
        self.pos_emb = nn.Parameter(width**-0.5 * torch.randn((time_len - window_size) // stride + 1, width))

    def forward(self, eeg: torch.Tensor) -> torch.Tensor:
        return self.proj(eeg).transpose(1, 2) + self.pos_emb.to(eeg.dtype)


class ImagePatchEmbed(nn.Conv2d):
    """CLIP's RGB stem: a bias-free ``p × p`` conv (stride p), no tokenizer ``pos_emb``.

    It sits at the tower level as ``conv1`` (the tactile lens is a whole CLIP image tower whose
    stem and first blocks were fine-tuned), so its key is ``conv1.weight`` as in open_clip.
    """

    def __init__(self, in_channels: int, patch_size: int, width: int) -> None:
        super().__init__(in_channels, width, kernel_size=patch_size, stride=patch_size, bias=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return _tokens(super().forward(image))
