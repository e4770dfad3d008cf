"""Model configuration: plain dataclasses, validated once, (de)serialised as JSON.

The JSON schema of :class:`LensConfig` is the one of the official-parity ``config.json`` files
(``tokenizer``, ``npoints``, ``perceiver{...}``, ``vit{...}``), so those files load as they are.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from ..errors import ConfigError


def _pick(cls, data: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}


@dataclass(frozen=True)
class PerceiverConfig:
    input_chan: int
    depth: int
    num_latents: int
    latent_dim: int
    latent_heads: int
    latent_dim_head: int
    cross_heads: int
    cross_dim_head: int
    self_per_cross_attn: int
    weight_tie_layers: bool = False
    ff_mult: int = 4


@dataclass(frozen=True)
class VisionConfig:
    """The CLIP ViT part of the lens tower; ``layers`` counts the blocks *kept* after skipping."""

    width: int
    layers: int
    heads: int
    embed_dim: int
    mlp_ratio: float = 4.0
    skip_first_n_layers: int = 0
    quick_gelu: bool = False

    @property
    def layers_before_skip(self) -> int:
        return self.layers + self.skip_first_n_layers


@dataclass(frozen=True)
class TextConfig:
    embed_dim: int
    width: int
    heads: int
    layers: int
    context_length: int = 77
    vocab_size: int = 49408
    mlp_ratio: float = 4.0
    quick_gelu: bool = False


@dataclass(frozen=True)
class LensConfig:
    tokenizer: Literal["pointbert", "pnsa"]
    npoints: int
    in_channels: int
    num_group: int
    group_size: int
    encoder_dims: int
    trans_dim: int
    perceiver: PerceiverConfig
    vit: VisionConfig
    radius: float | None = None

    def __post_init__(self) -> None:
        if self.tokenizer not in ("pointbert", "pnsa"):
            raise ConfigError(f"unknown tokenizer {self.tokenizer!r} (expected 'pointbert' or 'pnsa')")
        if self.in_channels not in (3, 6):
            raise ConfigError(f"in_channels must be 3 or 6, got {self.in_channels}")
        if self.tokenizer == "pnsa" and self.radius is None:
            raise ConfigError("the pnsa tokenizer needs a ball-query radius")
        if self.tokenizer == "pointbert" and self.in_channels != 3:
            raise ConfigError("the pointbert tokenizer reads xyz only (in_channels 3)")
        if self.perceiver.input_chan != self.trans_dim:
            raise ConfigError(f"perceiver.input_chan ({self.perceiver.input_chan}) must equal trans_dim ({self.trans_dim})")
        if self.perceiver.latent_dim != self.vit.width:
            raise ConfigError(f"perceiver.latent_dim ({self.perceiver.latent_dim}) must equal the ViT width ({self.vit.width})")
        if self.num_group > self.npoints or self.group_size > self.npoints:
            raise ConfigError("num_group and group_size cannot exceed npoints")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LensConfig:
        try:
            vit = dict(data["vit"])
            if "heads" not in vit and "head_width" in vit:
                vit["heads"] = vit["width"] // vit["head_width"]
            return cls(
                perceiver=PerceiverConfig(**_pick(PerceiverConfig, data["perceiver"])),
                vit=VisionConfig(**_pick(VisionConfig, vit)),
                **_pick(cls, {k: v for k, v in data.items() if k not in ("perceiver", "vit")}),
            )
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"lens config is incomplete or malformed: {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Preprocess:
    """What a checkpoint expects to be fed: the contract recorded next to its weights."""

    num_points: int
    channels: int = 3
    up_axis: Literal["y", "z"] = "y"
    normalize: bool = True
    sampling: Literal["fps", "random"] = "fps"
    default_rgb: float = 0.4


@dataclass(frozen=True)
class ModelCard:
    name: str
    description: str = ""
    clip_model: str | None = None
    clip_pretrained: str | None = None
    source: str | None = None
    hf_repo: str | None = None
    hf_filename: str | None = None
    layout: str | None = None
    published: dict[str, dict[str, float]] = field(default_factory=dict)
    notes: str = ""


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to build a :class:`~vitlens_cli.models.vitlens.ViTLens` and feed it."""

    lens: LensConfig
    preprocess: Preprocess
    card: ModelCard
    text: TextConfig | None = None
    init_seed: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"format": "vitlens/1", "lens": self.lens.to_dict(), "preprocess": asdict(self.preprocess),
                "card": asdict(self.card), "text": None if self.text is None else asdict(self.text),
                "init_seed": self.init_seed}

    @classmethod
    def from_dict(cls, data: dict[str, Any], name: str = "custom") -> ModelConfig:
        """Our own ``config.json``, or an official-parity ``config.json`` (lens fields at top level)."""
        if "lens" in data:
            lens = LensConfig.from_dict(data["lens"])
            pre = Preprocess(**_pick(Preprocess, data.get("preprocess") or {"num_points": lens.npoints}))
            card = ModelCard(**_pick(ModelCard, data.get("card") or {"name": name}))
            text = TextConfig(**_pick(TextConfig, data["text"])) if data.get("text") else None
            return cls(lens, pre, card, text, data.get("init_seed"))
        if "tokenizer" in data:
            lens = LensConfig.from_dict(data)
            layout = (data.get("checkpoint") or {}).get("layout")
            card = ModelCard(name=data.get("case", name), source="config file", layout=layout)
            pre = Preprocess(num_points=lens.npoints, channels=lens.in_channels,
                             up_axis="z" if lens.tokenizer == "pnsa" else "y")
            return cls(lens, pre, card)
        raise ConfigError("not a vitlens config: expected a 'lens' section or lens fields such as 'tokenizer'")
