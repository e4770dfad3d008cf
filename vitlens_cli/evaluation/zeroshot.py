"""Zero-shot classifier from class names and prompt templates (the official averaging rule)."""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def class_prompts(classnames: Sequence[str], templates: Sequence[str]) -> list[list[str]]:
    return [[t.format(c) for t in templates] for c in classnames]


@torch.no_grad()
def zeroshot_classifier(model, classnames: Sequence[str], templates: Sequence[str]) -> torch.Tensor:
    """``(C, E)``: per class, normalise every prompt embedding, average, normalise again."""
    rows = []
    for prompts in class_prompts(classnames, templates):
        emb = F.normalize(model.encode_text(prompts), dim=-1)
        rows.append(F.normalize(emb.mean(dim=0), dim=-1))
    return torch.stack(rows)


def zeroshot_logits(point_embeddings: torch.Tensor, classifier: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of each (normalised) point embedding with each class."""
    return F.normalize(point_embeddings, dim=-1) @ classifier.T
