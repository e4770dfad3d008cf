"""Perceiver resampler: a fixed set of latents reads the lens tokens by cross-attention.

Key layout (``layers.{i}.0`` cross-attention, ``.1`` feed-forward, ``.2.{j}`` self blocks) is the
official ViT-Lens one, so its checkpoints load without renaming.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    def __init__(self, query_dim: int, context_dim: int, heads: int, dim_head: int) -> None:
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_kv = nn.Linear(context_dim, inner * 2, bias=False)
        self.to_out = nn.Linear(inner, query_dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q = self.to_q(x)
        k, v = self.to_kv(context).chunk(2, dim=-1)
        q, k, v = (t.unflatten(-1, (self.heads, -1)).transpose(1, 2) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v)
        return self.to_out(out.transpose(1, 2).reshape(b, n, -1))


class GEGLUFeedForward(nn.Module):
    def __init__(self, dim: int, mult: int = 4) -> None:
        super().__init__()
        # Index 1 holds the parameter-free gate so the Linear layers keep the official keys net.0 / net.2.
        self.net = nn.Sequential(nn.Linear(dim, dim * mult * 2), _GEGLU(), nn.Linear(dim * mult, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class _GEGLU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, gate = x.chunk(2, dim=-1)
        return a * F.gelu(gate)


class PreNorm(nn.Module):
    def __init__(self, dim: int, fn: nn.Module, context_dim: int | None = None) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.norm_context = nn.LayerNorm(context_dim) if context_dim is not None else None
        self.fn = fn

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        x = self.norm(x)
        if self.norm_context is not None:
            return self.fn(x, self.norm_context(context))
        if isinstance(self.fn, Attention):
            return self.fn(x, x)
        return self.fn(x)


class PerceiverResampler(nn.Module):
    """``(B, G, input_chan)`` tokens → ``(B, num_latents, latent_dim)`` latents. No final norm."""

    def __init__(
        self,
        input_chan: int,
        depth: int,
        num_latents: int,
        latent_dim: int,
        latent_heads: int,
        latent_dim_head: int,
        cross_heads: int,
        cross_dim_head: int,
        self_per_cross_attn: int,
        weight_tie_layers: bool = False,
        ff_mult: int = 4,
    ) -> None:
        super().__init__()
        self.weight_tie_layers = weight_tie_layers
        self.latents = nn.Parameter(torch.randn(num_latents, latent_dim))

        def layer() -> nn.ModuleList:
            selfs = nn.ModuleList(
                nn.ModuleList([
                    PreNorm(latent_dim, Attention(latent_dim, latent_dim, latent_heads, latent_dim_head)),
                    PreNorm(latent_dim, GEGLUFeedForward(latent_dim, ff_mult)),
                ])
                for _ in range(self_per_cross_attn)
            )
            return nn.ModuleList([
                PreNorm(latent_dim, Attention(latent_dim, input_chan, cross_heads, cross_dim_head), input_chan),
                PreNorm(latent_dim, GEGLUFeedForward(latent_dim, ff_mult)),
                selfs,
            ])

        # Tied: layer 0 is its own, every later layer is the *same* module object (official rule).
        shared = layer() if weight_tie_layers and depth > 1 else None
        self.layers = nn.ModuleList(layer() if i == 0 or shared is None else shared for i in range(depth))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        z = self.latents.expand(tokens.shape[0], -1, -1)
        for cross, cross_ff, selfs in self.layers:
            z = z + cross(z, tokens)
            z = z + cross_ff(z)
            for attn, ff in selfs:
                z = z + attn(z)
                z = z + ff(z)
        return z
