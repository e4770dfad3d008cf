"""Checkpoint layouts — the official ones and our own (safetensors + JSON config) — in one place.

Official files are read with ``torch.load(weights_only=True)``: plain tensors and containers, never
arbitrary pickled objects. Which layout a file is in comes from the model card (``card.layout``);
the key prefixes are only *sniffed* to say what a file looks like when it does not match. Keys are
selected by prefix, converted (1×1 conv kernels become Linear weights) and loaded strictly: anything
missing or unexpected in a tower is an error listing the keys.
"""
from __future__ import annotations

import contextlib
import json
import os
import pickle
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..errors import CheckpointError, ConfigError
from ..safe_load import load_tensors
from .config import POINT_MODALITY, ModelConfig
from .vitlens import ViTLens, tower_attr

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"

# Every state-dict prefix vitlens knows, here and nowhere else.
TEXT_ROOTS = ("transformer.", "token_embedding.", "positional_embedding", "ln_final.", "text_projection")
LENS_ROOTS = ("visual_adapter.", "perceiver.")            # the lens proper, without the ViT
CLIP_IMAGE = "visual."                                      # open_clip CLIP's image tower
ONESTOP_NAMES = {POINT_MODALITY: "pc", "depth": "depth", "audio": "audio", "tactile": "tactile", "eeg": "eeg",
                 "image": "image"}                         # our modality → the one-stop tower name


@dataclass(frozen=True)
class Layout:
    """Where the towers of one official file format sit (after a leading ``module.`` is dropped)."""

    name: str
    description: str
    single_tower: str | None        # prefix of the file's one lens tower (ULIP, OpenShape), or
    onestop: str | None = None      # per-modality prefix ``vitlens.<m>.`` (the one-stop file)
    text: str | None = None         # prefix of the text tower keys ('' = at the root)
    lens_only: bool = False         # the file holds only visual_adapter / perceiver

    def tower_prefix(self, modality: str) -> str:
        if self.onestop is not None:
            return f"{self.onestop}{ONESTOP_NAMES.get(modality, modality)}."
        return str(self.single_tower)


LAYOUTS = {
    "ulip": Layout("ulip", "ULIP / TriCLIP training file (module.visual.*, text at the root)", "visual.", text=""),
    "openshape": Layout("openshape", "OpenShape CLIPBindWrap (module.backbone.*, logit_scale apart)", "backbone."),
    "vitlens": Layout("vitlens", "one-stop ViTLens export (vitlens.<modality>.*)", None, onestop="vitlens.",
                      text="vitlens.text."),
    "eva_lens": Layout("eva_lens", "lens for InstructBLIP's EVA ViT (visual.visual_adapter / visual.perceiver)",
                       "visual.", lens_only=True),
}


def read_torch_checkpoint(path: str | Path) -> dict:
    try:
        obj = load_tensors(path)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(path, str(exc)) from None
    except FileNotFoundError:
        raise CheckpointError(path, "no such checkpoint") from None
    except IsADirectoryError:
        raise CheckpointError(path, "is a folder, not a checkpoint file") from None
    except Exception as exc:  # unpickling errors come in many types
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise CheckpointError(path, f"not a loadable torch checkpoint ({type(exc).__name__}: {first[:200]})") from exc
    if not isinstance(obj, dict):
        raise CheckpointError(path, f"expected a dict of tensors, got {type(obj).__name__}")
    return obj


def _strip(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def state_of(obj: dict, path: str | Path = "<checkpoint>") -> dict[str, torch.Tensor]:
    """The state dict of an official container, with a DDP ``module.`` prefix dropped."""
    state = obj.get("state_dict", obj.get("model", obj))
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(path, "no state_dict of tensors found")
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}


def sniff_layout(state: dict[str, torch.Tensor]) -> str | None:
    """What the key prefixes suggest (for messages only: the card decides)."""
    keys = list(state)
    if any(k.startswith("vitlens.") for k in keys):
        return "vitlens"
    if any(k.startswith("backbone.") for k in keys):
        return "openshape"
    visual = _strip(state, "visual.")
    if visual and not any(k.startswith(("transformer.", "class_embedding", "ln_post.")) for k in visual):
        return "eva_lens"
    if visual or any(k.startswith(TEXT_ROOTS) for k in keys):
        return "ulip"
    return None


def _layout_for(cfg: ModelConfig, state: dict[str, torch.Tensor], path: str | Path) -> Layout:
    looks = sniff_layout(state)
    hint = f"; the file looks like '{looks}'" if looks else ""
    name = cfg.card.layout
    if name is None:
        raise CheckpointError(path, f"model card '{cfg.card.name}' names no checkpoint layout "
                                    f"(one of {', '.join(LAYOUTS)}){hint}")
    if name not in LAYOUTS:
        raise CheckpointError(path, f"model card '{cfg.card.name}' names an unknown layout '{name}' "
                                    f"(known: {', '.join(LAYOUTS)}){hint}")
    return LAYOUTS[name]


