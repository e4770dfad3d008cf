"""Training recipes: YAML read top to bottom, validated once against OmegaConf structured configs.

The dataclasses below are the schema (torchtune's choice): a recipe file and ``key=value`` dotlist overrides
are merged onto it by OmegaConf, which converts and type-checks every value. Each input is first walked
against the schema here so that a mistake is reported with its full key (OmegaConf's own errors lose the
key inside tuples, lists and mappings) and bools are not read from numbers; then values are checked
(ranges, relations), ``data.options`` against the schema of its ``data.kind``, and ``model.lens`` by
building the lens config it describes.
"""
from __future__ import annotations

import functools
import types
from importlib.resources import files
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass, make_dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Optional, Union, get_args, get_origin, get_type_hints

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ..data.augment import VIDEO_MAX_LEVEL, VIDEO_OPS, Augment, ViewAugment
from ..errors import ConfigError
from ..models.config import LensConfig, ModelConfig, PerceiverConfig, TowerConfig, VisionConfig
from ..models.zoo import get_spec

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable


def _all_optional(cls: type, nested: dict[str, type]) -> type:
    """``cls`` with every field optional and None by default: "leave the spec's value as it is"."""
    hints = get_type_hints(cls)
    specs = []
    for f in fields(cls):
        if f.name in nested:
            specs.append((f.name, nested[f.name], field(default_factory=nested[f.name])))
        else:
            specs.append((f.name, Optional[hints[f.name]], field(default=None)))
    return make_dataclass(f"{cls.__name__}Changes", specs)


PerceiverChanges = _all_optional(PerceiverConfig, {})
VisionChanges = _all_optional(VisionConfig, {})
LensChanges = _all_optional(LensConfig, {"perceiver": PerceiverChanges, "vit": VisionChanges})
ModalityName = Literal["3d", "depth", "audio", "tactile", "eeg"]


@dataclass
class TowerChanges:
    """Changes to a non-3D tower of the spec (``model.lens`` is the 3D one): its lens kind's parameters
    (e.g. ``{patch_size: 32}``), its Perceiver and its ViT; unset fields keep the spec's values."""

    params: dict[str, Any] = field(default_factory=dict)
    perceiver: PerceiverChanges = field(default_factory=PerceiverChanges)
    vit: VisionChanges = field(default_factory=VisionChanges)


@dataclass
class Unlock:
    """What of the frozen CLIP ViT becomes trainable besides the lens (recorded in every checkpoint)."""

    cls: bool = False
    pos: bool = False
    ln_pre: bool = False                    # the norm after the embeddings (open_clip's first lock group)
    first_blocks: int = 0
    last_blocks: int = 0
    logit_scale: bool = True


@dataclass
class ModelSection:
    modality: ModalityName = "3d"           # which of the spec's towers trains (the others are not built)
    spec: str = "tiny"                      # zoo spec: lens architecture + preprocessing contract
    clip_model: Optional[str] = None        # open_clip model giving the ViT, text and image towers (None: the spec's own)
    clip_pretrained: Optional[str] = None   # its pretrained tag; None: that architecture, randomly initialised
    lens: LensChanges = field(default_factory=LensChanges)   # 3D lens-config fields to change, e.g. {npoints: 512}
    tower: TowerChanges = field(default_factory=TowerChanges)  # the same for a non-3D tower
    unlock: Unlock = field(default_factory=Unlock)


# ``data.options``: one schema per data kind, each field a keyword of that dataset's constructor.

@dataclass
class SyntheticOptions:
    size: int = 600                         # training items, generated from (seed, index)
    seed: Optional[int] = None              # None: the recipe's seed
    classes: Optional[list[str]] = None     # None: all of the modality's (data/synthetic.py, data/signals.py)
    templates: Optional[list[str]] = None   # caption templates with one "{}"; None: the modality's own set
                                            # (data/meta.py MODALITY_TEMPLATES; 3D: the 64 ULIP templates)


@dataclass
class ULIPShapeNetOptions:
    image_dir: Optional[str] = None         # None: <root>/rendered_images, else <root>/only_rgb_depth_images
    whole: bool = False                     # prepend test.txt, as ULIP's pre-training does
    use_templates: bool = True


@dataclass
class NoOptions:
    pass


