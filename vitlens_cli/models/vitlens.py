"""The modality-agnostic lens tower and the ViTLens model (a tower per modality + the CLIP text tower)."""
from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from open_clip.transformer import LayerNorm, QuickGELU, TextTransformer, Transformer
from torch import nn

from ..caption_text import pre_caption
from ..errors import ConfigError
from ..lenses import PerceiverResampler, get_lens
from ..precision import fold_attention_inputs
from .config import POINT_MODALITY, AnyTower, ModelConfig, PerceiverConfig, TextConfig


def build_perceiver(p: PerceiverConfig) -> PerceiverResampler:
    return PerceiverResampler(p.input_chan, p.depth, p.num_latents, p.latent_dim, p.latent_heads, p.latent_dim_head,
                              p.cross_heads, p.cross_dim_head, p.self_per_cross_attn, p.weight_tie_layers, p.ff_mult)


def prepend_class(rows: torch.Tensor, class_embedding: torch.Tensor, positional_embedding: torch.Tensor
                  ) -> torch.Tensor:
    """``[cls; rows] + positional_embedding``: ``(B, L, W)`` → ``(B, L + 1, W)`` in the rows' dtype."""
    cls = class_embedding.to(rows.dtype).reshape(1, 1, -1).expand(rows.shape[0], 1, -1)
    return torch.cat([cls, rows], dim=1) + positional_embedding.to(rows.dtype).reshape(1, rows.shape[1] + 1, -1)


class Lens(nn.Module):
    """The lens proper: a registered tokenizer and an optional Perceiver, under the official key names.

    Alone it serves hosts with a ViT of their own (InstructBLIP's EVA ViT in ``qa``); inside a
    :class:`LensTower` it feeds the CLIP ViT blocks.
    """

    def __init__(self, cfg: AnyTower) -> None:
        super().__init__()
        self.cfg = cfg
        kind = get_lens(cfg.kind)
        self.lens_attr = kind.attr
        self.input_rank = kind.input_rank
        setattr(self, kind.attr, kind.build(cfg.params, cfg.vit.width))
        self.perceiver = build_perceiver(cfg.perceiver) if cfg.perceiver is not None else None

    @property
    def lens(self) -> nn.Module:
        return getattr(self, self.lens_attr)

    @property
    def width(self) -> int:
        return self.cfg.vit.width

    @property
    def num_tokens(self) -> int:
        return self.cfg.num_tokens

    def lens_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """The rows a ViT reads in place of patch embeddings: ``(B, num_tokens, width)``."""
        tokens = self.lens(x)
        return self.perceiver(tokens) if self.perceiver is not None else tokens

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lens_tokens(x)


class LensTower(Lens):
    """input → lens → [Perceiver] → [cls; tokens] + positional_embedding → ln_pre → ViT blocks → ln_post(cls) @ proj.

    The same module for every modality: the lens kind decides only the tokenizer (registered in
    :mod:`vitlens_cli.lenses`, placed where the official key names put it) and whether a Perceiver
    resamples its tokens. Attribute names equal the official tower keys, so official weights load
    after their prefix is stripped; the ViT blocks are open_clip's, so CLIP weights load unchanged.
    The class token and positional embedding are added here and nowhere else.
    """

    def __init__(self, cfg: AnyTower) -> None:
        super().__init__(cfg)
        v = cfg.vit
        scale = v.width**-0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(v.width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(cfg.num_tokens + 1, v.width))
        self.ln_pre = LayerNorm(v.width)
        act = QuickGELU if v.quick_gelu else nn.GELU
        self.transformer = Transformer(v.width, v.layers, v.heads, v.mlp_ratio, act_layer=act)
        self.ln_post = LayerNorm(v.width)
        self.proj = nn.Parameter(scale * torch.randn(v.width, v.embed_dim))

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """The ViT input sequence after ``ln_pre``: ``(B, num_tokens + 1, width)``."""
        return self.ln_pre(prepend_class(self.lens_tokens(x), self.class_embedding, self.positional_embedding))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.transformer(self.tokens(x))
        return self.ln_post(x[:, 0]) @ self.proj


def build_text_tower(cfg: TextConfig) -> TextTransformer:
    act = QuickGELU if cfg.quick_gelu else nn.GELU
    return TextTransformer(context_length=cfg.context_length, vocab_size=cfg.vocab_size, width=cfg.width,
                           heads=cfg.heads, layers=cfg.layers, mlp_ratio=cfg.mlp_ratio,
                           output_dim=cfg.embed_dim, act_layer=act)


def tower_attr(modality: str) -> str:
    """The attribute (and state-dict prefix) of a modality's tower: ``point`` for 3D, else its name."""
    return "point" if modality == POINT_MODALITY else modality


