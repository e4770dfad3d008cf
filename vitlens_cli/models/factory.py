"""``load_model``: one entry point for zoo names, released files and our own saves."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ..errors import CheckpointError, ConfigError
from .checkpoints import load_official_into, load_saved, read_torch_checkpoint, split_official
from .config import ModelConfig
from .vitlens import ViTLens
from .zoo import get_spec, list_models, spec_for_filename, with_card


def build_model(cfg: ModelConfig) -> ViTLens:
    """A model with fresh weights: seeded (reproducible across runs) when the spec has ``init_seed``."""
    if cfg.init_seed is None:
        return ViTLens(cfg)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.init_seed)
        return ViTLens(cfg)


def read_config(path: str | Path) -> ModelConfig:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: invalid JSON ({exc})") from exc
    return ModelConfig.from_dict(data, name=path.stem)


def download_checkpoint(cfg: ModelConfig) -> Path:
    """The released file through huggingface_hub (its cache; ``HF_HUB_OFFLINE=1`` is honoured)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    card = cfg.card
    if not (card.hf_repo and card.hf_filename):
        raise ConfigError(f"model '{card.name}' has no download location")
    try:
        return Path(hf_hub_download(card.hf_repo, card.hf_filename))
    except LocalEntryNotFoundError as exc:
        raise CheckpointError(f"{card.hf_repo}/{card.hf_filename}: not in the Hugging Face cache and it cannot "
                              "be downloaded (offline, or no network); download it elsewhere and pass "
                              "--checkpoint FILE") from exc
    except Exception as exc:
        raise CheckpointError(f"{card.hf_repo}/{card.hf_filename}: download failed ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''})") from exc


def _load_clip_text(model: ViTLens) -> None:
    """Fill the text tower from the open_clip pretrained tag named on the model card."""
    import open_clip

    card = model.cfg.card
    clip = open_clip.create_model(card.clip_model, pretrained=card.clip_pretrained)
    state = {k: v for k, v in clip.state_dict().items()
             if k.startswith(("transformer.", "token_embedding.", "positional_embedding", "ln_final.",
                              "text_projection"))}
    model.text.load_state_dict(state, strict=True)


def load_official(path: str | Path, cfg: ModelConfig, text_from_clip: bool = True) -> ViTLens:
    weights = split_official(read_torch_checkpoint(path), path)
    model = ViTLens(cfg)
    load_official_into(model, weights, path)
    if model.text is not None and not weights.text and text_from_clip and cfg.card.clip_pretrained:
        _load_clip_text(model)
    return model.eval()


def load_model(name_or_path: str | Path | None = None, *, checkpoint: str | Path | None = None,
               config: str | Path | ModelConfig | None = None, device: str | torch.device = "cpu") -> ViTLens:
    """Load a model for inference (eval mode, on ``device``).

    ``name_or_path`` is a zoo name (see :func:`list_models`), a folder or ``.safetensors`` in our
    format, or a released ``.pt``. ``checkpoint`` is the same as passing a path. ``config`` (a JSON
    path or :class:`ModelConfig`) describes a file that carries no config of its own.
    """
    cfg = read_config(config) if isinstance(config, (str, Path)) else config
    target = checkpoint if checkpoint is not None else name_or_path
    if target is None:
        raise ConfigError("name a model or pass a checkpoint")
    target_str = str(target)
    if checkpoint is None and target_str in list_models():
        spec = cfg or get_spec(target_str)
        model = build_model(spec) if spec.card.source == "random init" else load_official(
            download_checkpoint(spec), spec)
        return model.eval().to(device)
    path = Path(target)
    if not path.exists():
        raise ConfigError(f"'{target}' is neither a known model ({', '.join(list_models())}) nor an existing file")
    if path.is_dir() or path.suffix == ".safetensors":
        return load_saved(path, cfg).to(device)
    if cfg is None:
        cfg = spec_for_filename(path.name)
        if cfg is None:
            raise ConfigError(f"{path}: not a released file name vitlens knows; pass --config with its lens config")
        cfg = with_card(cfg, source=str(path))
    return load_official(path, cfg).to(device)
