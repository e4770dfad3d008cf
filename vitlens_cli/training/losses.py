"""Contrastive losses that align lens embeddings with CLIP image and text embeddings."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _ce(logits: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, torch.arange(logits.shape[0], device=logits.device))


def triclip_terms(image: torch.Tensor, text: torch.Tensor, lens: torch.Tensor,
                  logit_scale: torch.Tensor | float) -> torch.Tensor:
    """The four cross-entropies (image→lens, lens→image, text→lens, lens→text) on L2-normalised features."""
    s = logit_scale
    return torch.stack([_ce(s * image @ lens.T), _ce(s * lens @ image.T),
                        _ce(s * text @ lens.T), _ce(s * lens @ text.T)])


class TriClipLoss(nn.Module):
    """ViT-Lens's lens↔image + lens↔text loss: the sum of the four terms over two.

    Features must already be L2-normalised; ``logit_scale`` is the multiplier (exp of the learnt log).
    """

    def forward(self, image: torch.Tensor, text: torch.Tensor, lens: torch.Tensor,
                logit_scale: torch.Tensor | float) -> torch.Tensor:
        return triclip_terms(image, text, lens, logit_scale).sum() / 2


def clip_loss(text: torch.Tensor, lens: torch.Tensor, logit_scale: torch.Tensor | float) -> torch.Tensor:
    """Lens ↔ text only, for data without images: the two text terms of :func:`triclip_terms`, averaged."""
    s = logit_scale
    return (_ce(s * text @ lens.T) + _ce(s * lens @ text.T)) / 2