@dataclass
class OpenShapeOptions:
    split_json: Optional[str] = None        # None: meta_data/split/<data.split>.json
    text_source: list[str] = field(default_factory=lambda: ["text", "caption", "retrieval_text"])
    use_prompt_engineering: bool = True
    gpt4_filtering: Optional[str] = None


@dataclass
class SUNRGBDOptions:
    annotation: str = "SUN-RGBD_train.json"  # the official list; a path relative to data.root, or absolute


@dataclass
class TouchAndGoOptions:
    annotation: str = "pretrain.json"       # the official list; a path relative to data.root, or absolute


@dataclass
class AudioSetOptions:
    # the lists of the official audioset@audioset_train_all; paths relative to data.root, or absolute
    annotation: list[str] = field(default_factory=lambda: ["audioset_balanced_train.json",
                                                           "audioset_unbalanced_train.json"])
    # video: decode each item's video_path (under data.root) at its window's start, as the official loader
    # does (PyAV); null: frame_dir decides (frames extracted beforehand, cheaper)
    frames: Optional[str] = None
    frame_dir: Optional[str] = None         # extracted video frames; None: no image (unless frames: video)
    # None: one frame per video, <frame_dir>/<video_path>.jpg (the same frame whatever the window); a rate:
    # frames extracted at it (ffmpeg -vf fps=<rate>) into <frame_dir>/<video_path without suffix>/*.jpg,
    # and each clip pairs the frame at its window's start, as the official loader decodes it
    frame_rate: Optional[float] = None


@dataclass
class ImageNetEEGOptions:
    data_file: str = "eeg_5_95_std.pth"     # paths relative to data.root, or absolute
    split_file: str = "block_splits_by_image_all.pth"
    image_dir: Optional[str] = None         # ImageNet images (<image_dir>/<synset>/<name>.JPEG); None: no image


DATA_OPTIONS: dict[str, type] = {"synthetic": SyntheticOptions, "ulip-shapenet": ULIPShapeNetOptions,
                                 "ulip2-objaverse": NoOptions, "openshape": OpenShapeOptions, "captions": NoOptions,
                                 "sunrgbd": SUNRGBDOptions, "touch-and-go": TouchAndGoOptions,
                                 "audioset": AudioSetOptions, "imagenet-eeg": ImageNetEEGOptions}
DataKind = Literal["synthetic", "ulip-shapenet", "ulip2-objaverse", "openshape", "captions", "sunrgbd",
                   "touch-and-go", "audioset", "imagenet-eeg"]
NON_3D_KINDS = ("synthetic", "captions")
# the official layouts of one modality
MODALITY_KINDS = {"sunrgbd": "depth", "touch-and-go": "tactile", "audioset": "audio", "imagenet-eeg": "eeg"}
SYNTHETIC_HELDOUT = "synthetic"


def synthetic_classes(modality: str) -> tuple[str, ...]:
    """The classes synthetic data of ``modality`` can draw."""
    if modality == "3d":
        from ..data.synthetic import PRIMITIVES

        return PRIMITIVES
    from ..data.signals import SYNTHETIC_CLASSES

    return SYNTHETIC_CLASSES[modality]


@dataclass
class AudioAugment:
    """The released audio training augmentations (``ASTProcessorTrain``), on the log-mel frames."""

    freq_mask: int = 0                      # SpecAugment: one band of up to this many mel bins zeroed
    time_mask: int = 0                      # and one span of up to this many frames
    noise: bool = False                     # + U(0,1) · U(0,1)/10 per bin, then a roll of -10..9 frames
    mixup: float = 0.0                      # share of items mixed with a random other one (waveforms and paired
                                            # frames, lambda ~ Beta(10, 10); caption "<own> and <one of the
                                            # other's raw captions, lower-cased>")
    random_window: bool = False             # each item's clip at a random window (RandomClipSampler), else the
                                            # first clip of the eval processor's plan


@dataclass
class DataSection:
    kind: DataKind = "synthetic"
    root: Optional[str] = None              # a folder; for `captions` the CSV file
    split: str = "train"
    workers: int = 0
    augment: Augment = field(default_factory=Augment)   # 3D point clouds
    audio_augment: AudioAugment = field(default_factory=AudioAugment)
    view_augment: ViewAugment = field(default_factory=ViewAugment)   # depth maps (with their RGB frame), tactile frames
    image_augment: ViewAugment = field(default_factory=ViewAugment)  # the paired frame of tactile and audio
    options: Any = field(default_factory=dict)  # checked against DATA_OPTIONS[kind]; then an instance of it


