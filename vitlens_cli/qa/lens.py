"""The ViT-Lens 3D lens for InstructBLIP's EVA ViT: Point-BERT tokenizer + Perceiver → patch tokens.

``PointLensEmbeddings`` replaces ``model.vision_model.embeddings`` of a transformers
``InstructBlipForConditionalGeneration``: points ``(B, N, 3)`` → lens latents ``(B, L, hidden)`` →
``[class; latents] + position`` ``(B, L + 1, hidden)``; the EVA encoder, post-layernorm, Q-Former,
language projection and LLM then run unchanged.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from ..errors import ConfigError
from ..models.config import LensConfig, ModelConfig, Preprocess
from ..models.vitlens import Lens, prepend_class

QA_SPEC = "vitlens-eva-g14-qa"
# The 3D lens proper (tokenizer + Perceiver, official keys), built and loaded by the models factory.
PointLens = Lens


class PointLensEmbeddings(nn.Module):
    """Drop-in for ``InstructBlipVisionEmbeddings`` that reads points instead of pixels.

    Keeps InstructBLIP's own ``class_embedding`` ``(1, 1, hidden)`` and ``position_embedding``
    ``(1, L + 1, hidden)`` under their original names, so the model's state dict keeps its keys.
    The lens runs in its own dtype (float32 by default: FPS/kNN grouping is not safe in half
    precision); its output is cast to the dtype of the class embedding.
    """

    def __init__(self, lens: PointLens, class_embedding: torch.Tensor, position_embedding: torch.Tensor) -> None:
        super().__init__()
        hidden = class_embedding.shape[-1]
        if position_embedding.dim() == 2:
            position_embedding = position_embedding.unsqueeze(0)
        rows = position_embedding.shape[1]
        if lens.width != hidden:
            raise ConfigError(f"lens width {lens.width} does not match the vision hidden size {hidden} "
                              "of this InstructBLIP model")
        if lens.num_tokens + 1 != rows:
            raise ConfigError(f"lens emits {lens.num_tokens} tokens but the vision position embedding has "
                              f"{rows} rows (needs {rows - 1} tokens + class)")
        self.lens = lens
        self.embed_dim = hidden
        self.num_positions = rows
        self.class_embedding = class_embedding if isinstance(class_embedding, nn.Parameter) \
            else nn.Parameter(class_embedding.detach().reshape(1, 1, hidden))
        self.position_embedding = position_embedding if isinstance(position_embedding, nn.Parameter) \
            else nn.Parameter(position_embedding.detach())

    @classmethod
    def replace(cls, vision_model: nn.Module, lens: PointLens) -> PointLensEmbeddings:
        """Build from ``vision_model.embeddings`` (its class/position embeddings) and install it."""
        old = vision_model.embeddings
        new = cls(lens, old.class_embedding, old.position_embedding)
        vision_model.embeddings = new
        return new

    def forward(self, pixel_values: torch.Tensor, interpolate_pos_encoding: bool = False, **_: object
                ) -> torch.Tensor:
        if interpolate_pos_encoding:
            raise ConfigError("interpolate_pos_encoding has no meaning for point-cloud input")
        points = pixel_values
        if points.dim() != 3:
            raise ConfigError(f"expected points of shape (B, N, C), got {tuple(points.shape)}")
        lens_dtype = next(self.lens.parameters()).dtype
        latents = self.lens(points.to(lens_dtype))
        if latents.shape[1] + 1 != self.num_positions or latents.shape[2] != self.embed_dim:
            raise ConfigError(f"lens output {tuple(latents.shape[1:])} does not fit the position embedding "
                              f"({self.num_positions} rows × {self.embed_dim})")
        return prepend_class(latents.to(self.class_embedding.dtype), self.class_embedding, self.position_embedding)


def load_lens_config(spec_or_path: str | Path, config: ModelConfig | LensConfig | str | Path | None = None
                     ) -> ModelConfig | str | Path:
    """The model config for a lens source: ``config`` as given, or the QA lens spec for an official file.

    A zoo name or a vitlens save carries its own config, so ``None`` is returned for a save unless
    ``config`` is given; an official ``.pt`` is read as the released QA lens unless its config's
    card names another layout.
    """
    from ..models.zoo import get_spec, list_models

    if isinstance(config, LensConfig):
        return replace(get_spec(QA_SPEC), lens=config,
                       preprocess=Preprocess(num_points=config.npoints, channels=config.in_channels))
    if isinstance(config, ModelConfig) and config.card.layout is None:
        # An InstructBLIP lens file is in the released QA lens's layout unless the card says otherwise.
        return replace(config, card=replace(config.card, layout=get_spec(QA_SPEC).card.layout))
    if config is not None:
        return config
    path = Path(str(spec_or_path))
    if str(spec_or_path) in list_models() and not path.exists():
        return get_spec(str(spec_or_path))
    if path.is_dir() or path.suffix == ".safetensors":
        return None
    return get_spec(QA_SPEC)


def load_lens(spec_or_path: str | Path, config: ModelConfig | LensConfig | str | Path | None = None
              ) -> tuple[PointLens, LensConfig]:
    """A loaded, eval-mode :class:`PointLens` and its :class:`LensConfig`.

    ``spec_or_path`` is the zoo name ``vitlens-eva-g14-qa`` (downloaded through the Hugging Face
    cache), an official ``eva_g14_objaverse.pt`` (only ``visual.visual_adapter.*`` /
    ``visual.perceiver.*`` are read; anything missing or extra among them is an error), or a
    folder / ``model.safetensors`` saved by vitlens. ``config`` overrides the config found for the
    source (needed for a ``.pt`` that is not the released one).
    """
    lens, cfg = load_lens_full(spec_or_path, config)
    return lens, cfg.lens


def load_lens_full(spec_or_path: str | Path, config: ModelConfig | LensConfig | str | Path | None = None
                   ) -> tuple[PointLens, ModelConfig]:
    """Like :func:`load_lens` but returns the whole :class:`ModelConfig` (preprocessing contract too)."""
    from ..models.factory import load_lens as factory_load_lens

    cfg = load_lens_config(spec_or_path, config)
    lens, cfg = factory_load_lens(spec_or_path, cfg)
    if cfg.lens is None:
        raise ConfigError(spec_or_path, "holds no 3D lens")
    return lens, cfg


__all__ = ["PointLens", "PointLensEmbeddings", "load_lens", "load_lens_config", "load_lens_full", "QA_SPEC"]
