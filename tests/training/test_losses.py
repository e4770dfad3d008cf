"""TriClipLoss: the four terms, their directions, weighting and the logit-scale convention."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from vitlens_cli.training.losses import TriClipLoss, triclip_terms


def _feats(seed: int, b: int = 6, d: int = 16):
    g = torch.Generator().manual_seed(seed)
    return [F.normalize(torch.randn(b, d, generator=g), dim=-1) for _ in range(3)]


def _ce(logits: torch.Tensor) -> float:
    return float(-(torch.log_softmax(logits, dim=1).diagonal()).mean())


def test_terms_by_hand():
    img, txt, lens = _feats(0)
    s = 10.0
    terms = triclip_terms(img, txt, lens, s)
    ref = [_ce(s * img @ lens.T), _ce(s * lens @ img.T), _ce(s * txt @ lens.T), _ce(s * lens @ txt.T)]
    torch.testing.assert_close(terms, torch.tensor(ref), atol=1e-6, rtol=1e-6)
    assert TriClipLoss()(img, txt, lens, s).item() == pytest.approx(sum(ref) / 2, rel=1e-6)


def test_order_and_direction_matter():
    img, txt, lens = _feats(1)
    terms = triclip_terms(img, txt, lens, 20.0)
    assert len({round(float(t), 5) for t in terms}) == 4
    swapped = triclip_terms(txt, img, lens, 20.0)
    torch.testing.assert_close(swapped, terms[[2, 3, 0, 1]])


def test_logit_scale_is_a_multiplier_and_may_be_a_tensor():
    img, txt, lens = _feats(2)
    log_scale = torch.tensor(math.log(30.0), requires_grad=True)
    loss = TriClipLoss()(img, txt, lens, log_scale.exp())
    assert loss.item() == pytest.approx(TriClipLoss()(img, txt, lens, 30.0).item(), rel=1e-6)
    loss.backward()
    assert log_scale.grad is not None and log_scale.grad.abs() > 0


def test_perfect_alignment_with_large_scale_is_near_zero():
    img, _, _ = _feats(3, b=4, d=8)
    eye = torch.eye(4, 8)
    assert TriClipLoss()(eye, eye, eye, 100.0).item() < 1e-6
    assert TriClipLoss()(img, img, img, 1.0).item() > 1.0


def test_uniform_logits_give_log_b_per_term():
    b = 5
    z = torch.zeros(b, 8)
    z[:, 0] = 1.0  # every pair has the same similarity
    terms = triclip_terms(z, z, z, 7.0)
    torch.testing.assert_close(terms, torch.full((4,), math.log(b)))
    assert TriClipLoss()(z, z, z, 7.0).item() == pytest.approx(2 * math.log(b))