@dataclass
class ParamGroup:
    """Trainable parameters whose name matches one of ``params`` (fnmatch patterns, first group wins)."""

    params: list[str] = field(default_factory=list)
    lr_scale: float = 1.0                   # this group's lr = the schedule's lr x lr_scale
    weight_decay: Optional[float] = None    # None: optim.weight_decay (norms, biases, … are still exempt)


@dataclass
class OptimSection:
    name: Literal["adamw", "sgd"] = "adamw"
    lr: float = 5e-4
    betas: tuple[float, float] = (0.9, 0.98)    # adamw
    eps: float = 1e-6                       # adamw
    momentum: float = 0.0                   # sgd
    weight_decay: float = 0.2               # not applied to norms, biases, embeddings' gains or the logit scale
    warmup_steps: int = 10_000
    schedule: Literal["cosine", "constant"] = "cosine"
    grad_clip: Optional[float] = None
    param_groups: dict[str, ParamGroup] = field(default_factory=dict)


@dataclass
class ValidationSection:
    every: Optional[int] = None             # steps; None disables periodic zero-shot validation
    benchmark: Optional[str] = None         # a prepared benchmark name / folder, or "synthetic": held-out
                                            # items of data.kind synthetic (another seed, limit items)
    data_root: Optional[str] = None
    limit: Optional[int] = None


@dataclass
class Recipe:
    name: str = "recipe"
    description: str = ""
    seed: int = 0
    output_dir: str = "runs/recipe"
    max_steps: Optional[int] = None         # overrides epochs when set
    epochs: int = 1
    batch_size: int = 32                    # per process
    grad_accum: int = 1
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"   # autocast of the lens step and frozen towers; fp16: CUDA
    save_every: int = 1000
    log_every: int = 10
    cache_features: bool = True             # frozen text/image towers: encode each input once
    feature_cache_mb: Optional[int] = 2048  # bound per frozen tower, least recently used evicted; null: none
    tensorboard: bool = False
    logit_scale_init: float = 14.285714     # 1/0.07
    logit_scale_max: float = 100.0
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    validation: ValidationSection = field(default_factory=ValidationSection)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------------------------
# Walking an input against the schema
# ---------------------------------------------------------------------------------------------

def _strip_optional(hint: Any) -> tuple[Any, bool]:
    if get_origin(hint) in (Union, types.UnionType):
        args = [a for a in get_args(hint) if a is not type(None)]
        if len(args) < len(get_args(hint)):
            return (args[0] if len(args) == 1 else Union[tuple(args)]), True
    return hint, False


def _describe(hint: Any) -> str:
    inner, optional = _strip_optional(hint)
    origin = get_origin(inner)
    if inner is bool:
        text = "true or false"
    elif inner is int:
        text = "an integer"
    elif inner is float:
        text = "a number"
    elif inner is str:
        text = "a string"
    elif origin is Literal:
        text = "one of " + ", ".join(map(str, get_args(inner)))
    elif origin is tuple:
        text = f"a list of {len(get_args(inner))} {_describe(get_args(inner)[0]).split(' ', 1)[-1]}s"
    elif origin is list:
        text = f"a list of {_describe(get_args(inner)[0]).split(' ', 1)[-1]}s"
    else:
        text = "a value of type " + getattr(inner, "__name__", str(inner))
    return text + (" or null" if optional else "")


def _is_bool_hint(hint: Any) -> bool:
    return _strip_optional(hint)[0] is bool


def _section_kind(hint: Any) -> str | None:
    inner, _ = _strip_optional(hint)
    if is_dataclass(inner):
        return "section"
    if get_origin(inner) is dict and is_dataclass(get_args(inner)[1]):
        return "named sections"
    return None


