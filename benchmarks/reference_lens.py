"""A plain, literal implementation of the lens tower from the parity spec: the benchmark baseline.

It mirrors how the official code computes (a Python-loop FPS over a size-3 reduction, cdist+topk
kNN, 1×1 convolutions, einsum attention, no_grad rather than inference mode) while reading the very
same weights as our model, so speed is compared on identical outputs. Not used by the package.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def fps_loop(xyz: torch.Tensor, m: int) -> torch.Tensor:
    b, n, _ = xyz.shape
    idx = torch.zeros(b, m, dtype=torch.long)
    dist = torch.full((b, n), 1e10)
    far = torch.zeros(b, dtype=torch.long)
    rows = torch.arange(b)
    for i in range(m):
        idx[:, i] = far
        c = xyz[rows, far][:, None, :]
        dist = torch.minimum(dist, ((xyz - c) ** 2).sum(-1))
        far = dist.argmax(dim=1)
    return idx


def _bn(x, sd, p):  # channels-first eval BatchNorm
    return F.batch_norm(x, sd[p + ".running_mean"], sd[p + ".running_var"], sd[p + ".weight"], sd[p + ".bias"],
                        False, 0.0, 1e-5)


def _conv(x, sd, p):
    w = sd[p + ".weight"]
    return F.conv1d(x, w.reshape(w.shape[0], w.shape[1], 1), sd[p + ".bias"])


def pointbert_tokens(sd, pts, num_group, group_size):
    b = pts.shape[0]
    idx = fps_loop(pts, num_group)
    centers = pts[torch.arange(b)[:, None], idx]
    knn = torch.cdist(centers, pts).topk(group_size, dim=-1, largest=False).indices
    groups = pts[torch.arange(b)[:, None, None], knn] - centers[:, :, None]
    x = groups.reshape(-1, group_size, 3).transpose(1, 2)
    p = "visual_adapter.encoder."
    h = _conv(F.relu(_bn(_conv(x, sd, p + "first_conv.0"), sd, p + "first_conv.1")), sd, p + "first_conv.3")
    g = h.max(dim=2, keepdim=True)[0]
    h = torch.cat([g.expand(-1, -1, group_size), h], dim=1)
    h = _conv(F.relu(_bn(_conv(h, sd, p + "second_conv.0"), sd, p + "second_conv.1")), sd, p + "second_conv.3")
    f = h.max(dim=2)[0].reshape(b, num_group, -1)
    tok = F.linear(f, sd["visual_adapter.reduce_dim.weight"], sd["visual_adapter.reduce_dim.bias"])
    pos = F.linear(F.gelu(F.linear(centers, sd["visual_adapter.pos_embed.0.weight"], sd["visual_adapter.pos_embed.0.bias"])),
                   sd["visual_adapter.pos_embed.2.weight"], sd["visual_adapter.pos_embed.2.bias"])
    return tok + pos


def _ln(x, sd, p):
    return F.layer_norm(x, x.shape[-1:], sd[p + ".weight"], sd[p + ".bias"])


def _attn(x, ctx, sd, p, heads):
    q = F.linear(x, sd[p + ".to_q.weight"])
    k, v = F.linear(ctx, sd[p + ".to_kv.weight"]).chunk(2, dim=-1)
    q, k, v = (t.reshape(t.shape[0], t.shape[1], heads, -1).permute(0, 2, 1, 3) for t in (q, k, v))
    sim = torch.einsum("bhid,bhjd->bhij", q, k) * q.shape[-1] ** -0.5
    out = torch.einsum("bhij,bhjd->bhid", sim.softmax(dim=-1), v)
    out = out.permute(0, 2, 1, 3).reshape(x.shape[0], x.shape[1], -1)
    return F.linear(out, sd[p + ".to_out.weight"], sd[p + ".to_out.bias"])


def _ff(x, sd, p):
    a, g = F.linear(x, sd[p + ".net.0.weight"], sd[p + ".net.0.bias"]).chunk(2, dim=-1)
    return F.linear(a * F.gelu(g), sd[p + ".net.2.weight"], sd[p + ".net.2.bias"])


def perceiver(sd, tokens, depth, self_per_cross, cross_heads, latent_heads):
    z = sd["perceiver.latents"].expand(tokens.shape[0], -1, -1)
    for i in range(depth):
        p = f"perceiver.layers.{i}"
        z = z + _attn(_ln(z, sd, p + ".0.norm"), _ln(tokens, sd, p + ".0.norm_context"), sd, p + ".0.fn", cross_heads)
        z = z + _ff(_ln(z, sd, p + ".1.norm"), sd, p + ".1.fn")
        for j in range(self_per_cross):
            q = f"{p}.2.{j}"
            h = _ln(z, sd, q + ".0.norm")
            z = z + _attn(h, h, sd, q + ".0.fn", latent_heads)
            z = z + _ff(_ln(z, sd, q + ".1.norm"), sd, q + ".1.fn")
    return z


def vit(sd, x, layers, heads):
    b, n, w = x.shape
    for i in range(layers):
        p = f"transformer.resblocks.{i}"
        h = _ln(x, sd, p + ".ln_1")
        qkv = F.linear(h, sd[p + ".attn.in_proj_weight"], sd[p + ".attn.in_proj_bias"])
        q, k, v = (t.reshape(b, n, heads, -1).permute(0, 2, 1, 3) for t in qkv.chunk(3, dim=-1))
        att = (torch.einsum("bhid,bhjd->bhij", q, k) * q.shape[-1] ** -0.5).softmax(-1)
        o = torch.einsum("bhij,bhjd->bhid", att, v).permute(0, 2, 1, 3).reshape(b, n, w)
        x = x + F.linear(o, sd[p + ".attn.out_proj.weight"], sd[p + ".attn.out_proj.bias"])
        h = _ln(x, sd, p + ".ln_2")
        h = F.linear(F.gelu(F.linear(h, sd[p + ".mlp.c_fc.weight"], sd[p + ".mlp.c_fc.bias"])),
                     sd[p + ".mlp.c_proj.weight"], sd[p + ".mlp.c_proj.bias"])
        x = x + h
    return x


@torch.no_grad()
def reference_forward(sd: dict, cfg, pts: torch.Tensor) -> torch.Tensor:
    """Embedding of a Point-BERT lens tower with weights ``sd`` (our state_dict names) and LensConfig ``cfg``."""
    p = cfg.perceiver
    tok = pointbert_tokens(sd, pts, cfg.num_group, cfg.group_size)
    z = perceiver(sd, tok, p.depth, p.self_per_cross_attn, p.cross_heads, p.latent_heads)
    x = torch.cat([sd["class_embedding"].expand(z.shape[0], 1, -1), z], dim=1) + sd["positional_embedding"]
    x = vit(sd, _ln(x, sd, "ln_pre"), cfg.vit.layers, cfg.vit.heads)
    return _ln(x[:, 0], sd, "ln_post") @ sd["proj"]