class ViTLens(nn.Module):
    """A lens tower per modality and an optional CLIP text tower, in one embedding space.

    Towers sit at ``point`` (3D), ``depth``, ``audio``, ``tactile``, ``eeg`` and ``image``, so
    parameter names (recipes' ``param_groups``, saved files) read ``point.transformer.…`` etc.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        for m in cfg.modalities:
            self.add_module(tower_attr(m), LensTower(cfg.tower(m)))
        self.text = build_text_tower(cfg.text) if cfg.text is not None else None
        self.logit_scale = nn.Parameter(torch.tensor(2.6592))  # ln(1/0.07), CLIP's initial value
        self._tokenizer = None
        # The one file every weight was read from (set by the loaders; None for fresh or mixed weights):
        # caches of derived results key on it instead of hashing gigabytes of tensors.
        self.weights_file: Path | None = None
        fold_attention_inputs(self)  # open_clip's blocks off torch's weight-copying attention path

    @property
    def modalities(self) -> list[str]:
        return self.cfg.modalities

    @property
    def embed_dim(self) -> int:
        return self.cfg.embed_dim

    @property
    def towers(self) -> dict[str, LensTower]:
        return {m: getattr(self, tower_attr(m)) for m in self.modalities}

    def tower(self, modality: str) -> LensTower:
        if modality not in self.modalities:
            raise ConfigError(modality, f"model '{self.cfg.card.name}' has no {modality} tower "
                                        f"(it has: {', '.join(self.modalities)})")
        return getattr(self, tower_attr(modality))

    def encode(self, modality: str, batch: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """A prepared batch of ``modality`` → ``(B, embed_dim)``; L2-normalised when ``normalize``.

        A batch with one more leading axis than the lens reads, ``(B, V, ...)``, holds V views of
        each item (the 3 clips of an audio file): their un-normalised embeddings are averaged, then
        normalised, as the official ``ViTLens.encode`` does. Views equal to an earlier view of the same
        item (a clip of at most 5 s is one clip used 3 times) go through the tower once.
        """
        tower = self.tower(modality)
        batch = batch.to(self.logit_scale.device)
        if batch.dim() == tower.input_rank + 1:
            distinct, where = _distinct_views(batch)
            flat = batch.flatten(0, 1)
            emb = tower(flat[distinct])[where].unflatten(0, batch.shape[:2]).mean(dim=1)
        elif batch.dim() == tower.input_rank:
            emb = tower(batch)
        else:
            raise ConfigError(modality, f"expected a batch of {tower.input_rank} dimensions (or "
                                        f"{tower.input_rank + 1} with views per item), got shape {tuple(batch.shape)}")
        return F.normalize(emb, dim=-1) if normalize else emb

    def encode_points(self, points: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """``(B, N, C)`` prepared points → ``(B, embed_dim)``: ``encode("3d", points)``."""
        return self.encode(POINT_MODALITY, points, normalize)

    def encode_image(self, images: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """``(B, 3, H, W)`` prepared images through the CLIP image tower: ``encode("image", images)``."""
        return self.encode("image", images, normalize)

    def _need_text(self) -> TextTransformer:
        if self.text is None:
            raise ConfigError(self.cfg.card.name, "this model has no text tower")
        return self.text

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """CLIP BPE ids; captions are cleaned first when the text contract says ``pre_caption`` (one-stop)."""
        self._need_text()
        if self._tokenizer is None:
            self._tokenizer = _bpe_tokenizer(self.cfg.text.context_length)
        contract = self.cfg.contracts.get("text", {})
        if contract.get("pre_caption"):
            texts = [pre_caption(t, int(contract.get("max_words", 70))) for t in texts]
        return self._tokenizer(list(texts))

    def encode_text(self, text: Sequence[str] | torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """Strings (CLIP BPE-tokenised here) or token ids ``(B, 77)`` → ``(B, embed_dim)``."""
        tower = self._need_text()
        ids = text if isinstance(text, torch.Tensor) else self.tokenize(text)
        emb = tower(ids.to(self.logit_scale.device))
        return F.normalize(emb, dim=-1) if normalize else emb


def _distinct_views(batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For ``(B, V, ...)`` views: the flat indices of the views to encode, and for every flat view the
    row of those encodings it takes (a view equal to an earlier view of its item takes that one's).

    The comparisons run where the batch is, for all items at once; only the ``(B, V)`` answer is read back.
    """
    b, v = batch.shape[:2]
    flat = batch.flatten(2)
    same = torch.eye(v, dtype=torch.bool, device=batch.device).repeat(b, 1, 1)  # a NaN view is still itself
    for j in range(1, v):
        for k in range(j):
            same[:, j, k] = (flat[:, j] == flat[:, k]).all(-1)
    first = same.to(torch.uint8).argmax(-1).cpu()  # the earliest view equal to each (argmax: first maximum)
    new = (first == torch.arange(v)).flatten()
    row = new.cumsum(0) - 1
    where = row[(torch.arange(b)[:, None] * v + first).flatten()]
    return new.nonzero().flatten().to(batch.device), where.to(batch.device)


@functools.lru_cache(maxsize=None)
def _bpe_tokenizer(context_length: int):
    """One open_clip BPE tokenizer per context length for the process: building it parses the 49k-merge
    vocabulary file (~60 ms), and every model a process builds tokenizes alike."""
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer(context_length=context_length)
