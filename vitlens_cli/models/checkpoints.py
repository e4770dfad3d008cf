"""Checkpoint layouts: the four official ones and our own (safetensors + JSON config).

Official files are read with ``torch.load(weights_only=True)``: plain tensors and containers,
never arbitrary pickled objects. Keys are selected by prefix, converted (1×1 conv kernels become
Linear weights) and loaded strictly: anything missing or unexpected in the lens tower is an error
that lists the keys.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..errors import CheckpointError
from .config import ModelConfig
from .vitlens import ViTLens

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
_TEXT_ROOTS = ("transformer.", "token_embedding.", "positional_embedding", "ln_final.", "text_projection")


@dataclass
class OfficialWeights:
    layout: str
    point: dict[str, torch.Tensor]
    text: dict[str, torch.Tensor] = field(default_factory=dict)
    logit_scale: torch.Tensor | None = None
    lens_only: bool = False


def read_torch_checkpoint(path: str | Path) -> dict:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except Exception as exc:  # unpickling errors come in many types
        raise CheckpointError(f"{path}: not a loadable torch checkpoint ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''})") from exc
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict of tensors, got {type(obj).__name__}")
    return obj


def _strip(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def split_official(obj: dict, path: str | Path = "<checkpoint>") -> OfficialWeights:
    """Recognise the layout of an official ViT-Lens file and split it into its towers."""
    state = obj.get("state_dict", obj.get("model", obj))
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: no state_dict of tensors found")
    if any(k.startswith("module.") for k in state):
        state = _strip(state, "module.") | {k: v for k, v in state.items() if not k.startswith("module.")}
    keys = list(state)
    if any(k.startswith("vitlens.pc.") for k in keys):  # one-stop multimodal vitlensL.pt
        return OfficialWeights("vitlens", _strip(state, "vitlens.pc."), _strip(state, "vitlens.text."))
    if any(k.startswith("backbone.") for k in keys):  # OpenShape CLIPBindWrap
        scale = obj.get("logit_scale")
        if isinstance(scale, dict):
            scale = next(iter(scale.values()), None)
        return OfficialWeights("openshape", _strip(state, "backbone."), logit_scale=scale)
    visual = _strip(state, "visual.")
    if visual and not any(k.startswith(("transformer.", "class_embedding", "ln_post.")) for k in visual):
        # EVA lens for InstructBLIP: only tokenizer + Perceiver belong to the lens.
        lens = {k: v for k, v in visual.items() if k.startswith(("visual_adapter.", "perceiver."))}
        return OfficialWeights("eva_lens", lens, lens_only=True)
    text = {k: v for k, v in state.items() if k.startswith(_TEXT_ROOTS)}
    if visual or text:  # ULIP / open_clip TriCLIP training file (a text-only one too)
        return OfficialWeights("ulip", visual, text, state.get("logit_scale"))
    raise CheckpointError(f"{path}: unrecognised checkpoint layout (no 'visual.', 'backbone.' or 'vitlens.pc.' keys)")


def _convert_to(target: dict[str, torch.Tensor], source: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Reshape 1×1 conv kernels ``(out, in, 1[, 1])`` to the Linear ``(out, in)`` our modules use."""
    out = {}
    for k, v in source.items():
        want = target.get(k)
        if want is not None and v.shape != want.shape and v.numel() == want.numel() and v.dim() > want.dim():
            v = v.reshape(want.shape)
        out[k] = v
    return out


def _check_tied(module_cfg, state: dict[str, torch.Tensor]) -> None:
    """Tied Perceivers store every layer; layers ≥ 2 must equal layer 1 or the file is not tied."""
    p = module_cfg.perceiver
    if not p.weight_tie_layers or p.depth < 3:
        return
    for k, v in state.items():
        if k.startswith("perceiver.layers.") and not k.startswith(("perceiver.layers.0.", "perceiver.layers.1.")):
            rest = k.split(".", 3)[3]
            ref = state.get(f"perceiver.layers.1.{rest}")
            if ref is None or not torch.equal(ref, v):
                raise CheckpointError(f"config says the Perceiver is weight-tied but '{k}' differs from layer 1")


