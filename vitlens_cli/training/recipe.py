"""Training recipes: YAML read top to bottom, validated once into dataclasses, overridable by ``key=value``."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from ..data.augment import Augment
from ..errors import ConfigError
from ..models.config import ModelConfig
from ..models.zoo import get_spec


@dataclass
class Unlock:
    """What of the frozen CLIP ViT becomes trainable besides the lens (recorded in every checkpoint)."""

    cls: bool = False
    pos: bool = False
    first_blocks: int = 0
    last_blocks: int = 0
    logit_scale: bool = True


@dataclass
class ModelSection:
    spec: str = "tiny"                      # zoo spec: lens architecture + preprocessing contract
    clip_model: str | None = None           # open_clip model giving the ViT, text and image towers (None: the spec's own)
    clip_pretrained: str | None = None      # its pretrained tag; None: that architecture, randomly initialised
    lens: dict[str, Any] = field(default_factory=dict)   # lens-config fields to change, e.g. {npoints: 512}
    unlock: Unlock = field(default_factory=Unlock)


@dataclass
class DataSection:
    kind: str = "synthetic"                 # synthetic | ulip-shapenet | ulip2-objaverse | openshape | captions
    root: str | None = None
    split: str = "train"
    workers: int = 0
    augment: Augment = field(default_factory=Augment)
    options: dict[str, Any] = field(default_factory=dict)  # format-specific (e.g. synthetic classes/instances)


@dataclass
class OptimSection:
    lr: float = 5e-4
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    weight_decay: float = 0.2               # not applied to norms, biases, embeddings' gains or the logit scale
    warmup_steps: int = 10_000
    schedule: str = "cosine"                # cosine | constant
    grad_clip: float | None = None


@dataclass
class ValidationSection:
    every: int | None = None                # steps; None disables periodic zero-shot validation
    benchmark: str | None = None            # a prepared benchmark name / folder
    data_root: str | None = None
    limit: int | None = None


@dataclass
class Recipe:
    name: str = "recipe"
    description: str = ""
    seed: int = 0
    output_dir: str = "runs/recipe"
    max_steps: int | None = None            # overrides epochs when set
    epochs: int = 1
    batch_size: int = 32                    # per process
    grad_accum: int = 1
    precision: str = "fp32"                 # fp32 | bf16 | fp16 (autocast; CUDA for fp16)
    save_every: int = 1000
    log_every: int = 10
    cache_features: bool = True             # frozen text/image towers: encode each input once
    tensorboard: bool = False
    logit_scale_init: float = 14.285714     # 1/0.07
    logit_scale_max: float = 100.0
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    validation: ValidationSection = field(default_factory=ValidationSection)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _build(cls, data: Any, where: str):
    if not is_dataclass(cls):
        return data
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(names))})")
    kwargs = {}
    for key, value in data.items():
        hint = hints[key]
        if is_dataclass(hint):
            kwargs[key] = _build(hint, value, f"{where}.{key}")
        elif isinstance(value, list) and "tuple" in str(hint):
            kwargs[key] = tuple(float(v) if "float" in str(hint) else v for v in value)
        elif isinstance(value, str) and "float" in str(hint):
            try:  # YAML 1.1 reads "1e-3" (no dot) as a string
                kwargs[key] = float(value)
            except ValueError:
                raise ConfigError(f"{where}.{key}: expected a number, got {value!r}") from None
        else:
            kwargs[key] = value
    return cls(**kwargs)


def _parse_value(text: str) -> Any:
    return yaml.safe_load(text)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``a.b=value`` pairs (YAML values) set into the nested mapping."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not key=value")
        key, value = item.split("=", 1)
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override '{item}': '{part}' is not a section")
        node[parts[-1]] = _parse_value(value)
    return data


def load_recipe(path: str | Path | None = None, overrides: list[str] | None = None) -> Recipe:
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such recipe") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: invalid YAML ({exc})") from exc
    data = apply_overrides(data, list(overrides or []))
    recipe = _build(Recipe, data, str(path or "recipe"))
    if recipe.precision not in ("fp32", "bf16", "fp16"):
        raise ConfigError(f"precision must be fp32, bf16 or fp16, got {recipe.precision!r}")
    if recipe.batch_size < 1 or recipe.grad_accum < 1:
        raise ConfigError("batch_size and grad_accum must be at least 1")
    return recipe


def save_recipe(recipe: Recipe, path: Path) -> None:
    from ..atomic import write_text_atomic

    write_text_atomic(path, yaml.safe_dump(recipe.to_dict(), sort_keys=False))


def model_config(recipe: Recipe) -> ModelConfig:
    """The zoo spec named by the recipe with its ``model.lens`` changes applied (validated again)."""
    from dataclasses import replace

    from ..models.config import LensConfig

    spec = get_spec(recipe.model.spec)
    if not recipe.model.lens:
        return spec
    lens = spec.lens.to_dict()
    for key, value in recipe.model.lens.items():
        if isinstance(value, dict):
            lens[key] = {**lens[key], **value}
        else:
            lens[key] = value
    new_lens = LensConfig.from_dict(lens)
    return replace(spec, lens=new_lens, preprocess=replace(spec.preprocess, num_points=new_lens.npoints))
