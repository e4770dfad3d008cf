"""The lens tower (lens + frozen CLIP ViT blocks) and the ViTLens model (towers + text)."""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from open_clip.transformer import LayerNorm, QuickGELU, TextTransformer, Transformer
from torch import nn

from ..lenses import PerceiverResampler, PNSATokenizer, PointBertTokenizer
from .config import LensConfig, ModelConfig, TextConfig


def build_point_tokenizer(cfg: LensConfig) -> nn.Module:
    if cfg.tokenizer == "pointbert":
        return PointBertTokenizer(cfg.num_group, cfg.group_size, cfg.encoder_dims, cfg.trans_dim)
    return PNSATokenizer(cfg.in_channels, cfg.num_group, cfg.group_size, float(cfg.radius), cfg.encoder_dims,
                         cfg.trans_dim)


def build_perceiver(cfg: LensConfig) -> PerceiverResampler:
    p = cfg.perceiver
    return PerceiverResampler(p.input_chan, p.depth, p.num_latents, p.latent_dim, p.latent_heads, p.latent_dim_head,
                              p.cross_heads, p.cross_dim_head, p.self_per_cross_attn, p.weight_tie_layers, p.ff_mult)


class PointLensTower(nn.Module):
    """points → tokenizer → Perceiver → [cls; latents] + pos → ln_pre → ViT blocks → ln_post(cls) @ proj.

    Attribute names equal the official lens-tower keys, so official weights load after the prefix
    is stripped. The ViT blocks are open_clip's, so CLIP weights load into them unchanged.
    """

    def __init__(self, cfg: LensConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.visual_adapter = build_point_tokenizer(cfg)
        self.perceiver = build_perceiver(cfg)
        p, v = cfg.perceiver, cfg.vit
        scale = v.width**-0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(v.width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(p.num_latents + 1, v.width))
        self.ln_pre = LayerNorm(v.width)
        act = QuickGELU if v.quick_gelu else nn.GELU
        self.transformer = Transformer(v.width, v.layers, v.heads, v.mlp_ratio, act_layer=act)
        self.ln_post = LayerNorm(v.width)
        self.proj = nn.Parameter(scale * torch.randn(v.width, v.embed_dim))

    def tokens(self, points: torch.Tensor) -> torch.Tensor:
        """The ViT input sequence after ``ln_pre``: ``(B, num_latents + 1, width)``."""
        latents = self.perceiver(self.visual_adapter(points))
        cls = self.class_embedding.to(latents.dtype).expand(latents.shape[0], 1, -1)
        x = torch.cat([cls, latents], dim=1) + self.positional_embedding.to(latents.dtype)
        return self.ln_pre(x)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        x = self.transformer(self.tokens(points))
        return self.ln_post(x[:, 0]) @ self.proj


def build_text_tower(cfg: TextConfig) -> TextTransformer:
    act = QuickGELU if cfg.quick_gelu else nn.GELU
    return TextTransformer(context_length=cfg.context_length, vocab_size=cfg.vocab_size, width=cfg.width,
                           heads=cfg.heads, layers=cfg.layers, mlp_ratio=cfg.mlp_ratio,
                           output_dim=cfg.embed_dim, act_layer=act)


class ViTLens(nn.Module):
    """A point lens tower with an optional CLIP text tower in the same embedding space."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.point = PointLensTower(cfg.lens)
        self.text = build_text_tower(cfg.text) if cfg.text is not None else None
        self.logit_scale = nn.Parameter(torch.tensor(2.6592))  # ln(1/0.07), CLIP's initial value
        self._tokenizer = None

    @property
    def embed_dim(self) -> int:
        return self.cfg.lens.vit.embed_dim

    def encode_points(self, points: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """``(B, N, C)`` prepared points → ``(B, embed_dim)``; L2-normalised when ``normalize``."""
        emb = self.point(points)
        return F.normalize(emb, dim=-1) if normalize else emb

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        if self.text is None:
            raise RuntimeError(f"model '{self.cfg.card.name}' has no text tower")
        if self._tokenizer is None:
            from open_clip.tokenizer import SimpleTokenizer

            self._tokenizer = SimpleTokenizer(context_length=self.cfg.text.context_length)
        return self._tokenizer(list(texts))

    def encode_text(self, text: Sequence[str] | torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """Strings (CLIP BPE-tokenised here) or token ids ``(B, 77)`` → ``(B, embed_dim)``."""
        if self.text is None:
            raise RuntimeError(f"model '{self.cfg.card.name}' has no text tower")
        ids = text if isinstance(text, torch.Tensor) else self.tokenize(text)
        emb = self.text(ids.to(self.logit_scale.device))
        return F.normalize(emb, dim=-1) if normalize else emb

    def freeze_vit(self) -> None:
        """Freeze what ViT-Lens keeps frozen: the CLIP ViT blocks, ln_post, proj and the text tower."""
        for module in (self.point.transformer, self.point.ln_post):
            module.requires_grad_(False)
        self.point.proj.requires_grad_(False)
        if self.text is not None:
            self.text.requires_grad_(False)