def load_tower_state(module: torch.nn.Module, state: dict[str, torch.Tensor], what: str,
                     lens_only: bool = False) -> None:
    target = module.state_dict()
    if lens_only:
        target = {k: v for k, v in target.items() if k.startswith(("visual_adapter.", "perceiver."))}
    state = _convert_to(target, state)
    missing = sorted(set(target) - set(state))
    unexpected = sorted(set(state) - set(target))
    bad_shape = sorted(k for k in set(state) & set(target) if state[k].shape != target[k].shape)
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} keys ({', '.join(missing[:5])}{', …' if len(missing) > 5 else ''})")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)} keys ({', '.join(unexpected[:5])}"
                        f"{', …' if len(unexpected) > 5 else ''})")
    if bad_shape:
        k = bad_shape[0]
        problems.append(f"{len(bad_shape)} shape mismatches (e.g. {k}: file {tuple(state[k].shape)} "
                        f"vs model {tuple(target[k].shape)})")
    if problems:
        raise CheckpointError(f"{what} does not match the model config: " + "; ".join(problems))
    module.load_state_dict(state, strict=not lens_only)


def load_official_into(model: ViTLens, weights: OfficialWeights, path: str | Path = "<checkpoint>") -> None:
    if weights.lens_only:
        raise CheckpointError(f"{path}: holds only a lens for InstructBLIP's EVA ViT (layout '{weights.layout}'); "
                              "it has no CLIP ViT blocks to embed with")
    if not weights.point:
        raise CheckpointError(f"{path}: holds no point-tower weights (layout '{weights.layout}'"
                              f"{', text tower only' if weights.text else ''}); pass a lens checkpoint")
    _check_tied(model.cfg.lens, weights.point)
    load_tower_state(model.point, weights.point, f"{path} (point tower, layout '{weights.layout}')")
    if model.text is not None and weights.text:
        load_tower_state(model.text, weights.text, f"{path} (text tower)")
    if weights.logit_scale is not None:
        with torch.no_grad():
            model.logit_scale.copy_(weights.logit_scale.reshape(()))


def load_text_tower(model: ViTLens, source: str | Path | OfficialWeights) -> ViTLens:
    """Fill ``model.text`` (strictly) from the text-tower keys of an official file.

    ``source`` is a path to a ULIP / TriCLIP training file (a text-only one too) or a one-stop
    ``vitlens*.pt``, or weights already split by :func:`split_official`. The point tower is left
    untouched, so this also serves files that hold only a text tower.
    """
    if model.text is None:
        raise CheckpointError(f"model '{model.cfg.card.name}' has no text tower to load into")
    if isinstance(source, OfficialWeights):
        weights, path = source, "<checkpoint>"
    else:
        path = source
        weights = split_official(read_torch_checkpoint(path), path)
    if not weights.text:
        raise CheckpointError(f"{path}: holds no text-tower keys (layout '{weights.layout}')")
    load_tower_state(model.text, weights.text, f"{path} (text tower, layout '{weights.layout}')")
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
        save_file(state, tmp_w, metadata={"format": "vitlens/1"})
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


def load_saved(directory_or_file: str | Path, config: ModelConfig | None = None) -> ViTLens:
    """Load our own format: a folder, or a ``.safetensors`` file with ``config.json`` beside it."""
    path = Path(directory_or_file)
    weights = path / WEIGHTS_NAME if path.is_dir() else path
    if config is None:
        cfg_path = weights.parent / CONFIG_NAME
        if not cfg_path.is_file():
            raise CheckpointError(f"{weights}: no {CONFIG_NAME} beside it; pass --config")
        try:
            config = ModelConfig.from_dict(json.loads(cfg_path.read_text()), name=weights.parent.name)
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{cfg_path}: invalid JSON ({exc})") from exc
    try:
        state = load_file(str(weights))
    except Exception as exc:
        raise CheckpointError(f"{weights}: not a readable safetensors file ({exc})") from exc
    model = ViTLens(config)
    if not any(k.startswith("point.") for k in state):
        raise CheckpointError(f"{weights}: no 'point.' weights; is this a vitlens save?")
    if model.text is None:  # a text tower saved alongside is not needed by a points-only config
        state = {k: v for k, v in state.items() if not k.startswith("text.")}
    load_tower_state(model, state, str(weights))
    return model.eval()
