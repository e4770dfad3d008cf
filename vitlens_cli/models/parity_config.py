"""Read the ``config.json`` of an official-parity fixture case as a model config.

Those files document far more than a model needs (provenance, inputs, tolerances), so fields are
picked by name here instead of read strictly; the tower geometry they state is validated as usual.
"""
from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from .config import (LensConfig, ModelCard, ModelConfig, PerceiverConfig, Preprocess, TextConfig, TowerConfig,
                     VisionConfig)

# The official ``--visual_modality_type`` / one-stop tower names → our modality names.
_MODALITY = {"3dpc": "3d", "pc": "3d", "depth": "depth", "audio": "audio", "tactile": "tactile", "eeg": "eeg",
             "image": "image"}
_PERCEIVER_KEYS = ("input_chan", "depth", "num_latents", "latent_dim", "latent_heads", "latent_dim_head",
                   "cross_heads", "cross_dim_head", "self_per_cross_attn", "weight_tie_layers", "ff_mult")


def _get(data: dict[str, Any], key: str, where: str) -> Any:
    try:
        return data[key]
    except (KeyError, TypeError):
        raise ConfigError(f"{where}.{key}", "missing") from None


def _vit(v: dict[str, Any], where: str) -> VisionConfig:
    heads = v["heads"] if "heads" in v else _get(v, "width", where) // _get(v, "head_width", where)
    return VisionConfig(width=_get(v, "width", where), layers=_get(v, "layers", where), heads=heads,
                        embed_dim=_get(v, "embed_dim", where), mlp_ratio=v.get("mlp_ratio", 4.0),
                        skip_first_n_layers=v.get("skip_first_n_layers", 0), quick_gelu=v.get("quick_gelu", False))


def _perceiver(p: dict[str, Any] | None, where: str) -> PerceiverConfig | None:
    if not p or p.get("as_identity"):
        return None
    required, optional = _PERCEIVER_KEYS[:9], _PERCEIVER_KEYS[9:]
    return PerceiverConfig(**{k: _get(p, k, where) for k in required}, **{k: p[k] for k in optional if k in p})


def _layout(data: dict[str, Any]) -> str | None:
    text = str((data.get("checkpoint") or {}).get("layout") or "")
    return "vitlens" if text.startswith("vitlens") else (text or None)


def _point_lens(d: dict[str, Any], where: str) -> LensConfig:
    return LensConfig(tokenizer=_get(d, "tokenizer", where) if isinstance(d.get("tokenizer"), str)
                      else {"pointbert_lens": "pointbert", "pnsa_lens": "pnsa"}.get(d.get("kind"), "pointbert"),
                      npoints=_get(d, "npoints", where), in_channels=_get(d, "in_channels", where),
                      num_group=_get(d, "num_group", where), group_size=_get(d, "group_size", where),
                      encoder_dims=_get(d, "encoder_dims", where), trans_dim=_get(d, "trans_dim", where),
                      radius=d.get("radius"), perceiver=_perceiver(_get(d, "perceiver", where), f"{where}.perceiver"),
                      vit=_vit(_get(d, "vit", where), f"{where}.vit"))


def _side(value: Any) -> int:
    return int(value[0] if isinstance(value, (list, tuple)) else value)


def _modal_tower(modality: str, d: dict[str, Any], where: str) -> TowerConfig:
    vit = _vit(_get(d, "vit", where), f"{where}.vit")
    perceiver = _perceiver(d.get("perceiver"), f"{where}.perceiver")
    tok = d.get("tokenizer") or {}
    if modality in ("tactile", "image"):
        pe = _get(d, "patch_embedding", where)
        params = {"image_size": _side(pe["image_size"]), "patch_size": _side(pe["patch_size"]),
                  "in_channels": pe.get("in_channels", 3)}
        return TowerConfig("tactile_vit" if modality == "tactile" else "image", params, vit, None)
    if modality == "depth":
        grid = _side(_get(tok, "grid", f"{where}.tokenizer"))
        patch = _side(_get(tok, "patch_size", f"{where}.tokenizer"))
        return TowerConfig("depth_patch", {"image_size": grid * patch, "patch_size": patch}, vit, perceiver)
    if modality == "audio":
        params = {"mel_bins": _get(tok, "input_fdim", where), "target_length": _get(tok, "input_tdim", where),
                  "patch_size": _side(_get(tok, "kernel", where)), "fstride": _get(tok, "stride_f_t", where)[0],
                  "tstride": _get(tok, "stride_f_t", where)[1]}
        return TowerConfig("audio_ast", params, vit, perceiver)
    if modality == "eeg":
        params = {"channels": _get(tok, "in_chans", where), "time_len": _get(tok, "time_len", where),
                  "window_size": _get(tok, "window_size", where), "stride": _get(tok, "stride", where)}
        return TowerConfig("eeg_patch1d", params, vit, perceiver)
    raise ConfigError(where, f"no tower for modality {modality!r}")


def _flag(data: dict[str, Any], name: str) -> str | None:
    flags = list((data.get("source") or {}).get("official_cli_flags") or [])
    return flags[flags.index(name) + 1] if name in flags and flags.index(name) + 1 < len(flags) else None


def _text(t: dict[str, Any]) -> TextConfig:
    return TextConfig(embed_dim=_get(t, "embed_dim", "text"), width=_get(t, "width", "text"),
                      heads=_get(t, "heads", "text"), layers=_get(t, "layers", "text"),
                      context_length=t.get("context_length", 77), vocab_size=t.get("vocab_size", 49408))


def from_parity_config(data: dict[str, Any], name: str) -> ModelConfig:
    case = str(data.get("case", name))
    card = ModelCard(name=case, source="config file", layout=_layout(data))
    if isinstance(data.get("towers"), dict):  # the one-stop case: every tower of the file
        towers = {}
        lens = pre = text = None
        contracts = {}
        for official, spec in data["towers"].items():
            if official == "text":
                text = _text(spec)
                # The one-stop TextProcessor cleans captions before the BPE (README §7.3).
                contracts["text"] = {"pre_caption": True, "max_words": 70}
                continue
            modality = _MODALITY.get(official)
            if modality is None:
                raise ConfigError(f"towers.{official}", "unknown modality")
            if modality == "3d":
                lens = _point_lens(spec, f"towers.{official}")
                pre = Preprocess(num_points=lens.npoints, channels=lens.in_channels)
            else:
                towers[modality] = _modal_tower(modality, spec, f"towers.{official}")
        return ModelConfig(lens, pre, card, text, towers=towers, contracts=contracts)
    if isinstance(data.get("tokenizer"), str):  # a 3D lens case
        lens = _point_lens(data, "config")
        pre = Preprocess(num_points=lens.npoints, channels=lens.in_channels,
                         up_axis="z" if lens.tokenizer == "pnsa" else "y")
        return ModelConfig(lens, pre, card)
    modality = _MODALITY.get(_flag(data, "--visual_modality_type") or "")
    if modality is None or modality == "3d":
        raise ConfigError("config", "not a vitlens config: expected a 'format' key, or an official-parity case "
                                    "with 'tokenizer', 'towers' or --visual_modality_type")
    return ModelConfig(None, None, card, towers={modality: _modal_tower(modality, data, "config")})