def _convert_to(target: dict[str, torch.Tensor], source: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Reshape 1×1 conv kernels ``(out, in, 1[, 1])`` to the Linear ``(out, in)`` our modules use."""
    out = {}
    for k, v in source.items():
        want = target.get(k)
        if want is not None and v.shape != want.shape and v.numel() == want.numel() and v.dim() > want.dim():
            v = v.reshape(want.shape)
        out[k] = v
    return out


def file_is_tied(state: dict[str, torch.Tensor], depth: int) -> bool:
    """Whether a Perceiver's layers 2.. equal layer 1 in the file (the official tying rule).

    An untied Perceiver can hold tied weights, so tying is decided from the tensors, never refused.
    """
    if depth < 3:
        return False
    later = [k for k in state if k.startswith("perceiver.layers.")
             and not k.startswith(("perceiver.layers.0.", "perceiver.layers.1."))]
    if not later:
        return False
    for k in later:
        ref = state.get("perceiver.layers.1." + k.split(".", 3)[3])
        if ref is None or ref.shape != state[k].shape or not torch.equal(ref, state[k]):
            return False
    return True


def _list(keys: list[str]) -> str:
    return f"{len(keys)} keys ({', '.join(keys[:5])}{', …' if len(keys) > 5 else ''})"


def load_tower_state(module: torch.nn.Module, state: dict[str, torch.Tensor], what: str,
                     lens_only: bool = False) -> None:
    """Load strictly; every mismatch (missing, unexpected, wrong shape) is listed on one line."""
    target = module.state_dict()
    if lens_only:
        target = {k: v for k, v in target.items() if k.startswith(LENS_ROOTS)}
    state = _convert_to(target, state)
    missing = sorted(set(target) - set(state))
    unexpected = sorted(set(state) - set(target))
    bad_shape = sorted(k for k in set(state) & set(target) if state[k].shape != target[k].shape)
    problems = []
    if missing:
        problems.append(f"missing {_list(missing)}")
    if unexpected:
        problems.append(f"unexpected {_list(unexpected)}")
    if bad_shape:
        k = bad_shape[0]
        problems.append(f"{len(bad_shape)} shape mismatches (e.g. {k}: file {tuple(state[k].shape)} "
                        f"vs model {tuple(target[k].shape)})")
    if problems:
        raise CheckpointError(what, "does not match the model config: " + "; ".join(problems))
    module.load_state_dict(state, strict=not lens_only)


@dataclass
class OfficialWeights:
    """An official file split into its parts by the layout its card names."""

    layout: str
    towers: dict[str, dict[str, torch.Tensor]]
    text: dict[str, torch.Tensor]
    logit_scale: torch.Tensor | None


def split_official(obj: dict, cfg: ModelConfig, path: str | Path = "<checkpoint>") -> OfficialWeights:
    """The tower, text and logit-scale tensors of ``obj`` for the modalities ``cfg`` holds."""
    state = state_of(obj, path)
    layout = _layout_for(cfg, state, path)
    looks = sniff_layout(state)
    towers = {}
    if layout.single_tower is not None and len(cfg.modalities) > 1:
        raise CheckpointError(path, f"a '{layout.name}' file holds one lens tower, the config has "
                                    f"{len(cfg.modalities)} ({', '.join(cfg.modalities)})")
    for m in cfg.modalities:
        prefix = layout.tower_prefix(m)
        part = _strip(state, prefix)
        if layout.lens_only:
            part = {k: v for k, v in part.items() if k.startswith(LENS_ROOTS)}
        if part:
            towers[m] = part
        elif not (layout.onestop is not None and m == "image"):  # the one-stop image tower may be absent
            seen = f"card '{cfg.card.name}' says layout '{layout.name}'" + (
                f", the file looks like '{looks}'" if looks and looks != layout.name else "")
            raise CheckpointError(path, f"holds no {m} tower (no '{prefix}*' keys; {seen})")
    text: dict[str, torch.Tensor] = {}
    if layout.text is not None:
        text = {k: v for k, v in _strip(state, layout.text).items() if k.startswith(TEXT_ROOTS)}
    scale = state.get("logit_scale") if layout.name == "ulip" else None
    if layout.name == "openshape":
        scale = obj.get("logit_scale")
        if isinstance(scale, dict):
            scale = next(iter(scale.values()), None)
    return OfficialWeights(layout.name, towers, text, scale if isinstance(scale, torch.Tensor) else None)


def tie_from_file(cfg: ModelConfig, weights: OfficialWeights) -> ModelConfig:
    """``cfg`` with every Perceiver's weight tying set to what the file's tensors show."""
    lens, towers = cfg.lens, dict(cfg.towers)
    for m, state in weights.towers.items():
        tower = cfg.tower(m)
        if tower.perceiver is None:
            continue
        tied = file_is_tied(state, tower.perceiver.depth)
        if tied != tower.perceiver.weight_tie_layers:
            new = replace(tower, perceiver=replace(tower.perceiver, weight_tie_layers=tied))
            if m == POINT_MODALITY:
                lens = new
            else:
                towers[m] = new
    return replace(cfg, lens=lens, towers=towers)


def load_official_into(model: ViTLens, weights: OfficialWeights, path: str | Path = "<checkpoint>") -> None:
    if LAYOUTS[weights.layout].lens_only:
        raise CheckpointError(path, f"holds only a lens for InstructBLIP's EVA ViT (layout '{weights.layout}'); "
                                    "it has no CLIP ViT blocks to embed with")
    for m, state in weights.towers.items():
        load_tower_state(model.towers[m], state, f"{path} ({m} tower, layout '{weights.layout}')")
    if model.text is not None and weights.text:
        load_tower_state(model.text, weights.text, f"{path} (text tower)")
    if weights.logit_scale is not None:
        with torch.no_grad():
            model.logit_scale.copy_(weights.logit_scale.reshape(()))


def load_text_tower(model: ViTLens, path: str | Path) -> ViTLens:
    """Fill ``model.text`` (strictly) from the text keys of an official file in the card's layout.

    The towers are left untouched, so this also serves files that hold only a text tower.
    """
    if model.text is None:
        raise CheckpointError(model.cfg.card.name, "has no text tower to load into")
    state = state_of(read_torch_checkpoint(path), path)
    layout = _layout_for(model.cfg, state, path)
    text = {} if layout.text is None else {k: v for k, v in _strip(state, layout.text).items()
                                           if k.startswith(TEXT_ROOTS)}
    if not text:
        raise CheckpointError(path, f"holds no text-tower keys (layout '{layout.name}')")
    load_tower_state(model.text, text, f"{path} (text tower, layout '{layout.name}')")
    model.weights_file = None  # the weights now come from two files
    return model


def save_model(model: ViTLens, directory: str | Path) -> Path:
    """Write ``model.safetensors`` + ``config.json`` (with the model card) atomically into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    # safetensors refuses shared storage (tied Perceiver layers): store independent copies.
    state = {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}
    temps: list[str] = []
    try:
        fd, tmp_w = tempfile.mkstemp(dir=directory, prefix=f".{WEIGHTS_NAME}.", suffix=".tmp")
        os.close(fd)
        temps.append(tmp_w)
        save_file(state, tmp_w, metadata={"format": "vitlens/2"})
        fd, tmp_c = tempfile.mkstemp(dir=directory, prefix=".config.", suffix=".tmp")
        temps.append(tmp_c)
        with os.fdopen(fd, "w") as fh:
            json.dump(model.cfg.to_dict(), fh, indent=2)
        os.replace(tmp_w, directory / WEIGHTS_NAME)
        os.replace(tmp_c, directory / CONFIG_NAME)
    finally:  # a failed save leaves no partial files behind (and replaced ones are already gone)
        for tmp in temps:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    return directory


def read_saved(directory_or_file: str | Path, config: ModelConfig | None = None
               ) -> tuple[dict[str, torch.Tensor], ModelConfig, Path]:
    """State (model key names), config and weights path of our own format."""
    path = Path(directory_or_file)
    weights = path / WEIGHTS_NAME if path.is_dir() else path
    if config is None:
        cfg_path = weights.parent / CONFIG_NAME
        if not cfg_path.is_file():
            raise CheckpointError(weights, f"no {CONFIG_NAME} beside it; pass --config")
        from .factory import read_config

        config = read_config(cfg_path)
    if not weights.is_file():
        raise CheckpointError(weights, "no such file")
    try:
        state = load_file(str(weights))
    except Exception as exc:
        raise CheckpointError(weights, f"not a readable safetensors file ({exc})") from exc
    prefixes = tuple(f"{tower_attr(m)}." for m in config.modalities)
    if not any(k.startswith(prefixes) for k in state):
        raise CheckpointError(weights, f"no tower weights ({', '.join(p + '*' for p in prefixes)}); "
                                       "is this a vitlens save of this config?")
    return state, config, weights


def load_saved(directory_or_file: str | Path, config: ModelConfig | None = None) -> ViTLens:
    """Load our own format: a folder, or a ``.safetensors`` file with ``config.json`` beside it."""
    state, config, weights = read_saved(directory_or_file, config)
    try:
        model = ViTLens(config)
    except ConfigError as exc:
        raise CheckpointError(weights, f"config does not build: {exc}") from exc
    if model.text is None:  # a text tower saved alongside is not needed by a config without one
        state = {k: v for k, v in state.items() if not k.startswith("text.")}
    load_tower_state(model, state, str(weights))
    model.weights_file = Path(weights)
    return model.eval()
