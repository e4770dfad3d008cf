"""Depth maps: file → disparity → the official depth eval processor.

The official pipeline starts at precomputed ``*_disparity.pt`` files. Depth PNGs (and EXR / ``.npy``
depth in metres) are turned into disparity by the ImageBind/Omnivore rule that ViT-Lens points to:
``disparity = baseline × focal / clip(depth, 0.01, 50)``, with the sensor's baseline (metres) and
focal length (pixels) as contract options. Then, as ``RGBD_Processor_Eval``: DepthNorm (clamp to
[0.01, 75], divide by 75), bicubic resize of the shorter side to 224 (no antialiasing, not clamped),
centre crop 224, ``(x - 0.0418) / 0.0295``.

**SUN RGB-D PNGs.** Their 16-bit samples are millimetres rotated left by 3 bits (the SUN RGB-D
toolbox reads ``(v >> 3) | (v << 13)``), so ``raw / 1000`` is about 8× the metric depth. The released
models were trained on ``raw / 1000`` as is (ViT-Lens issue #12, whose author reproduced the paper's
NYU numbers that way), so that is the default: ``sunrgbd_bit_rotation=False`` feeds a checkpoint
what it saw. Set it to True only for a model trained on true metric depth.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from ._imaging import center_crop, normalize_channels, resize_short_side
from ._files import load_arrays, silenced_native_output
from .base import Modality, ModalityError, ModalityFileError, first_line

#: Omnivore's stereo baselines (metres) of the SUN RGB-D sensors.
SENSOR_BASELINES = {"kv1": 0.075, "kv2": 0.075, "realsense": 0.095, "xtion": 0.095}
#: fx of the SUN RGB-D NYU (Kinect v1) ``intrinsics.txt``.
NYU_FOCAL_LENGTH = 518.857901


@dataclass(frozen=True)
class DepthMap:
    """A depth file's values: 16-bit PNG ``samples``, depth in ``metres`` or ready ``disparity``."""

    values: np.ndarray
    kind: Literal["samples", "metres", "disparity"]


@dataclass(frozen=True)
class DepthContract:
    """``vitlensL_depth.pt`` / the one-stop ``DepthProcessor`` on NYU (Kinect v1) frames."""

    baseline: float = SENSOR_BASELINES["kv1"]
    focal_length: float = NYU_FOCAL_LENGTH
    depth_scale: float = 1000.0          # PNG samples per metre
    sunrgbd_bit_rotation: bool = False
    min_depth: float = 0.01              # metres, before the disparity division
    max_depth: float = 50.0
    min_disparity: float = 0.01          # DepthNorm
    max_disparity: float = 75.0
    resize: int = 224
    crop: int = 224
    mean: float = 0.0418
    std: float = 0.0295

    @classmethod
    def for_sensor(cls, sensor: str, focal_length: float, **options: float) -> DepthContract:
        """The contract for a SUN RGB-D sensor (``kv1``, ``kv2``, ``realsense``, ``xtion``) and the frame's fx."""
        if sensor not in SENSOR_BASELINES:
            raise ModalityError(f"unknown depth sensor {sensor!r} (known: {', '.join(SENSOR_BASELINES)})")
        return cls(baseline=SENSOR_BASELINES[sensor], focal_length=focal_length, **options)


def to_metres(depth: DepthMap, contract: DepthContract) -> np.ndarray:
    """float32 depth in the units the disparity rule divides by."""
    if depth.kind == "metres":
        return np.asarray(depth.values, dtype=np.float32)
    if depth.kind != "samples":
        raise ModalityError(f"a {depth.kind} map has no depth in metres")
    raw = np.asarray(depth.values).astype(np.uint16)
    if contract.sunrgbd_bit_rotation:
        raw = (raw >> np.uint16(3)) | (raw << np.uint16(13))
    return raw.astype(np.float32) / np.float32(contract.depth_scale)


def to_disparity(depth: DepthMap, contract: DepthContract) -> np.ndarray:
    """``(H, W)`` float32 disparity (``baseline × focal / clip(depth, min, max)``, float32 arithmetic)."""
    if depth.kind == "disparity":
        return np.asarray(depth.values, dtype=np.float32)
    metres = np.clip(to_metres(depth, contract), np.float32(contract.min_depth), np.float32(contract.max_depth))
    # the product is formed in float64 and rounded once, as the reference rule writes it
    return np.float32(contract.baseline * contract.focal_length) / metres


