"""Point-BERT tokenizer: Linear mini-PointNet == the official Conv1d one; grouping and token shapes."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from vitlens_cli.lenses import PointBertTokenizer
from vitlens_cli.lenses.point_bert import MiniPointNet


class OfficialEncoder(nn.Module):
    """The official Conv1d encoder, written from README §3.3 (points as channels, ``(BG, C, k)``)."""

    def __init__(self, encoder_dims: int) -> None:
        super().__init__()
        self.first_conv = nn.Sequential(nn.Conv1d(3, 128, 1), nn.BatchNorm1d(128), nn.ReLU(inplace=True),
                                        nn.Conv1d(128, 256, 1))
        self.second_conv = nn.Sequential(nn.Conv1d(512, 512, 1), nn.BatchNorm1d(512), nn.ReLU(inplace=True),
                                         nn.Conv1d(512, encoder_dims, 1))

    def forward(self, groups: torch.Tensor) -> torch.Tensor:
        b, g, k, _ = groups.shape
        x = groups.reshape(b * g, k, 3).transpose(2, 1)
        f = self.first_conv(x)
        glob = f.max(dim=2, keepdim=True)[0]
        f = torch.cat([glob.expand(-1, -1, k), f], dim=1)
        f = self.second_conv(f)
        return f.max(dim=2)[0].reshape(b, g, -1)


def _randomise(module: nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm1d):
            m.weight.data = 1 + 0.2 * torch.randn(m.weight.shape, generator=gen)
            m.bias.data = 0.1 * torch.randn(m.bias.shape, generator=gen)
            m.running_mean = 0.3 * torch.randn(m.running_mean.shape, generator=gen)
            m.running_var = 0.5 + torch.rand(m.running_var.shape, generator=gen)


def _copy_conv_to_linear(official: OfficialEncoder, ours: MiniPointNet) -> None:
    state = {k: (v[..., 0] if v.dim() == 3 else v) for k, v in official.state_dict().items()}
    ours.load_state_dict(state, strict=True)


@pytest.mark.parametrize("train", [False, True])
def test_linear_minipointnet_equals_conv1d(train: bool):
    torch.manual_seed(0)
    official, ours = OfficialEncoder(48), MiniPointNet(48)
    _randomise(official, 1)
    _copy_conv_to_linear(official, ours)
    official.train(train)
    ours.train(train)
    groups = torch.randn(2, 10, 16, 3)
    torch.testing.assert_close(ours(groups), official(groups), atol=1e-5, rtol=1e-4)
    if train:  # batch statistics were updated identically
        torch.testing.assert_close(ours.first_conv[1].running_mean, official.first_conv[1].running_mean)
        torch.testing.assert_close(ours.second_conv[1].running_var, official.second_conv[1].running_var)


def test_global_feature_comes_first():
    """Swapping the concat order (local first) must change the output: the test above can tell."""
    torch.manual_seed(0)
    official = OfficialEncoder(48).eval()
    _randomise(official, 1)
    ours = MiniPointNet(48).eval()
    _copy_conv_to_linear(official, ours)
    w = ours.second_conv[0].weight.data
    ours.second_conv[0].weight.data = torch.cat([w[:, 256:], w[:, :256]], dim=1)
    groups = torch.randn(1, 4, 16, 3)
    assert not torch.allclose(ours(groups), official(groups), atol=1e-3)


def test_tokens_shape_and_grouping():
    torch.manual_seed(0)
    tok = PointBertTokenizer(num_group=32, group_size=8, encoder_dims=48, trans_dim=40).eval()
    pts = torch.rand(2, 256, 3) * 2 - 1
    centers, idx, groups = tok.group(pts)
    assert centers.shape == (2, 32, 3) and idx.shape == (2, 32, 8) and groups.shape == (2, 32, 8, 3)
    assert idx.dtype == torch.int64
    # the centre is one of its neighbours (distance 0); groups are offsets from the centre
    torch.testing.assert_close(groups[:, :, 0], torch.zeros(2, 32, 3))
    for b in range(2):
        torch.testing.assert_close(groups[b], pts[b][idx[b]] - centers[b][:, None])
        # kNN: every neighbour is at least as close as every point outside the group
        d = ((pts[b][None] - centers[b][:, None]) ** 2).sum(-1)
        inside = torch.gather(d, 1, idx[b]).amax(1)
        mask = torch.ones_like(d, dtype=torch.bool).scatter_(1, idx[b], False)
        outside = d.masked_fill(~mask, float("inf")).amin(1)
        assert (inside <= outside).all()
    with torch.no_grad():
        out = tok(pts)
    assert out.shape == (2, 32, 40)
    # extra channels beyond xyz are ignored
    with torch.no_grad():
        torch.testing.assert_close(tok(torch.cat([pts, torch.rand(2, 256, 3)], -1)), out)


def test_tokens_are_order_invariant_in_the_group():
    """Max-pooling: the order of points inside the cloud does not matter except through FPS's start."""
    torch.manual_seed(0)
    tok = PointBertTokenizer(num_group=16, group_size=8, encoder_dims=48, trans_dim=40).eval()
    pts = torch.rand(1, 128, 3)
    perm = torch.cat([torch.zeros(1, dtype=torch.long), torch.randperm(127) + 1])  # keep the FPS start point
    with torch.no_grad():
        torch.testing.assert_close(tok(pts), tok(pts[:, perm]), atol=1e-5, rtol=1e-5)
