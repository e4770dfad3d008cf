"""Perceiver resampler: weight tying, parameter count, shapes, order invariance, block order."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vitlens_cli.lenses import PerceiverResampler

KW = dict(input_chan=40, num_latents=16, latent_dim=64, latent_heads=4, latent_dim_head=12, cross_heads=1,
          cross_dim_head=24, self_per_cross_attn=1)


def count(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_tied_layers_share_parameters():
    torch.manual_seed(0)
    tied = PerceiverResampler(depth=3, weight_tie_layers=True, **KW)
    assert tied.layers[1] is tied.layers[2]
    assert tied.layers[0] is not tied.layers[1]
    assert tied.layers[1][0].fn.to_q.weight is tied.layers[2][0].fn.to_q.weight
    # the state dict still lists every layer (official layout), with layers.2 == layers.1
    sd = tied.state_dict()
    assert "perceiver" not in sd and "layers.2.0.fn.to_q.weight" in sd
    assert torch.equal(sd["layers.2.2.0.1.fn.net.0.weight"], sd["layers.1.2.0.1.fn.net.0.weight"])
    assert not torch.equal(sd["layers.0.0.fn.to_q.weight"], sd["layers.1.0.fn.to_q.weight"])


def test_tied_weight_count():
    torch.manual_seed(0)
    untied2 = PerceiverResampler(depth=2, **KW)
    untied3 = PerceiverResampler(depth=3, **KW)
    tied3 = PerceiverResampler(depth=3, weight_tie_layers=True, **KW)
    tied5 = PerceiverResampler(depth=5, weight_tie_layers=True, **KW)
    per_layer = count(untied3) - count(untied2)
    assert per_layer > 0
    assert count(tied3) == count(untied2) == count(tied5)
    assert count(untied3) == count(untied2) + per_layer
    # per layer: cross (norms 2·64 + 2·40, q 64·24, kv 40·48, out 24·64+64) + 2 FF + self attn
    ff = 2 * 64 + (64 * 512 + 512) + (256 * 64 + 64)
    cross = 2 * 64 + 2 * 40 + 64 * 24 + 40 * 48 + 24 * 64 + 64
    self_attn = 2 * 64 + 64 * 48 + 64 * 96 + 48 * 64 + 64
    assert per_layer == cross + ff + self_attn + ff


def test_tied_depth_one_and_two_are_plain():
    t = PerceiverResampler(depth=2, weight_tie_layers=True, **KW)
    assert t.layers[0] is not t.layers[1]
    assert len(PerceiverResampler(depth=1, weight_tie_layers=True, **KW).layers) == 1


def test_output_shape_and_no_final_norm():
    torch.manual_seed(0)
    p = PerceiverResampler(depth=2, **KW).eval()
    out = p(torch.randn(3, 64, 40))
    assert out.shape == (3, 16, 64)
    assert not any(isinstance(m, torch.nn.LayerNorm) and n.count(".") == 0 for n, m in p.named_modules())
    # no final LayerNorm: the rows are not normalised
    assert not torch.allclose(out.mean(-1), torch.zeros(3, 16), atol=1e-3)


def test_cross_attention_is_order_invariant():
    torch.manual_seed(0)
    p = PerceiverResampler(depth=2, **KW).eval()
    x = torch.randn(2, 64, 40)
    perm = torch.randperm(64)
    with torch.no_grad():
        torch.testing.assert_close(p(x), p(x[:, perm]), atol=1e-5, rtol=1e-5)


def test_latents_are_shared_across_the_batch():
    torch.manual_seed(0)
    p = PerceiverResampler(depth=1, **KW).eval()
    x = torch.randn(2, 10, 40)
    with torch.no_grad():
        both = p(x)
        torch.testing.assert_close(both[1:], p(x[1:]), atol=1e-5, rtol=1e-5)


def _attention(fn, q_in, ctx, heads, dh):
    q = F.linear(q_in, fn.to_q.weight)
    kv = F.linear(ctx, fn.to_kv.weight)
    k, v = kv[..., :heads * dh], kv[..., heads * dh:]

    def split(t):
        return t.reshape(*t.shape[:2], heads, dh).transpose(1, 2)

    a = torch.softmax(split(q) @ split(k).transpose(-1, -2) * dh**-0.5, dim=-1)
    out = (a @ split(v)).transpose(1, 2).reshape(q.shape[0], q.shape[1], heads * dh)
    return F.linear(out, fn.to_out.weight, fn.to_out.bias)


def _ff(fn, x):
    u = fn.net[0](x)
    a, g = u.chunk(2, dim=-1)
    return fn.net[2](a * F.gelu(g))


@pytest.mark.parametrize("self_per_cross", [1, 2])
def test_matches_readme_formula(self_per_cross: int):
    """README §3.5 written out by hand against the module's parameters."""
    torch.manual_seed(1)
    kw = dict(KW, self_per_cross_attn=self_per_cross)
    p = PerceiverResampler(depth=2, **kw).eval()
    for prm in p.parameters():  # non-trivial norms and biases
        if prm.dim() == 1:
            prm.data.normal_(0.3, 0.5)
    x = torch.randn(2, 20, 40)
    z = p.latents.expand(2, -1, -1)
    for cross, cross_ff, selfs in p.layers:
        z = z + _attention(cross.fn, cross.norm(z), cross.norm_context(x), 1, 24)
        z = z + _ff(cross_ff.fn, cross_ff.norm(z))
        for attn, ff in selfs:
            h = attn.norm(z)
            z = z + _attention(attn.fn, h, h, 4, 12)
            z = z + _ff(ff.fn, ff.norm(z))
    with torch.no_grad():
        torch.testing.assert_close(p(x), z, atol=1e-5, rtol=1e-5)
