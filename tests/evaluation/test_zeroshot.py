"""Zero-shot classifier rule (normalise → mean → normalise) and cosine logits, with a stub text encoder."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from vitlens_cli.evaluation.zeroshot import class_prompts, zeroshot_classifier, zeroshot_logits


class StubText:
    """Deterministic prompt → embedding table with very different norms per prompt."""

    def __init__(self, table: dict[str, torch.Tensor]) -> None:
        self.table = table
        self.calls: list[list[str]] = []

    def encode_text(self, prompts):
        self.calls.append(list(prompts))
        return torch.stack([self.table[p] for p in prompts])


def test_class_prompts():
    assert class_prompts(["cat", "flower pot"], ["a {}.", "the {} here"]) == [
        ["a cat.", "the cat here"], ["a flower pot.", "the flower pot here"]]


def test_rule_normalises_each_prompt_before_averaging():
    table = {"a x": torch.tensor([100.0, 0.0]), "b x": torch.tensor([0.0, 1.0]),
             "a y": torch.tensor([1.0, 1.0]), "b y": torch.tensor([-3.0, 3.0])}
    model = StubText(table)
    clf = zeroshot_classifier(model, ["x", "y"], ["a {}", "b {}"])
    assert model.calls == [["a x", "b x"], ["a y", "b y"]]
    s = 2**-0.5
    # x: mean of (1,0) and (0,1) → (s, s); averaging raw embeddings would give ≈ (1, 0.01)
    torch.testing.assert_close(clf[0], torch.tensor([s, s]))
    torch.testing.assert_close(clf[1], torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(clf.norm(dim=-1), torch.ones(2))


def test_logits_are_cosine_without_scale():
    clf = F.normalize(torch.randn(7, 16), dim=-1)
    emb = torch.randn(3, 16) * 50
    logits = zeroshot_logits(emb, clf)
    assert logits.shape == (3, 7)
    assert logits.abs().max() <= 1 + 1e-6
    torch.testing.assert_close(logits, F.cosine_similarity(emb[:, None], clf[None], dim=-1))
