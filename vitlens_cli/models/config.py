"""Model configuration: plain dataclasses, validated once at the edge, (de)serialised as JSON.

A model is a set of towers, one per modality, plus the CLIP text tower. The 3D tower keeps its
flat schema (:class:`LensConfig`: ``tokenizer``, ``npoints``, ``perceiver{...}``, ``vit{...}``),
which is also the one of the 3D parity ``config.json`` files; every other tower is a
:class:`TowerConfig` naming a registered lens kind and its parameters. Our own ``config.json`` is
read strictly: an unknown key or a value of the wrong type is a :class:`ConfigError` naming the key.
"""
from __future__ import annotations

import math
import types
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass
from typing import Any, Literal

from ..errors import ConfigError
from ..lenses.registry import LENSES, PNSAParams, PointBertParams

FORMAT = "vitlens/2"
POINT_MODALITY = "3d"


# --------------------------------------------------------------------------- strict JSON → dataclass
def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is not None:
        return origin.__name__
    return "null" if tp is type(None) else getattr(tp, "__name__", str(tp))


def _convert(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        real = [a for a in args if a is not type(None)]
        if len(real) == 1:  # Optional[X]: X's own message names the inner key
            return _convert(real[0], value, key)
        for arg in real:
            try:
                return _convert(arg, value, key)
            except ConfigError:
                continue
        raise ConfigError(key, f"expected {_type_name(tp)}, got {_show(value)}")
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(key, f"expected {_type_name(tp)}, got {_show(value)}")
        return value
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(key, f"expected an object, got {_show(value)}")
        _, vt = typing.get_args(tp)
        return {str(k): _convert(vt, v, f"{key}.{k}") for k, v in value.items()}
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(key, f"expected a list, got {_show(value)}")
        (et, *_) = typing.get_args(tp) or (Any,)
        out = [_convert(et, v, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if tp is Any:
        return value
    if is_dataclass(tp):
        return strict(tp, value, key)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(key, f"expected true or false, got {_show(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, f"expected an integer, got {_show(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(key, f"expected a finite number, got {_show(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(key, f"expected a string, got {_show(value)}")
        return value
    raise ConfigError(key, f"cannot read a value of type {_type_name(tp)}")


def _show(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:40]}{'…' if len(text) > 40 else ''}"


def strict(cls: type, data: Any, where: str) -> Any:
    """``cls(**data)`` with every key known, every required key present and every value typed."""
    if not isinstance(data, dict):
        raise ConfigError(where, f"expected an object, got {_show(data)}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls) if f.init}
    for key in data:
        if key not in known:
            raise ConfigError(f"{where}.{key}", f"unknown key (known: {', '.join(known)})")
    values = {}
    for name, f in known.items():
        if name in data:
            values[name] = _convert(hints[name], data[name], f"{where}.{name}")
        elif f.default is MISSING and f.default_factory is MISSING:
            raise ConfigError(f"{where}.{name}", "missing")
    try:
        return cls(**values)
    except ConfigError as exc:  # a check in __post_init__: name the key from the top of the file
        if exc.subject is None:
            raise ConfigError(where, exc.reason) from None
        if not str(exc.subject).startswith(where):
            raise ConfigError(f"{where}.{exc.subject}", exc.reason) from None
        raise


# --------------------------------------------------------------------------- parts of a tower
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
    """The CLIP ViT part of a tower; ``layers`` counts the blocks *kept* after skipping."""

    width: int
    layers: int
    heads: int
    embed_dim: int
    mlp_ratio: float = 4.0
    skip_first_n_layers: int = 0
    quick_gelu: bool = False

    def __post_init__(self) -> None:
        if self.width % self.heads:
            raise ConfigError("vit", f"width {self.width} is not a multiple of heads {self.heads}")

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


def _check_tower(kind: str, params: Any, perceiver: PerceiverConfig | None, vit: VisionConfig) -> None:
    lens = LENSES[kind]
    token_dim = lens.token_dim(params, vit.width)
    if perceiver is None:
        if token_dim != vit.width:
            raise ConfigError(f"lens tokens are {token_dim} wide but the ViT is {vit.width}: a Perceiver is needed")
        return
    if perceiver.input_chan != token_dim:
        raise ConfigError(f"perceiver.input_chan ({perceiver.input_chan}) must equal the lens token width "
                          f"({token_dim})")
    if perceiver.latent_dim != vit.width:
        raise ConfigError(f"perceiver.latent_dim ({perceiver.latent_dim}) must equal the ViT width ({vit.width})")


@dataclass(frozen=True)
class TowerConfig:
    """A lens tower: a registered lens kind with its parameters, an optional Perceiver, the ViT."""

    lens: str
    params: Any
    vit: VisionConfig
    perceiver: PerceiverConfig | None = None

    def __post_init__(self) -> None:
        if self.lens not in LENSES:
            raise ConfigError("lens", f"unknown lens kind {self.lens!r} (known: {', '.join(LENSES)})")
        want = LENSES[self.lens].params
        if isinstance(self.params, dict):
            object.__setattr__(self, "params", strict(want, self.params, "params"))
        elif not isinstance(self.params, want):
            raise ConfigError("params", f"lens {self.lens!r} takes {want.__name__}, got {type(self.params).__name__}")
        _check_tower(self.lens, self.params, self.perceiver, self.vit)

    @property
    def kind(self) -> str:
        return self.lens

    @property
    def num_tokens(self) -> int:
        """Rows after the lens (and Perceiver): the ViT sees one more (the class token)."""
        return self.perceiver.num_latents if self.perceiver else LENSES[self.lens].num_tokens(self.params)

    def to_dict(self) -> dict[str, Any]:
        return {"lens": self.lens, "params": asdict(self.params), "vit": asdict(self.vit),
                "perceiver": None if self.perceiver is None else asdict(self.perceiver)}

    @classmethod
    def from_dict(cls, data: Any, where: str = "tower") -> TowerConfig:
        return strict(cls, data, where)


@dataclass(frozen=True)
class LensConfig:
    """The 3D tower: a point tokenizer (Point-BERT or PointNet++), a Perceiver and the ViT."""

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
            raise ConfigError("tokenizer", f"unknown tokenizer {self.tokenizer!r} (expected 'pointbert' or 'pnsa')")
        if self.in_channels not in (3, 6):
            raise ConfigError("in_channels", f"must be 3 or 6, got {self.in_channels}")
        if self.tokenizer == "pnsa" and self.radius is None:
            raise ConfigError("radius", "the pnsa tokenizer needs a ball-query radius")
        if self.tokenizer == "pointbert" and self.in_channels != 3:
            raise ConfigError("in_channels", "the pointbert tokenizer reads xyz only (in_channels 3)")
        if self.num_group > self.npoints or self.group_size > self.npoints:
            raise ConfigError("num_group", "num_group and group_size cannot exceed npoints")
        _check_tower(self.kind, self.params, self.perceiver, self.vit)

    @property
    def kind(self) -> str:
        return "point_bert" if self.tokenizer == "pointbert" else "pnsa"

    @property
    def params(self) -> PointBertParams | PNSAParams:
        if self.tokenizer == "pointbert":
            return PointBertParams(self.npoints, self.num_group, self.group_size, self.encoder_dims, self.trans_dim)
        return PNSAParams(self.npoints, self.in_channels, self.num_group, self.group_size, float(self.radius),
                          self.encoder_dims, self.trans_dim)

    @property
    def num_tokens(self) -> int:
        return self.perceiver.num_latents

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "lens") -> LensConfig:
        return strict(cls, data, where)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


AnyTower = LensConfig | TowerConfig


@dataclass(frozen=True)
class Preprocess:
    """What a 3D checkpoint expects to be fed: the contract recorded next to its weights."""

    num_points: int
    channels: int = 3
    up_axis: Literal["y", "z"] = "y"
    normalize: bool = True
    sampling: Literal["fps", "random"] = "fps"
    default_rgb: float = 0.4


@dataclass(frozen=True)
class ModelCard:
    """Where a set of weights comes from and what was published about it.

    ``layout`` (``ulip``, ``openshape``, ``vitlens``, ``eva_lens``) decides how a file is read;
    ``published`` maps benchmark → metric → value, each benchmark's origin in ``published_source``.
    """

    name: str
    description: str = ""
    clip_model: str | None = None
    clip_pretrained: str | None = None
    source: str | None = None
    hf_repo: str | None = None
    hf_filename: str | None = None
    layout: str | None = None
    license: str | None = None
    paper: str | None = None
    published: dict[str, dict[str, float]] = field(default_factory=dict)
    published_source: dict[str, str] = field(default_factory=dict)
    notes: str = ""


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to build a :class:`~vitlens_cli.models.vitlens.ViTLens` and feed it.

    ``lens`` / ``preprocess`` are the 3D tower and its contract (absent for models without one);
    ``towers`` / ``contracts`` hold every other modality's tower and preprocessing contract (plain
    values the modality plug-in reads). The text tower, when present, is ``text``.
    """

    lens: LensConfig | None
    preprocess: Preprocess | None
    card: ModelCard
    text: TextConfig | None = None
    init_seed: int | None = None
    towers: dict[str, TowerConfig] = field(default_factory=dict)
    contracts: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if POINT_MODALITY in self.towers:
            raise ConfigError(f"towers.{POINT_MODALITY}", "the 3D tower is the 'lens' section")
        if (self.lens is None) != (self.preprocess is None):
            raise ConfigError("preprocess", "a 3D lens and its preprocess contract go together")
        if self.lens is None and not self.towers:
            raise ConfigError("towers", "a model needs at least one modality tower")

    @property
    def modalities(self) -> list[str]:
        """The modalities this model embeds besides text, 3D first."""
        return ([POINT_MODALITY] if self.lens is not None else []) + list(self.towers)

    def tower(self, modality: str) -> AnyTower:
        if modality == POINT_MODALITY and self.lens is not None:
            return self.lens
        if modality in self.towers:
            return self.towers[modality]
        raise ConfigError(modality, f"model '{self.card.name}' has no {modality} tower "
                                    f"(it has: {', '.join(self.modalities) or 'none'})")

    @property
    def embed_dim(self) -> int:
        return self.tower(self.modalities[0]).vit.embed_dim

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "lens": None if self.lens is None else self.lens.to_dict(),
                "preprocess": None if self.preprocess is None else asdict(self.preprocess),
                "towers": {m: t.to_dict() for m, t in self.towers.items()}, "contracts": self.contracts,
                "card": asdict(self.card), "text": None if self.text is None else asdict(self.text),
                "init_seed": self.init_seed}

    @classmethod
    def from_dict(cls, data: Any, name: str = "custom") -> ModelConfig:
        """Our own ``config.json`` (strict), or an official-parity fixture ``config.json``."""
        if not isinstance(data, dict):
            raise ConfigError("config", f"expected a JSON object, got {_show(data)}")
        if "format" in data:
            return _from_ours(data)
        from .parity_config import from_parity_config

        return from_parity_config(data, name)


@dataclass(frozen=True)
class _Saved:
    format: str
    lens: LensConfig | None
    preprocess: Preprocess | None
    card: ModelCard
    text: TextConfig | None = None
    init_seed: int | None = None
    towers: dict[str, TowerConfig] = field(default_factory=dict)
    contracts: dict[str, dict[str, Any]] = field(default_factory=dict)


def _from_ours(data: dict[str, Any]) -> ModelConfig:
    if data["format"] not in ("vitlens/1", FORMAT):
        raise ConfigError("format", f"unsupported config format {data['format']!r} (expected {FORMAT!r})")
    if data["format"] == "vitlens/1" and data.get("lens") and not data.get("preprocess"):
        raise ConfigError("preprocess", "missing")
    saved = strict(_Saved, data, "config")
    return ModelConfig(saved.lens, saved.preprocess, saved.card, saved.text, saved.init_seed, saved.towers,
                       saved.contracts)
