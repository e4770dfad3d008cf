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

from ..errors import CheckpointError, ConfigError
from ..models.vitlens import build_perceiver, build_point_tokenizer
from ..models.config import LensConfig, ModelConfig, Preprocess

QA_SPEC = "vitlens-eva-g14-qa"
_LENS_PREFIXES = ("visual_adapter.", "perceiver.")


class PointLens(nn.Module):
    """points ``(B, N, C)`` → tokenizer → Perceiver → ``(B, num_latents, latent_dim)``.

    Attribute names equal the official lens keys (``visual_adapter.*``, ``perceiver.*``).
    """

    def __init__(self, cfg: LensConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.visual_adapter = build_point_tokenizer(cfg)
        self.perceiver = build_perceiver(cfg)

    @property
    def width(self) -> int:
        return self.cfg.perceiver.latent_dim

    @property
    def num_tokens(self) -> int:
        return self.cfg.perceiver.num_latents

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        return self.perceiver(self.visual_adapter(points))


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
        target = self.class_embedding.dtype
        latents = latents.to(target)
        cls = self.class_embedding.to(target).expand(latents.shape[0], 1, -1)
        return torch.cat([cls, latents], dim=1) + self.position_embedding.to(target)


def _lens_state_from_saved(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in state.items():
        if k.startswith("point."):
            rest = k[len("point."):]
            if rest.startswith(_LENS_PREFIXES):
                out[rest] = v
    return out


def _strict_load(lens: PointLens, state: dict[str, torch.Tensor], what: str) -> None:
    from ..models.checkpoints import _check_tied, load_tower_state

    if not state:
        raise CheckpointError(f"{what}: holds no lens keys (visual_adapter.* / perceiver.*)")
    _check_tied(lens.cfg, state)
    load_tower_state(lens, state, what, lens_only=True)


def load_lens_config(spec_or_path: str | Path, config: ModelConfig | LensConfig | str | Path | None = None
                     ) -> ModelConfig:
    """The model config that goes with a lens source (zoo name, official ``.pt``, or saved folder)."""
    from ..models.factory import read_config
    from ..models.zoo import get_spec, list_models, spec_for_filename

    if isinstance(config, ModelConfig):
        return config
    if isinstance(config, LensConfig):
        base = get_spec(QA_SPEC)
        return replace(base, lens=config, preprocess=Preprocess(num_points=config.npoints,
                                                                 channels=config.in_channels))
    if config is not None:
        return read_config(config)
    text = str(spec_or_path)
    path = Path(text)
    if text in list_models() and not path.exists():
        return get_spec(text)
    if path.is_dir():
        return read_config(path / "config.json")
    if path.suffix == ".safetensors":
        return read_config(path.parent / "config.json")
    if (path.parent / "config.json").is_file() and path.is_file():
        return read_config(path.parent / "config.json")
    return spec_for_filename(path.name) or get_spec(QA_SPEC)


def load_lens(spec_or_path: str | Path, config: ModelConfig | LensConfig | str | Path | None = None
              ) -> tuple[PointLens, LensConfig]:
    """A loaded, eval-mode :class:`PointLens` and its :class:`LensConfig`.

    ``spec_or_path`` is the zoo name ``vitlens-eva-g14-qa`` (downloaded through the Hugging Face
    cache), an official ``eva_g14_objaverse.pt`` (only ``visual.visual_adapter.*`` /
    ``visual.perceiver.*`` are read; anything missing or extra among them is an error), or a
    folder / ``model.safetensors`` saved by vitlens (keys ``point.visual_adapter.*`` /
    ``point.perceiver.*``). ``config`` overrides the config found for the source (needed for a
    ``.pt`` that is not the released one and has no ``config.json`` beside it).
    """
    lens, cfg = load_lens_full(spec_or_path, config)
    return lens, cfg.lens


def load_lens_full(spec_or_path: str | Path, config: ModelConfig | LensConfig | str | Path | None = None
                   ) -> tuple[PointLens, ModelConfig]:
    """Like :func:`load_lens` but returns the whole :class:`ModelConfig` (preprocessing contract too)."""
    from ..models.checkpoints import read_torch_checkpoint, split_official
    from ..models.factory import download_checkpoint
    from ..models.zoo import list_models

    cfg = load_lens_config(spec_or_path, config)
    text = str(spec_or_path)
    path = Path(text)
    lens = PointLens(cfg.lens)
    if text in list_models() and not path.exists():
        if cfg.card.layout != "eva_lens":
            raise ConfigError(f"'{text}' is not an InstructBLIP lens (use {QA_SPEC})")
        path = download_checkpoint(cfg)
    if path.is_dir() or path.suffix == ".safetensors":
        from safetensors.torch import load_file

        weights = path / "model.safetensors" if path.is_dir() else path
        if not weights.is_file():
            raise CheckpointError(f"{weights}: no such file")
        try:
            state = load_file(str(weights))
        except Exception as exc:
            raise CheckpointError(f"{weights}: not a readable safetensors file ({exc})") from exc
        _strict_load(lens, _lens_state_from_saved(state), str(weights))
    elif path.is_file():
        weights_obj = split_official(read_torch_checkpoint(path), path)
        if weights_obj.layout == "eva_lens":
            state = weights_obj.point
        elif weights_obj.point:  # a lens tower file: take its tokenizer + Perceiver only
            state = {k: v for k, v in weights_obj.point.items() if k.startswith(_LENS_PREFIXES)}
        else:
            raise CheckpointError(f"{path}: holds no lens weights (layout '{weights_obj.layout}')")
        _strict_load(lens, state, f"{path} (lens, layout '{weights_obj.layout}')")
    else:
        raise CheckpointError(f"{spec_or_path}: not a zoo lens name ({QA_SPEC}), a checkpoint file or a "
                              "saved lens folder")
    return lens.eval(), cfg


__all__ = ["PointLens", "PointLensEmbeddings", "load_lens", "load_lens_config", "load_lens_full", "QA_SPEC"]
