"""The lens kinds a tower can be built with: hyper-parameters, builder and token geometry of each.

A modality names its lens by kind (``Modality.lens``); a tower config carries that kind and its
parameters; :func:`get_lens` turns them into the module. ``attr`` is where the module sits in the
tower, so that state-dict keys are the official ones (``visual_adapter.*``, or ``conv1.*`` for the
CLIP image stem of the tactile and image towers).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from .patch import ASTTokenizer, DepthTokenizer, ImagePatchEmbed, PatchEmbed1D
from .pnsa import PNSATokenizer
from .point_bert import PointBertTokenizer


@dataclass(frozen=True)
class PointBertParams:
    npoints: int
    num_group: int
    group_size: int
    encoder_dims: int
    trans_dim: int


@dataclass(frozen=True)
class PNSAParams:
    npoints: int
    in_channels: int
    num_group: int
    group_size: int
    radius: float
    encoder_dims: int
    trans_dim: int


@dataclass(frozen=True)
class DepthPatchParams:
    image_size: int
    patch_size: int


@dataclass(frozen=True)
class AudioASTParams:
    mel_bins: int
    target_length: int
    patch_size: int
    fstride: int
    tstride: int


@dataclass(frozen=True)
class ImagePatchParams:
    image_size: int
    patch_size: int
    in_channels: int = 3


@dataclass(frozen=True)
class EEGPatchParams:
    channels: int
    time_len: int
    window_size: int
    stride: int


@dataclass(frozen=True)
class LensKind:
    name: str
    params: type
    attr: str                                   # attribute (and key prefix) in the tower
    build: Callable[[Any, int], nn.Module]      # (params, ViT width) → module
    num_tokens: Callable[[Any], int]            # rows the lens emits
    token_dim: Callable[[Any, int], int]        # their width, given the ViT width
    input_rank: int                             # dims of one batch, e.g. (B, N, C) = 3


def _grid(image_size: int, patch_size: int) -> int:
    return (image_size // patch_size) ** 2


def _width(_: Any, width: int) -> int:
    return width


_KINDS = [
    LensKind("point_bert", PointBertParams, "visual_adapter",
             lambda p, w: PointBertTokenizer(p.num_group, p.group_size, p.encoder_dims, p.trans_dim),
             lambda p: p.num_group, lambda p, w: p.trans_dim, 3),
    LensKind("pnsa", PNSAParams, "visual_adapter",
             lambda p, w: PNSATokenizer(p.in_channels, p.num_group, p.group_size, float(p.radius), p.encoder_dims,
                                        p.trans_dim),
             lambda p: p.num_group, lambda p, w: p.trans_dim, 3),
    LensKind("depth_patch", DepthPatchParams, "visual_adapter",
             lambda p, w: DepthTokenizer(p.image_size, p.patch_size, w),
             lambda p: _grid(p.image_size, p.patch_size), _width, 4),
    LensKind("audio_ast", AudioASTParams, "visual_adapter",
             lambda p, w: ASTTokenizer(p.mel_bins, p.target_length, p.patch_size, p.fstride, p.tstride, w),
             lambda p: ((p.mel_bins - p.patch_size) // p.fstride + 1) * ((p.target_length - p.patch_size) // p.tstride + 1),
             _width, 3),
    LensKind("eeg_patch1d", EEGPatchParams, "visual_adapter",
             lambda p, w: PatchEmbed1D(p.channels, p.time_len, p.window_size, p.stride, w),
             lambda p: (p.time_len - p.window_size) // p.stride + 1, _width, 3),
    LensKind("tactile_vit", ImagePatchParams, "conv1",
             lambda p, w: ImagePatchEmbed(p.in_channels, p.patch_size, w),
             lambda p: _grid(p.image_size, p.patch_size), _width, 4),
    LensKind("image", ImagePatchParams, "conv1",
             lambda p, w: ImagePatchEmbed(p.in_channels, p.patch_size, w),
             lambda p: _grid(p.image_size, p.patch_size), _width, 4),
]
LENSES: dict[str, LensKind] = {k.name: k for k in _KINDS}


def get_lens(kind: str) -> LensKind:
    try:
        return LENSES[kind]
    except KeyError:
        raise KeyError(f"unknown lens kind {kind!r} (known: {', '.join(LENSES)})") from None


def register_lens(kind: LensKind) -> LensKind:
    """Add a lens kind (a new modality's plug-in); a name can be registered once."""
    if kind.name in LENSES:
        raise ValueError(f"lens kind {kind.name!r} is already registered")
    LENSES[kind.name] = kind
    return kind