def _check(cls: type, data: Any, where: str) -> None:
    """Raise ``ConfigError('<key>: <reason>')`` for the first key of ``data`` that ``cls`` does not accept."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'recipe'}: expected a mapping of keys, got {_shown(data)}")
    hints = get_type_hints(cls)
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in hints:
            known = ", ".join(f.name for f in fields(cls)) or "none"
            raise ConfigError(f"{path}: unknown key (known here: {known})")
        hint = hints[key]
        kind = _section_kind(hint)
        if kind == "section":
            if value is None:
                raise ConfigError(f"{path}: expected a section, got null")
            _check(_strip_optional(hint)[0], value, path)
        elif kind == "named sections":
            if not isinstance(value, dict):
                raise ConfigError(f"{path}: expected a mapping of named sections, got {_shown(value)}")
            for name, item in value.items():
                _check(get_args(hint)[1], item, f"{path}.{name}")
        elif hint is Any:
            continue
        else:
            _check_leaf(cls, key, hint, value, path)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@functools.cache
def _leaf_schema(cls: type, key: str):
    """A one-field schema for ``cls.key``: OmegaConf checks one value without building the whole section."""
    f = next(f for f in fields(cls) if f.name == key)
    default = field(default_factory=f.default_factory) if f.default is MISSING else field(default=f.default)
    return OmegaConf.structured(make_dataclass(f"{cls.__name__}_{key}", [(key, get_type_hints(cls)[key], default)]))


def _check_leaf(cls: type, key: str, hint: Any, value: Any, path: str) -> None:
    if isinstance(value, str) and "${" in value:
        return  # an interpolation: checked once resolved
    if _is_bool_hint(hint) and value is not None and not isinstance(value, bool):
        raise ConfigError(f"{path}: expected {_describe(hint)}, got {_shown(value)}")
    try:
        OmegaConf.merge(_leaf_schema(cls, key), {key: value})
    except OmegaConfBaseException:
        raise ConfigError(f"{path}: expected {_describe(hint)}, got {_shown(value)}") from None


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------

def shipped_recipe_files() -> dict[str, Traversable]:
    """The recipes shipped as package data (``vitlens_cli/recipes/*.yaml``), by name."""
    folder = files("vitlens_cli") / "recipes"
    return {f.name.removesuffix(".yaml"): f for f in folder.iterdir() if f.name.endswith(".yaml") and f.is_file()}


def shipped_recipes() -> list[str]:
    return sorted(shipped_recipe_files())


def resolve_recipe(name_or_path: str | Path) -> Path | Traversable:
    """A recipe file: the path itself when it exists, else the shipped recipe of that name."""
    path = Path(name_or_path)
    if path.exists() or path.is_symlink():
        return path
    text = str(name_or_path)
    if "/" not in text and text:
        shipped = shipped_recipe_files().get(text.removesuffix(".yaml"))
        if shipped is not None:
            return shipped
    raise ConfigError(f"{name_or_path}: no such recipe file or shipped recipe "
                      f"(shipped: {', '.join(shipped_recipes())})")


def _read_recipe_file(path: Path | Traversable) -> dict[str, Any]:
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder, not a recipe file")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such recipe") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if "\x00" in text:
        raise ConfigError(f"{path}: not a text file (holds NUL bytes)")
    try:
        cfg = OmegaConf.create(text) if text.strip() else OmegaConf.create({})
    except Exception as exc:  # yaml errors, duplicate keys, tags: all come from this one parse
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{path}: invalid YAML ({first})") from None
    if not OmegaConf.is_dict(cfg):
        raise ConfigError(f"{path}: a recipe is a mapping of keys, not {type(OmegaConf.to_container(cfg)).__name__}")
    return OmegaConf.to_container(cfg)


def _parse_override(item: str) -> dict[str, Any]:
    key, sep, value = item.partition("=")
    if not sep or not key.strip() or any(not part for part in key.strip().split(".")):
        raise ConfigError(f"override '{item}': expected key=value, e.g. max_steps=100")
    try:
        return OmegaConf.to_container(OmegaConf.from_dotlist([f"{key.strip()}={value}"]))
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"override '{item}': cannot parse the value ({first})") from None


def _touches(key: str, path: str) -> bool:
    return key == path or path.startswith(key + ".") or key.startswith(path + ".")


def load_recipe(path: str | Path | Traversable | None = None, overrides: list[str] | None = None) -> Recipe:
    """The recipe file (a path, or a shipped one from ``resolve_recipe``) with ``key=value`` overrides applied,
    validated; no file: the defaults."""
    sources: list[tuple[str, dict[str, Any]]] = []
    if isinstance(path, str):
        path = Path(path)
    if path is not None:
        sources.append((str(path), _read_recipe_file(path)))
    override_keys: list[tuple[str, str]] = []
    for item in overrides or []:
        sources.append((f"override '{item}'", _parse_override(item)))
        override_keys.append((item.partition("=")[0].strip(), f"override '{item}'"))

    def origin(key: str) -> str:
        hits = [label for k, label in override_keys if _touches(k, key)] or \
            [label for k, label in override_keys if "." in key and _touches(k, key.rsplit(".", 1)[0])]
        return hits[-1] if hits else (str(path) if path is not None else "recipe")

    for label, data in sources:
        try:
            _check(Recipe, data, "")
        except ConfigError as exc:
            raise ConfigError(f"{label}: {exc}") from None
    try:
        merged = OmegaConf.merge(OmegaConf.structured(Recipe), *(data for _, data in sources))
        recipe = OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:  # what the walk cannot see: interpolations, once resolved
        key = exc.full_key or "recipe"
        first = (exc.msg or str(exc)).strip().splitlines()[0]
        raise ConfigError(f"{origin(key)}: {key}: {first}") from None
    try:
        modality, kind = recipe.model.modality, recipe.data.kind
        if kind in MODALITY_KINDS and MODALITY_KINDS[kind] != modality:
            raise ConfigError(f"data.kind: '{kind}' holds {MODALITY_KINDS[kind]} data, model.modality is "
                              f"'{modality}'")
        if modality != "3d" and kind not in NON_3D_KINDS and kind not in MODALITY_KINDS:
            own = [k for k, m in MODALITY_KINDS.items() if m == modality]
            raise ConfigError(f"data.kind: model.modality '{modality}' trains on "
                              f"{' or '.join(NON_3D_KINDS + tuple(own))} data, got {_shown(kind)}")
        recipe.data.options = _data_options(recipe.data)
        _validate(recipe)
        model_config(recipe)
    except ConfigError as exc:
        key = str(exc).split(":", 1)[0]
        raise ConfigError(f"{origin(key)}: {exc}") from None
    return recipe


def _data_options(data: DataSection):
    cls = DATA_OPTIONS[data.kind]
    options = data.options if data.options is not None else {}
    if is_dataclass(options):
        options = asdict(options)
    if not isinstance(options, dict):
        raise ConfigError(f"data.options: expected a mapping, got {_shown(options)}")
    try:
        _check(cls, options, "data.options")
    except ConfigError as exc:
        if "unknown key" in str(exc):
            raise ConfigError(f"{str(exc).split(':', 1)[0]}: unknown key for data.kind '{data.kind}' "
                              f"(known: {', '.join(f.name for f in fields(cls)) or 'none'})") from None
        raise
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls), options))


def _validate(r: Recipe) -> None:
    """Value checks the types cannot express; each error starts with its key."""
    def need(ok: bool, key: str, reason: str, value: Any) -> None:
        if not ok:
            raise ConfigError(f"{key}: {reason}, got {_shown(value)}")

    need(r.seed >= 0, "seed", "must be 0 or more", r.seed)
    need(r.max_steps is None or r.max_steps >= 1, "max_steps", "must be at least 1 (or null: use epochs)", r.max_steps)
    for key in ("epochs", "batch_size", "grad_accum", "save_every", "log_every"):
        need(getattr(r, key) >= 1, key, "must be at least 1", getattr(r, key))
    need(r.feature_cache_mb is None or r.feature_cache_mb >= 0, "feature_cache_mb", "must be 0 or more (or null: "
         "unbounded)", r.feature_cache_mb)
    need(r.logit_scale_init > 0, "logit_scale_init", "must be positive", r.logit_scale_init)
    need(r.logit_scale_max >= r.logit_scale_init, "logit_scale_max", "must be at least logit_scale_init",
         r.logit_scale_max)
    u = r.model.unlock
    need(u.first_blocks >= 0, "model.unlock.first_blocks", "must be 0 or more", u.first_blocks)
    need(u.last_blocks >= 0, "model.unlock.last_blocks", "must be 0 or more", u.last_blocks)
    need(r.model.clip_pretrained is None or r.model.clip_model is not None, "model.clip_pretrained",
         "needs model.clip_model", r.model.clip_pretrained)
    d = r.data
    need(d.workers >= 0, "data.workers", "must be 0 or more", d.workers)
    need(d.kind == "synthetic" or bool(d.root), "data.root", f"data.kind '{d.kind}' needs a data root", d.root)
    a = d.augment
    need(0 <= a.dropout < 1, "data.augment.dropout", "must be in [0, 1)", a.dropout)
    need(0 < a.scale[0] <= a.scale[1], "data.augment.scale", "must be [low, high] with 0 < low <= high", list(a.scale))
    for key in ("shift", "rotation_sigma", "rotation_clip"):
        need(getattr(a, key) >= 0, f"data.augment.{key}", "must be 0 or more", getattr(a, key))
    need(0 <= a.rgb_drop <= 1, "data.augment.rgb_drop", "must be in [0, 1]", a.rgb_drop)
    aa = d.audio_augment
    for key in ("freq_mask", "time_mask"):
        need(getattr(aa, key) >= 0, f"data.audio_augment.{key}", "must be 0 or more", getattr(aa, key))
    need(0 <= aa.mixup <= 1, "data.audio_augment.mixup", "must be in [0, 1]", aa.mixup)
    need(r.model.modality == "audio" or aa == AudioAugment(), "data.audio_augment", "applies to model.modality "
         "audio only", asdict(aa))
    for section in ("view_augment", "image_augment"):
        va, at = getattr(d, section), f"data.{section}"
        need(0 < va.crop_scale[0] <= va.crop_scale[1] <= 1, f"{at}.crop_scale",
             "must be [low, high] with 0 < low <= high <= 1", list(va.crop_scale))
        need(0 < va.crop_ratio[0] <= va.crop_ratio[1], f"{at}.crop_ratio",
             "must be [low, high] with 0 < low <= high", list(va.crop_ratio))
        side = va.short_side
        need(side is None or 224 <= side[0] <= side[1], f"{at}.short_side",
             "must be [min, max] with 224 <= min <= max (sizes for a 224 crop), or null", side and list(side))
        need(side is None or not va.random_crop, f"{at}.short_side", "and random_crop are two crops; set one", side)
        for key in ("hflip", "vflip", "erase"):
            need(0 <= getattr(va, key) <= 1, f"{at}.{key}", "must be in [0, 1]", getattr(va, key))
        need(0 <= va.rotation <= 360, f"{at}.rotation", "must be in [0, 360] degrees", va.rotation)
        need(0 <= va.color_jitter <= 0.5, f"{at}.color_jitter", "must be in [0, 0.5] (the hue shift is at most "
             "half the colour wheel)", va.color_jitter)
        ra = va.rand_augment
        need(ra is None or (ra[0] >= 1 and 0 <= ra[1] <= 30), f"{at}.rand_augment",
             "must be [num_ops, magnitude] with num_ops >= 1 and magnitude in 0..30, or null", ra and list(ra))
        vra = va.video_rand_augment
        need(vra is None or (1 <= vra[0] <= len(VIDEO_OPS) and 0 <= vra[1] <= VIDEO_MAX_LEVEL and 0 <= vra[2] <= 1),
             f"{at}.video_rand_augment", f"must be [num_layers, magnitude, prob] with num_layers in "
             f"1..{len(VIDEO_OPS)} (distinct ops), magnitude in 0..{VIDEO_MAX_LEVEL} and prob in [0, 1], or null",
             vra and list(vra))
    need(d.view_augment.rand_augment is None, "data.view_augment.rand_augment", "applies to a paired frame "
         "(data.image_augment): the released RandAugment3d leaves an RGB-D stack unchanged and the tactile "
         "train processor has none", d.view_augment.rand_augment and list(d.view_augment.rand_augment))
    need(d.view_augment.video_rand_augment is None, "data.view_augment.video_rand_augment", "applies to the "
         "video frame paired with model.modality audio (data.image_augment)",
         d.view_augment.video_rand_augment and list(d.view_augment.video_rand_augment))
    need(r.model.modality == "audio" or d.image_augment.video_rand_augment is None,
         "data.image_augment.video_rand_augment", "applies to the video frame paired with model.modality audio "
         "only (a tactile frame's Image_Processor_Train has torchvision's RandAugment: rand_augment)",
         d.image_augment.video_rand_augment and list(d.image_augment.video_rand_augment))
    need(r.model.modality in ("depth", "tactile") or d.view_augment == ViewAugment(), "data.view_augment",
         "applies to model.modality depth or tactile only", asdict(d.view_augment))
    need(r.model.modality in ("tactile", "audio") or d.image_augment == ViewAugment(), "data.image_augment",
         "applies to the paired frame of model.modality tactile or audio (a depth map's RGB frame shares "
         "data.view_augment)", asdict(d.image_augment))
    opts = d.options
    if isinstance(opts, SyntheticOptions):
        need(opts.size >= 1, "data.options.size", "must be at least 1", opts.size)
        need(opts.seed is None or opts.seed >= 0, "data.options.seed", "must be 0 or more", opts.seed)
        known = synthetic_classes(r.model.modality)
        if opts.classes is not None:
            need(len(opts.classes) >= 2, "data.options.classes", "needs at least 2 classes", opts.classes)
            unknown = [c for c in opts.classes if c not in known]
            need(not unknown, "data.options.classes", f"unknown synthetic {r.model.modality} class(es); choose "
                 f"from {', '.join(known)}", unknown)
        need(opts.templates is None or (len(opts.templates) > 0 and all(t.count("{}") == 1 for t in opts.templates)),
             "data.options.templates", "must be a non-empty list of texts with one '{}' each", opts.templates)
    if isinstance(opts, AudioSetOptions):
        need(bool(opts.annotation) and all(opts.annotation), "data.options.annotation",
             "must name at least one annotation JSON", opts.annotation)
        need(opts.frames in (None, "video"), "data.options.frames",
             "must be video (decode each item's video_path) or null (frames from data.options.frame_dir)",
             opts.frames)
        need(opts.frames is None or opts.frame_dir is None, "data.options.frame_dir",
             "must be null with data.options.frames video (the frames are decoded from the videos)", opts.frame_dir)
        need(opts.frames is None or opts.frame_rate is None, "data.options.frame_rate",
             "must be null with data.options.frames video (the video's own frame rate is used)", opts.frame_rate)
        need(opts.frame_rate is None or opts.frame_rate > 0, "data.options.frame_rate",
             "must be positive (frames per second), or null", opts.frame_rate)
        need(opts.frame_rate is None or opts.frame_dir is not None, "data.options.frame_rate",
             "needs data.options.frame_dir", opts.frame_rate)
    if isinstance(opts, OpenShapeOptions):
        from ..data.triplets import TEXT_SOURCES

        need(bool(opts.text_source) and set(opts.text_source) <= set(TEXT_SOURCES), "data.options.text_source",
             f"must name some of {', '.join(TEXT_SOURCES)}", opts.text_source)
    o = r.optim
    need(o.lr > 0, "optim.lr", "must be positive", o.lr)
    need(all(0 <= b < 1 for b in o.betas), "optim.betas", "must be two numbers in [0, 1)", list(o.betas))
    need(o.eps > 0, "optim.eps", "must be positive", o.eps)
    need(0 <= o.momentum < 1, "optim.momentum", "must be in [0, 1)", o.momentum)
    need(o.weight_decay >= 0, "optim.weight_decay", "must be 0 or more", o.weight_decay)
    need(o.warmup_steps >= 0, "optim.warmup_steps", "must be 0 or more", o.warmup_steps)
    need(o.grad_clip is None or o.grad_clip > 0, "optim.grad_clip", "must be positive (or null: no clipping)",
         o.grad_clip)
    for name, g in o.param_groups.items():
        key = f"optim.param_groups.{name}"
        need(bool(g.params) and all(g.params), f"{key}.params", "must list at least one name pattern", g.params)
        need(g.lr_scale > 0, f"{key}.lr_scale", "must be positive (freeze parameters with model.unlock)", g.lr_scale)
        need(g.weight_decay is None or g.weight_decay >= 0, f"{key}.weight_decay", "must be 0 or more",
             g.weight_decay)
    v = r.validation
    need(v.every is None or v.every >= 1, "validation.every", "must be at least 1 (or null: off)", v.every)
    need(v.every is None or v.benchmark is not None, "validation.benchmark", "is needed when validation.every is set",
         v.benchmark)
    need(v.limit is None or v.limit >= 1, "validation.limit", "must be at least 1 (or null: all)", v.limit)
    need(v.benchmark != SYNTHETIC_HELDOUT or d.kind == "synthetic", "validation.benchmark",
         "'synthetic' holds out items of data.kind synthetic", v.benchmark)
    need(v.benchmark in (None, SYNTHETIC_HELDOUT) or r.model.modality == "3d", "validation.benchmark",
         f"periodic validation of a {r.model.modality} lens runs on 'synthetic' held-out items", v.benchmark)


def _changes(obj: Any) -> dict[str, Any]:
    """The fields of a ``*Changes`` object that are set (not None), nested sections included when non-empty."""
    out = {}
    for f in fields(obj):
        value = getattr(obj, f.name)
        if is_dataclass(value):
            value = _changes(value)
            if value:
                out[f.name] = value
        elif value is not None:
            out[f.name] = value
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def recipe_data(recipe: Recipe) -> dict[str, Any]:
    """The resolved recipe as plain YAML-able data (``model.lens`` lists only what it changes)."""
    data = _plain(recipe.to_dict())
    data["model"]["lens"] = _plain(_changes(recipe.model.lens))
    data["model"]["tower"] = _plain(_tower_changes(recipe.model.tower))
    return data


def save_recipe(recipe: Recipe, path: Path) -> None:
    from ..atomic import write_text_atomic

    write_text_atomic(path, OmegaConf.to_yaml(OmegaConf.create(recipe_data(recipe)), sort_keys=False))


_NON_NEGATIVE = {"skip_first_n_layers"}


def _tower_changes(tower: TowerChanges) -> dict[str, Any]:
    out: dict[str, Any] = {"params": dict(tower.params)} if tower.params else {}
    for section in ("perceiver", "vit"):
        values = _changes(getattr(tower, section))
        if values:
            out[section] = values
    return out


def model_config(recipe: Recipe) -> ModelConfig:
    """The zoo spec named by the recipe with its ``model.lens`` (3D) or ``model.tower`` changes applied
    (validated again). A non-3D recipe keeps only the tower it trains (and the text tower)."""
    try:
        spec = get_spec(recipe.model.spec)
    except ConfigError as exc:
        raise ConfigError(f"model.spec: {exc}") from None
    modality = recipe.model.modality
    if modality not in spec.modalities:
        raise ConfigError(f"model.spec: '{recipe.model.spec}' has no {modality} tower "
                          f"(it has: {', '.join(spec.modalities)})")
    if modality != "3d":
        return _tower_config(recipe, spec)
    if _tower_changes(recipe.model.tower):
        raise ConfigError("model.tower: changes a non-3D tower; the 3D lens is changed with model.lens")
    changes = _changes(recipe.model.lens)
    if not changes:
        return spec
    for section, values in [("", changes), *[(k, v) for k, v in changes.items() if isinstance(v, dict)]]:
        for key, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                least = 0 if key in _NON_NEGATIVE else 1
                if value < least or (isinstance(value, float) and value <= 0):
                    full = ".".join(p for p in ("model.lens", section, key) if p)
                    raise ConfigError(f"{full}: must be {'0 or more' if least == 0 else 'positive'}, got {value}")
    lens = spec.lens.to_dict()
    for key, value in changes.items():
        lens[key] = {**lens[key], **value} if isinstance(value, dict) else value
    try:
        new_lens = LensConfig.from_dict(lens)
    except ConfigError as exc:
        subject = getattr(exc, "subject", None)
        if subject:
            parts = [p for p in str(subject).split(".") if p]
            parts = [p for i, p in enumerate(parts) if i == 0 or p != parts[i - 1]]  # "vit.vit": one key
            key = ".".join(parts[1:] if parts[:1] == ["lens"] else parts)
            raise ConfigError(f"model.lens{'.' + key if key else ''}: {exc.reason}") from None
        raise ConfigError(f"model.lens: {exc}") from None
    return replace(spec, lens=new_lens, preprocess=replace(spec.preprocess, num_points=new_lens.npoints))



def _tower_config(recipe: Recipe, spec: ModelConfig) -> ModelConfig:
    modality = recipe.model.modality
    if _changes(recipe.model.lens):
        raise ConfigError(f"model.lens: is the 3D lens; model.modality '{modality}' changes its tower with "
                          "model.tower")
    tower = spec.towers[modality]
    changes = _tower_changes(recipe.model.tower)
    if changes:
        if "perceiver" in changes and tower.perceiver is None:
            raise ConfigError(f"model.tower.perceiver: the {modality} tower of '{recipe.model.spec}' has no Perceiver")
        data = tower.to_dict()
        for key, value in changes.items():
            data[key] = {**data[key], **value}
        try:
            tower = TowerConfig.from_dict(data, "tower")
        except ConfigError as exc:
            subject = str(exc.subject or "").removeprefix("tower").lstrip(".")
            raise ConfigError(f"model.tower{'.' + subject if subject else ''}: {exc.reason}") from None
    contracts = {k: v for k, v in spec.contracts.items() if k in (modality, "text")}
    return replace(spec, lens=None, preprocess=None, towers={modality: tower}, contracts=contracts)
