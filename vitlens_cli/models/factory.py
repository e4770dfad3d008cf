"""One factory for every model and lens: zoo names, released files and our own saves.

The zoo names the architecture and the card; the card names the file and its layout; the file
supplies the weights (and decides Perceiver weight tying). Nothing is chosen from a file name.
"""
from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..atomic import file_digest, write_text_atomic
from ..errors import CheckpointError, ConfigError
from ..user_cache import cache_dir
from .checkpoints import (CLIP_IMAGE, LENS_ROOTS, TEXT_ROOTS, OfficialWeights, load_official_into, load_saved, load_tower_state,
                          read_saved, read_torch_checkpoint, sniff_layout, split_official, state_of, tie_from_file)
from .config import POINT_MODALITY, ModelConfig
from .vitlens import Lens, ViTLens, tower_attr
from .zoo import get_spec, list_models, with_card

_SHA256 = re.compile(r"[0-9a-f]{64}")


def build_model(cfg: ModelConfig) -> ViTLens:
    """A model with fresh weights: seeded (reproducible across runs) when the spec has ``init_seed``."""
    if cfg.init_seed is None:
        return ViTLens(cfg)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.init_seed)
        return ViTLens(cfg)


def read_config(path: str | Path) -> ModelConfig:
    """A model ``config.json``; every problem is one :class:`ConfigError` naming the file and key."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(path, "no such config file") from None
    except IsADirectoryError:
        raise ConfigError(path, "is a folder, not a config file") from None
    except UnicodeDecodeError:
        raise ConfigError(path, "not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(path, f"invalid JSON ({exc})") from None
    except OSError as exc:
        raise ConfigError(path, f"cannot be read ({exc.strerror or exc})") from None
    try:
        return ModelConfig.from_dict(data, name=path.stem)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc.subject}" if exc.subject is not None else path, exc.reason) from None


def hub_sha256(path: str | Path) -> str | None:
    """The sha256 the Hub gave for a file in huggingface_hub's cache, without reading the file.

    The cache stores a large (LFS) file as ``blobs/<sha256>`` (the Hub's ETag for it) behind the snapshot's
    symlink; small git-stored files are named by their git hash instead, and give None.
    """
    blob = Path(os.path.realpath(path)).name
    return blob if _SHA256.fullmatch(blob) else None


@dataclass(frozen=True)
class CachedCheckpoint:
    path: Path
    sha256: str | None  # the Hub's, read from the cache layout (see hub_sha256)


def cached_checkpoint(cfg: ModelConfig, *, cache_dir: str | Path | None = None) -> CachedCheckpoint | None:
    """The released file when it is already in huggingface_hub's cache (nothing is fetched or hashed), else None."""
    from huggingface_hub import try_to_load_from_cache

    card = cfg.card
    if not (card.hf_repo and card.hf_filename):
        return None
    found = try_to_load_from_cache(card.hf_repo, card.hf_filename, cache_dir=cache_dir)
    return CachedCheckpoint(Path(found), hub_sha256(found)) if isinstance(found, str) else None


def download_checkpoint(cfg: ModelConfig, *, cache_dir: str | Path | None = None,
                        endpoint: str | None = None) -> Path:
    """The released file through huggingface_hub (its cache; ``HF_HUB_OFFLINE=1`` is honoured).

    The file is hashed against the sha256 the Hub recorded for it, once per version of the file on disk (see
    :func:`_verified`); a damaged cached copy is fetched once more, and a file that still differs is an error.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    card = cfg.card
    if not (card.hf_repo and card.hf_filename):
        raise ConfigError(card.name, "has no download location")
    where = f"{card.hf_repo}/{card.hf_filename}"
    try:
        path = Path(hf_hub_download(card.hf_repo, card.hf_filename, cache_dir=cache_dir, endpoint=endpoint))
    except LocalEntryNotFoundError as exc:
        raise CheckpointError(where, "not in the Hugging Face cache and it cannot be downloaded (offline, or no "
                                     "network); download it elsewhere and pass --checkpoint FILE") from exc
    except Exception as exc:
        raise CheckpointError(where, f"download failed ({_first_line(exc)})") from exc
    if _verified(path):
        return path
    damaged = f"the cached file {os.path.realpath(path)} is damaged (its sha256 is not the Hub's {hub_sha256(path)})"
    try:
        path = Path(hf_hub_download(card.hf_repo, card.hf_filename, cache_dir=cache_dir, endpoint=endpoint,
                                    force_download=True))
    except Exception as exc:
        raise CheckpointError(where, f"{damaged} and cannot be fetched again ({_first_line(exc)})") from exc
    if not _verified(path):
        raise CheckpointError(where, f"{damaged}, and so is a fresh download")
    return path


def _first_line(exc: Exception) -> str:
    first = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {first[:200]}"


# A file modified this recently may change again within the filesystem's timestamp granularity without its
# mtime moving: it is hashed, but its verification is not recorded.
_SETTLED_NS = 2_000_000_000


def _verified_record(blob: Path, expected: str) -> tuple[Path, dict]:
    """Where the verification of ``blob`` is recorded, and what identifies this version of the file."""
    st = os.stat(blob)
    return cache_dir("verified") / f"{expected}.json", {
        "path": str(blob), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns,
        "inode": st.st_ino, "device": st.st_dev}


def _verified(path: Path) -> bool:
    """Whether ``path`` hashes to the Hub's sha256 (a file without one passes).

    A checkpoint is GBs: a match is recorded under ``$VITLENS_CACHE/verified/`` with the file's path, size,
    mtime, ctime and inode, and a file that still has all of them is not hashed again."""
    expected = hub_sha256(path)
    if expected is None:
        return True
    blob = Path(os.path.realpath(path))
    record, identity = _verified_record(blob, expected)
    try:
        if json.loads(record.read_text(encoding="utf-8")) == identity:
            return True
    except (OSError, ValueError):
        pass
    if file_digest(blob)[0] != expected:
        return False
    if time.time_ns() - identity["mtime_ns"] > _SETTLED_NS:
        try:
            record.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(record, json.dumps(identity) + "\n")
        except OSError:
            pass  # a read-only cache only costs the next load a hash
    return True


def _load_from_clip(model: ViTLens, text: bool, image: bool) -> None:
    """Fill the text and/or image tower from the open_clip pretrained tag named on the model card."""
    import open_clip

    card = model.cfg.card
    clip = open_clip.create_model(card.clip_model, pretrained=card.clip_pretrained)
    state = clip.state_dict()
    if text:
        model.text.load_state_dict({k: v for k, v in state.items() if k.startswith(TEXT_ROOTS)}, strict=True)
    if image:
        load_tower_state(model.towers["image"], {k[len(CLIP_IMAGE):]: v for k, v in state.items()
                                                  if k.startswith(CLIP_IMAGE)}, f"{card.clip_model} image tower")


def load_official(path: str | Path, cfg: ModelConfig, text_from_clip: bool = True) -> ViTLens:
    """An official file read in the layout its card names, into the architecture of ``cfg``."""
    weights = split_official(read_torch_checkpoint(path), cfg, path)
    cfg = tie_from_file(cfg, weights)
    model = ViTLens(cfg)
    load_official_into(model, weights, path)
    need_image = "image" in cfg.modalities and "image" not in weights.towers
    need_text = model.text is not None and not weights.text and text_from_clip
    if need_image and not cfg.card.clip_pretrained:
        raise CheckpointError(path, "holds no image tower and the model card names no CLIP weights to take it from")
    if (need_text or need_image) and cfg.card.clip_pretrained:
        _load_from_clip(model, need_text, need_image)
    model.weights_file = Path(path)  # with the card, it names the open_clip weights taken too
    return model.eval()


def _resolve_config(config: str | Path | ModelConfig | None) -> ModelConfig | None:
    return read_config(config) if isinstance(config, (str, os.PathLike)) else config


def load_model(name_or_path: str | Path | None = None, *, checkpoint: str | Path | None = None,
               config: str | Path | ModelConfig | None = None, device: str | torch.device = "cpu") -> ViTLens:
    """Load a model for inference (eval mode, on ``device``).

    ``name_or_path`` is a zoo name (see :func:`list_models`), or a folder / ``.safetensors`` in our
    format. ``checkpoint`` is a file to read the weights from: with a zoo name, a released file
    kept elsewhere; otherwise ``config`` (a JSON path or :class:`ModelConfig`) must describe it.
    """
    cfg = _resolve_config(config)
    name = str(name_or_path) if name_or_path is not None else None
    if name is not None and name in list_models() and not _on_disk(Path(name)):
        spec = cfg or get_spec(name)
        if checkpoint is None:
            model = build_model(spec) if spec.card.hf_filename is None else load_official(download_checkpoint(spec),
                                                                                           spec)
            return model.eval().to(device)
        return _load_path(Path(checkpoint), with_card(spec, source=str(checkpoint))).to(device)
    target = checkpoint if checkpoint is not None else name_or_path
    if target is None:
        raise ConfigError("model", "name a model or pass a checkpoint")
    path = Path(target)
    if not path.exists():
        raise ConfigError(f"'{target}' is neither a known model ({', '.join(list_models())}) nor an existing file")
    return _load_path(path, cfg).to(device)


def _on_disk(path: Path) -> bool:
    """Whether a zoo name is shadowed by a file of that name. A relative name that cannot even be looked up
    (the working folder is not searchable, e.g. after dropping privileges) is no file: the zoo name wins."""
    try:
        return path.exists()
    except PermissionError:
        return False


def _load_path(path: Path, cfg: ModelConfig | None) -> ViTLens:
    if path.is_dir() or path.suffix == ".safetensors":
        return load_saved(path, cfg)
    if cfg is None:
        try:  # only to say what the file looks like; an unreadable one is reported the same way
            looks = sniff_layout(state_of(read_torch_checkpoint(path), path))
        except CheckpointError:
            looks = None
        raise ConfigError(path, "an official checkpoint needs its model: pass the zoo name it was released as "
                                f"(--model) or its --config{f' (the file looks like layout {looks!r})' if looks else ''}")
    return load_official(path, cfg)


def load_lens(source: str | Path, config: str | Path | ModelConfig | None = None,
              modality: str = POINT_MODALITY) -> tuple[Lens, ModelConfig]:
    """A modality's lens proper (tokenizer + Perceiver, no ViT) in eval mode, and its model config.

    ``source`` is a zoo name (its file is downloaded through the Hugging Face cache), an official
    ``.pt`` (read in the layout of ``config``'s card), or a vitlens save. Loading is strict: every
    lens key missing or extra is listed.
    """
    cfg = _resolve_config(config)
    text = str(source)
    path = Path(text)
    if text in list_models() and not _on_disk(path):
        cfg = cfg or get_spec(text)
        if cfg.card.hf_filename is None:
            raise ConfigError(text, "has no released weights to take a lens from")
        path = download_checkpoint(cfg)
    if path.is_dir() or path.suffix == ".safetensors":
        state, cfg, weights_path = read_saved(path, cfg)
        prefix = f"{tower_attr(modality)}."
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        what = str(weights_path)
    elif path.is_file():
        if cfg is None:
            raise ConfigError(path, "an official checkpoint needs its model config (a zoo name or --config)")
        weights: OfficialWeights = split_official(read_torch_checkpoint(path), cfg, path)
        cfg = tie_from_file(cfg, weights)
        state = weights.towers.get(modality, {})
        what = f"{path} (lens, layout '{weights.layout}')"
    else:
        raise CheckpointError(source, "not a zoo name, a checkpoint file or a saved model folder")
    state = {k: v for k, v in state.items() if k.startswith(LENS_ROOTS)}
    if not state:
        raise CheckpointError(what, "holds no lens keys (visual_adapter.* / perceiver.*)")
    lens = Lens(cfg.tower(modality))
    load_tower_state(lens, state, what)
    return lens.eval(), cfg
