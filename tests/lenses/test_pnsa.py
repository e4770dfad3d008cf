"""PointNet++ set-abstraction tokenizer: Linear == official Conv2d/BN2d, ball-query semantics, shapes."""
from __future__ import annotations

import torch
from torch import nn

from vitlens_cli.lenses import PNSATokenizer
from vitlens_cli.lenses.pnsa import SetAbstraction


class OfficialSAMLP(nn.Module):
    """Official layout: grouped features as ``(B, C, k, G)``, Conv2d 1×1 + BatchNorm2d + ReLU, max over k."""

    def __init__(self, in_channels: int, encoder_dims: int) -> None:
        super().__init__()
        widths = [in_channels + 3, 64, 64, encoder_dims]
        self.mlp_convs = nn.ModuleList(nn.Conv2d(a, b, 1) for a, b in zip(widths[:-1], widths[1:]))
        self.mlp_bns = nn.ModuleList(nn.BatchNorm2d(b) for b in widths[1:])

    def forward(self, grouped: torch.Tensor) -> torch.Tensor:  # (B, G, k, C)
        h = grouped.permute(0, 3, 2, 1)
        for conv, bn in zip(self.mlp_convs, self.mlp_bns):
            h = torch.relu(bn(conv(h)))
        return h.max(dim=2)[0].transpose(1, 2)  # (B, G, D)


def test_set_abstraction_linear_equals_conv2d():
    torch.manual_seed(0)
    official, ours = OfficialSAMLP(6, 48), SetAbstraction(6, 48)
    for bn in official.mlp_bns:
        bn.weight.data.normal_(1, 0.2)
        bn.bias.data.normal_(0, 0.1)
        bn.running_mean.normal_(0, 0.3)
        bn.running_var.uniform_(0.5, 1.5)
    state = {k: (v[..., 0, 0] if v.dim() == 4 else v) for k, v in official.state_dict().items()}
    ours.load_state_dict(state, strict=True)
    official.eval()
    ours.eval()
    grouped = torch.randn(2, 12, 32, 9)
    torch.testing.assert_close(ours(grouped), official(grouped), atol=1e-5, rtol=1e-4)


def test_tokens_shape_and_rgb_matters():
    torch.manual_seed(0)
    tok = PNSATokenizer(in_channels=6, num_group=16, group_size=8, radius=0.3, encoder_dims=48, trans_dim=40).eval()
    xyz = torch.rand(2, 200, 3) * 2 - 1
    rgb = torch.rand(2, 200, 3)
    with torch.no_grad():
        out = tok(torch.cat([xyz, rgb], -1))
        other = tok(torch.cat([xyz, 1 - rgb], -1))
    assert out.shape == (2, 16, 40)
    assert not torch.allclose(out, other, atol=1e-4), "rgb is part of the grouped features"
    # LayerNorm at the end: every token is normalised up to its affine parameters
    ln = tok.lift[2]
    pre = (out - ln.bias) / ln.weight
    torch.testing.assert_close(pre.mean(-1), torch.zeros(2, 16), atol=1e-4, rtol=0)


def test_state_dict_keys_are_official():
    tok = PNSATokenizer(in_channels=6, num_group=16, group_size=8, radius=0.3, encoder_dims=48, trans_dim=40)
    keys = set(tok.state_dict())
    assert {"sa.mlp_convs.0.weight", "sa.mlp_bns.2.running_var", "lift.0.weight", "lift.2.bias"} <= keys
    assert tok.state_dict()["sa.mlp_convs.0.weight"].shape == (64, 9)
    assert tok.state_dict()["lift.0.weight"].shape == (40, 3 + 48)