def preprocess(depth: DepthMap, contract: DepthContract) -> torch.Tensor:
    """``(1, crop, crop)`` float32 normalised disparity."""
    disparity = torch.from_numpy(np.ascontiguousarray(to_disparity(depth, contract)))
    if disparity.ndim != 2:
        raise ModalityError(f"depth must be (H, W), got shape {tuple(disparity.shape)}")
    # DepthNorm: clamp(min) then clamp(max) is one clamp for finite values; the copy keeps the caller's array
    x = disparity.clamp(contract.min_disparity, contract.max_disparity).div_(contract.max_disparity)
    x = center_crop(resize_short_side(x[None], contract.resize), contract.crop)
    return normalize_channels(x, (contract.mean,), (contract.std,))


def read(path: Path) -> DepthMap:
    """16-bit PNG samples; EXR (channel ``Z``, else the only channel), ``.npy``/``.npz`` depth in
    metres; ``.pt`` disparity (the official format)."""
    suffix = path.suffix.lower()
    if suffix == ".png":
        return DepthMap(_read_png(path), "samples")
    if suffix == ".exr":
        return DepthMap(_read_exr(path), "metres")
    value = load_arrays(path, "depth", ("depth", "disparity"))
    kind = "disparity" if suffix == ".pt" else "metres"
    if isinstance(value, torch.Tensor):  # numpy has no bfloat16
        value = (value.float() if value.is_floating_point() else value).numpy()
    if value.ndim == 3 and value.shape[0] == 1:
        value = value[0]
    if value.ndim != 2 or min(value.shape) < 1:
        raise ModalityFileError(path, f"depth must be (H, W) or (1, H, W), got shape {value.shape}")
    if not np.isfinite(value).all():
        raise ModalityFileError(path, "depth holds NaN or infinite values")
    return DepthMap(value, kind)


def _read_png(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            mode = image.mode
            values = np.asarray(image)
    except UnidentifiedImageError:
        raise ModalityFileError(path, "not a PNG image (unrecognised format)") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ModalityFileError(path, f"cannot decode PNG ({first_line(exc)})") from exc
    if mode not in ("I;16", "I;16B", "I;16L", "I"):
        raise ModalityFileError(path, f"not a 16-bit depth PNG (image mode {mode}): depth PNGs hold one "
                                      f"16-bit channel")
    if values.dtype != np.uint16:
        if values.min() < 0 or values.max() > 65535:
            raise ModalityFileError(path, "depth samples outside the 16-bit range")
        values = values.astype(np.uint16)
    return values


_EXR_CHANNELS = ("Z", "depth", "Y", "R")


def _read_exr(path: Path) -> np.ndarray:
    """The depth channel of an OpenEXR file, through the optional ``OpenEXR`` bindings."""
    try:
        import OpenEXR
    except ImportError:
        raise ModalityFileError(path, "reading EXR needs the OpenEXR bindings: pip install openexr") from None
    try:
        with silenced_native_output(), OpenEXR.File(str(path)) as exr:
            channels = {name: np.array(channel.pixels) for name, channel in exr.channels().items()}
    except (RuntimeError, OSError, ValueError) as exc:
        raise ModalityFileError(path, f"cannot decode EXR ({first_line(exc)})") from exc
    planes = {name: values for name, values in channels.items() if values.ndim == 2}
    name = next((c for c in _EXR_CHANNELS if c in planes), None)
    if name is None and len(planes) == 1:
        name = next(iter(planes))
    if name is None:
        raise ModalityFileError(path, f"no depth channel among {', '.join(sorted(channels)) or 'none'} "
                                      f"(expected {', '.join(_EXR_CHANNELS)} or a single channel)")
    values = planes[name].astype(np.float32)
    if not np.isfinite(values).all():
        raise ModalityFileError(path, f"EXR channel {name} holds NaN or infinite values")
    return values


MODALITY = Modality(
    name="depth", lens="depth_patch", contract=DepthContract,
    extensions=(".exr",), ambiguous_extensions=(".png", ".npy", ".npz", ".pt"), reader=read,
    preprocessor=preprocess,
    description="depth maps (16-bit PNG, EXR/.npy/.npz depth in metres, disparity .pt) → disparity",
)
