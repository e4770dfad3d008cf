"""Training augmentations as published: point clouds (ULIP and OpenShape) and image-like views (the
ViT-Lens depth and tactile train processors, and pytorchvideo's RandAugment of an audio clip's video frame)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

import numpy as np

if TYPE_CHECKING:
    import torch

from ..errors import ConfigError


@dataclass
class Augment:
    dropout: float = 0.0                    # max share of points dropped (replaced by the first point)
    scale: tuple[float, float] = (1.0, 1.0)
    shift: float = 0.0
    rotation_sigma: float = 0.0             # small rotation perturbation (radians, per axis)
    rotation_clip: float = 0.0
    rotate_up: bool = False                 # full random rotation about the up-axis
    rgb_drop: float = 0.0                   # probability of replacing rgb with grey 0.4 (OpenShape)


_UP_AXES = ("y", "z")


def _rotation_xyz(angles: np.ndarray) -> np.ndarray:
    """ULIP's ``Rz @ Ry @ Rx`` for small perturbation angles (applied as ``xyz @ R``)."""
    cx, cy, cz = np.cos(angles)
    sx, sy, sz = np.sin(angles)
    rx = np.array([[1.0, 0.0, 0.0], [0.0, cx, -sx], [0.0, sx, cx]])
    ry = np.array([[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]])
    rz = np.array([[cz, -sz, 0.0], [sz, cz, 0.0], [0.0, 0.0, 1.0]])
    return rz @ ry @ rx


def _rotation_up(angle: float, up_axis: str) -> np.ndarray:
    """A rotation (applied as ``xyz @ R``) that leaves the ``up_axis`` coordinate unchanged."""
    c, s = np.cos(angle), np.sin(angle)
    if up_axis == "y":  # ULIP's rotate_point_cloud
        return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def augment_points(points: np.ndarray, cfg: Augment, up_axis: str, rng: np.random.Generator) -> np.ndarray:
    """One training augmentation of a ``(N, 3)`` xyz or ``(N, 6)`` xyz+rgb cloud, in ULIP's order.

    1. point dropout: ratio ~ U(0, ``cfg.dropout``); each point is dropped with that probability and
       replaced (all channels) by the first point, as ULIP's ``random_point_dropout`` does;
    2. one scale ~ U(``cfg.scale``) for the cloud;
    3. one shift ~ U(-``cfg.shift``, ``cfg.shift``) per axis;
    4. small rotation: angles ~ N(0, ``cfg.rotation_sigma``) clipped to ±``cfg.rotation_clip``
       (no clipping when the clip is 0) about x, y and z, composed ``Rz @ Ry @ Rx``;
    5. when ``cfg.rotate_up``, a full random rotation about ``up_axis`` (``"y"``: ULIP, ``"z"``: OpenShape);
    6. with probability ``cfg.rgb_drop`` the rgb columns become grey 0.4 (6-channel clouds only).

    Steps 2-5 touch xyz only; rgb is never rotated or scaled. A step that is off draws nothing from
    ``rng``, so the default :class:`Augment` returns an unchanged float32 copy. The input is never
    modified; the same ``rng`` state always gives the same result.
    """
    if up_axis not in _UP_AXES:
        raise ConfigError(f"up_axis must be one of {_UP_AXES}, got {up_axis!r}")
    pts = np.array(points, dtype=np.float32, copy=True)
    if pts.ndim != 2 or pts.shape[1] not in (3, 6):
        raise ValueError(f"points must have shape (N, 3) or (N, 6), got {pts.shape}")
    n = pts.shape[0]
    xyz = pts[:, :3].astype(np.float64)

    if cfg.dropout > 0 and n > 0:
        ratio = rng.random() * cfg.dropout
        drop = rng.random(n) < ratio
        if drop.any():
            pts[drop] = pts[0]
            xyz[drop] = xyz[0]
    lo, hi = cfg.scale
    if (lo, hi) != (1.0, 1.0):
        xyz *= rng.uniform(lo, hi)
    if cfg.shift > 0:
        xyz += rng.uniform(-cfg.shift, cfg.shift, 3)
    if cfg.rotation_sigma > 0:
        angles = cfg.rotation_sigma * rng.standard_normal(3)
        if cfg.rotation_clip > 0:
            angles = np.clip(angles, -cfg.rotation_clip, cfg.rotation_clip)
        xyz = xyz @ _rotation_xyz(angles)
    if cfg.rotate_up:
        xyz = xyz @ _rotation_up(rng.uniform(0.0, 2.0 * np.pi), up_axis)
    pts[:, :3] = xyz
    if cfg.rgb_drop > 0 and pts.shape[1] == 6 and rng.random() < cfg.rgb_drop:
        pts[:, 3:6] = 0.4
    return pts


@dataclass
class ViewAugment:
    """Training augmentations of an image-like view, on the un-normalised ``(C, H, W)`` tensor, in the
    official order: pytorchvideo's RandAugment of an audio clip's video frame (before anything else), the
    geometry (a random resized crop or a random short-side scale and crop, the flips, the rotation),
    torchvision's RandAugment (a paired image), colour jitter of the RGB channels, random erasing of all
    channels.

    The depth map and its RGB frame (``RGBD_Processor_Train``) share one draw of it; a tactile frame
    (``Tactile_Processor_Train``) and a paired image of tactile or audio (``Image_Processor_Train``,
    ``PVProcessorTrain``) each draw their own.
    """

    random_crop: bool = False               # RandomResizedCrop to the output size (else the eval geometry)
    crop_scale: tuple[float, float] = (0.08, 1.0)       # share of the area kept (torchvision's default)
    crop_ratio: tuple[float, float] = (0.75, 1.3333333333333333)  # aspect ratio w / h (torchvision's default)
    # RandomShortSideScale(min, max) then a random crop, instead of random_crop (pytorchvideo, for a 224 crop;
    # scaled with the output size)
    short_side: Optional[tuple[int, int]] = None
    hflip: float = 0.0                      # probability of a left-right mirror
    vflip: float = 0.0                      # probability of an up-down mirror
    rotation: float = 0.0                   # degrees: a rotation by U(0, rotation), nearest, corners filled with 0
    # torchvision RandAugment(num_ops, magnitude) of the 8-bit RGB image after the flips (a paired frame only)
    rand_augment: Optional[tuple[int, int]] = None
    # pytorchvideo RandAugment(magnitude, num_layers, prob) as [num_layers, magnitude, prob] of an audio clip's
    # video frame, first, on its 0-255 values (video_rand_augment)
    video_rand_augment: Optional[tuple[int, int, float]] = None
    color_jitter: float = 0.0               # ColorJitter(s, s, s, s) of the RGB channels (hue at most 0.5)
    erase: float = 0.0                      # RandomErasing(p): one box of 2-33 % of the area set to 0, all channels


def crop_box(height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float],
             rng: np.random.Generator) -> tuple[int, int, int, int]:
    """``(top, left, h, w)`` of torchvision's ``RandomResizedCrop.get_params``, drawn from ``rng``: ten tries
    of an area share ~ U(scale) and a log-uniform aspect ratio, then the centre crop of the clamped ratio."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(*log_ratio))
        w, h = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def resized_crop(x: torch.Tensor, box: tuple[int, int, int, int], size: int) -> torch.Tensor:
    """``(C, H, W)`` → ``(C, size, size)``: the ``(top, left, h, w)`` region resized bilinearly without
    antialiasing (torchvision's tensor path in the 0.12/0.13 releases the official code ran)."""
    from ..modalities._imaging import resize_bilinear

    top, left, h, w = box
    return resize_bilinear(x[:, top:top + h, left:left + w], (size, size))


def random_resized_crop(x: torch.Tensor, size: int, cfg: ViewAugment, rng: np.random.Generator) -> torch.Tensor:
    """``(C, H, W)`` → ``(C, size, size)``: a :func:`crop_box` region, :func:`resized_crop` to ``size``."""
    return resized_crop(x, crop_box(x.shape[-2], x.shape[-1], tuple(cfg.crop_scale), tuple(cfg.crop_ratio), rng),
                        size)


def short_side_crop(x: torch.Tensor, size: int, short_side: tuple[int, int], rng: np.random.Generator) -> torch.Tensor:
    """``PVProcessorTrain``'s ``RandomShortSideScale`` + ``RandomCropVideo``: the shorter side scaled
    bilinearly to an integer ~ U{min..max} (given for a 224 crop, scaled by ``size / 224``), the longer
    one to ``floor(long / short · that)``, then a ``size`` square at a uniform offset."""
    from ..modalities._imaging import resize_bilinear

    lo, hi = (int(round(v * size / 224)) for v in short_side)
    target = int(rng.integers(lo, hi + 1))
    height, width = x.shape[-2:]
    if width < height:
        new = (int(math.floor(height / width * target)), target)
    else:
        new = (target, int(math.floor(width / height * target)))
    x = resize_bilinear(x, new)
    top = int(rng.integers(0, new[0] - size + 1))
    left = int(rng.integers(0, new[1] - size + 1))
    return x[:, top:top + size, left:left + size]


def flip_rotate(x: torch.Tensor, cfg: ViewAugment, rng: np.random.Generator) -> torch.Tensor:
    """The flips (each drawn only when its probability is set) and the rotation, in the official order."""
    if cfg.hflip > 0 and rng.random() < cfg.hflip:
        x = x.flip(-1)
    if cfg.vflip > 0 and rng.random() < cfg.vflip:
        x = x.flip(-2)
    if cfg.rotation > 0:
        from torchvision.transforms.functional import InterpolationMode, rotate

        x = rotate(x, float(rng.uniform(0.0, cfg.rotation)), interpolation=InterpolationMode.NEAREST, fill=[0.0])
    return x


def rand_augment(rgb: torch.Tensor, num_ops: int, magnitude: int, rng: np.random.Generator) -> torch.Tensor:
    """torchvision's ``RandAugment(num_ops, magnitude, interpolation=BILINEAR)`` of a ``(3, H, W)`` float image
    in [0, 1], on the image rounded to 8 bits, as the official ``Image_Processor_Train`` applies it to the PIL
    image before ``ToTensor``. torchvision draws from torch's global generator; it runs here in a forked
    generator seeded from ``rng``, so the item's draws are its own and the caller's torch state is untouched."""
    import torch
    from torchvision.transforms import InterpolationMode, RandAugment

    img = (rgb.clamp(0, 1) * 255).round().to(torch.uint8)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(rng.integers(2**63)))
        img = RandAugment(num_ops, magnitude, interpolation=InterpolationMode.BILINEAR)(img)
    return img.to(torch.float32) / 255


# pytorchvideo 0.1.5's RandAugment, which PVProcessorTrain runs on an audio clip's frame. Each op's argument
# at a level in [0, 10]: (how it grows, base, span), read from its augmentations module: "signed" is
# base ± level/10 · span (the sign a coin flip), "down" base - level/10 · span, "bits" the same with the
# product truncated to an int; None takes no argument. The order is pytorchvideo's.
_VIDEO_OP_ARGS: dict[str, Optional[tuple[str, float, float]]] = {
    "AdjustBrightness": ("signed", 1.0, 0.9),
    "AdjustContrast": ("signed", 1.0, 0.9),
    "AdjustSaturation": ("signed", 1.0, 0.9),
    "AdjustSharpness": ("signed", 1.0, 0.9),
    "AutoContrast": None,
    "Equalize": None,
    "Invert": None,
    "Rotate": ("signed", 0.0, 30.0),
    "Posterize": ("bits", 4, 4),
    "Solarize": ("down", 1.0, 1.0),
    "ShearX": ("signed", 0.0, 0.3),
    "ShearY": ("signed", 0.0, 0.3),
    "TranslateX": ("signed", 0.0, 0.45),
    "TranslateY": ("signed", 0.0, 0.45),
}
VIDEO_OPS = tuple(_VIDEO_OP_ARGS)
VIDEO_MAX_LEVEL = 10
VIDEO_LEVEL_STD = 0.5                       # the gaussian sampling's default std (SAMPLING_RANDAUG_DEFAULT_HPARAS)
VIDEO_FILL = [0.5, 0.5, 0.5]                # the geometric ops' default fill, in the frame's own units


def video_level(magnitude: float, rng: np.random.Generator) -> float:
    """One op's level: ~ N(``magnitude``, 0.5) clipped to [0, 10], pytorchvideo's default gaussian sampling."""
    return min(float(VIDEO_MAX_LEVEL), max(0.0, float(rng.normal(magnitude, VIDEO_LEVEL_STD))))


def video_op_argument(name: str, level: float, negate: bool = False) -> float | int | None:
    """The argument pytorchvideo passes op ``name`` at ``level`` (``negate``: the coin of a signed op came up
    minus); None for AutoContrast, Equalize and Invert."""
    rule = _VIDEO_OP_ARGS[name]
    if rule is None:
        return None
    kind, base, span = rule
    step = level / VIDEO_MAX_LEVEL * span
    if kind == "signed":
        return base + (-step if negate else step)
    if kind == "bits":
        return int(base) - int(step)
    return base - step


def _as_uint8(frame: torch.Tensor) -> torch.Tensor:
    """pytorchvideo's ``(x * 255).to(torch.uint8)`` of a float frame: truncated and wrapped modulo 256
    (torch casts floats to uint8 through int64), so a 0-255 frame comes out scrambled, not clipped."""
    import torch

    return (frame * 255).to(torch.uint8)


def video_op(frame: torch.Tensor, name: str, arg: float | int | None = None) -> torch.Tensor:
    """One op of pytorchvideo's RandAugment on a ``(C, H, W)`` (or ``(T, C, H, W)``) frame, uint8 or float,
    as its augmentations module computes it with torchvision's tensor ops, whose float path takes [0, 1]:

    - AdjustBrightness/Contrast/Saturation/Sharpness(factor), AutoContrast, Invert, Solarize: torchvision's,
      on the tensor as it comes (a float tensor's bound is 1: they clip to [0, 1], Invert is ``1 - x``);
      Solarize of uint8 at the threshold ``int(arg · 255)``, of a float at ``arg``;
    - Equalize, Posterize(bits): of uint8 as they are; a float frame goes through :func:`_as_uint8` and
      comes back divided by 255; 8 bits or more is the identity. Posterize keeps the top ``bits`` bits by
      masking here: at 0 bits (level 10) torchvision's mask is ``-256``, which torch wraps to 0 for uint8;
      the mask 0 gives that black frame without leaning on the overflow;
    - Rotate(degrees, counter-clockwise) about the centre, ShearX/ShearY(factor) about the top-left
      corner (output ``(x, y)`` reads input ``(x + f·y, y)``, resp. ``(x, y + f·x)``, as PIL's shear),
      TranslateX/TranslateY(share of the width / height; the content moves by ``-share · size``): bilinear,
      fill 0.5 in the frame's units. pytorchvideo hands the private tensor ``affine`` its inverse matrix
      ``[1, f, f·H/2, 0, 1, 0]`` (and the like); torchvision's public ``affine`` builds it from a shear of
      ``atan(f)`` about ``(0, 0)`` or a translation of ``-f·W``, and gives bit-identical frames (checked on
      random sizes and factors, uint8 and float).
    """
    import torch
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    bilinear = InterpolationMode.BILINEAR
    if name == "AdjustBrightness":
        return TF.adjust_brightness(frame, arg)
    if name == "AdjustContrast":
        return TF.adjust_contrast(frame, arg)
    if name == "AdjustSaturation":
        return TF.adjust_saturation(frame, arg)
    if name == "AdjustSharpness":
        return TF.adjust_sharpness(frame, arg)
    if name == "AutoContrast":
        return TF.autocontrast(frame)
    if name == "Invert":
        return TF.invert(frame)
    if name == "Solarize":
        return TF.solarize(frame, int(arg * 255.0) if frame.dtype == torch.uint8 else arg)
    if name in ("Equalize", "Posterize"):
        if name == "Posterize" and arg >= 8:
            return frame
        eight_bit = frame if frame.dtype == torch.uint8 else _as_uint8(frame)
        out = TF.equalize(eight_bit) if name == "Equalize" else eight_bit & (256 - 2 ** (8 - int(arg)))
        return out if frame.dtype == torch.uint8 else (out / 255).to(frame.dtype)
    if name == "Rotate":
        return TF.rotate(frame, float(arg), interpolation=bilinear, fill=VIDEO_FILL)
    if name in ("ShearX", "ShearY"):
        angle = math.degrees(math.atan(arg))
        shear = [angle, 0.0] if name == "ShearX" else [0.0, angle]
        return TF.affine(frame, angle=0.0, translate=[0.0, 0.0], scale=1.0, shear=shear, interpolation=bilinear,
                         fill=VIDEO_FILL, center=[0, 0])
    if name in ("TranslateX", "TranslateY"):
        shift = [-arg * frame.shape[-1], 0.0] if name == "TranslateX" else [0.0, -arg * frame.shape[-2]]
        return TF.affine(frame, angle=0.0, translate=shift, scale=1.0, shear=[0.0, 0.0], interpolation=bilinear,
                         fill=VIDEO_FILL)
    raise ValueError(f"unknown pytorchvideo RandAugment op {name!r} (known: {', '.join(VIDEO_OPS)})")


def video_rand_augment(frame: torch.Tensor, num_layers: int, magnitude: float, prob: float,
                       rng: np.random.Generator) -> torch.Tensor:
    """pytorchvideo's ``RandAugment(magnitude, num_layers, prob)`` (gaussian sampling) of a frame, its draws
    from ``rng``: ``num_layers`` distinct ops of :data:`VIDEO_OPS` in a uniform random order; each acts with
    probability ``prob`` (else it draws nothing more), at a :func:`video_level`, a signed op then flipping
    its coin, through :func:`video_op`.

    ``PVProcessorTrain`` applies it to the decoded clip as float32 0-255 values (``decord_get_clip`` casts
    before ``Div255``), so the ops meet torchvision's [0, 1] float convention on a 0-255 frame; pass the
    frame that way to do what the release did: Rotate, Shear and Translate move it as meant (fill 0.5 of
    255, black), Invert and Solarize give ``1 - x``, the others clip or wrap it to [0, 1], a black frame
    after ``Div255``. A uint8 frame gets the 8-bit ops pytorchvideo meant.
    """
    for index in rng.choice(len(VIDEO_OPS), size=num_layers, replace=False):
        if rng.random() >= prob:
            continue
        name = VIDEO_OPS[int(index)]
        level = video_level(magnitude, rng)
        rule = _VIDEO_OP_ARGS[name]
        negate = rule is not None and rule[0] == "signed" and bool(rng.random() < 0.5)
        frame = video_op(frame, name, video_op_argument(name, level, negate))
    return frame


def color_jitter(rgb: torch.Tensor, strength: float, rng: np.random.Generator) -> torch.Tensor:
    """torchvision's ``ColorJitter(s, s, s, s)`` of a ``(3, H, W)`` float image in [0, 1], its draws from
    ``rng`` in ``get_params``' order: a random order of the four adjustments, brightness, contrast and
    saturation factors ~ U(max(0, 1 - s), 1 + s), a hue shift ~ U(-s, s)."""
    from torchvision.transforms import functional as TF

    order = rng.permutation(4)
    factors = [float(rng.uniform(max(0.0, 1.0 - strength), 1.0 + strength)) for _ in range(3)]
    hue = float(rng.uniform(-strength, strength))
    for fn in order:
        if fn == 0:
            rgb = TF.adjust_brightness(rgb, factors[0])
        elif fn == 1:
            rgb = TF.adjust_contrast(rgb, factors[1])
        elif fn == 2:
            rgb = TF.adjust_saturation(rgb, factors[2])
        else:
            rgb = TF.adjust_hue(rgb, hue)
    return rgb


ERASE_SCALE = (0.02, 0.33)                  # torchvision RandomErasing's defaults, as the official code uses it
ERASE_RATIO = (0.3, 3.3)


def erase_box(height: int, width: int, rng: np.random.Generator) -> tuple[int, int, int, int] | None:
    """``(top, left, h, w)`` of torchvision's ``RandomErasing.get_params`` drawn from ``rng``: ten tries of an
    area share ~ U(0.02, 0.33) and a log-uniform ratio h / w in [0.3, 3.3] that fits strictly inside;
    None when none fits (torchvision then leaves the image as it is)."""
    log_ratio = (math.log(ERASE_RATIO[0]), math.log(ERASE_RATIO[1]))
    for _ in range(10):
        area = height * width * rng.uniform(*ERASE_SCALE)
        aspect = math.exp(rng.uniform(*log_ratio))
        h, w = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
        if h < height and w < width:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    return None


def random_erase(x: torch.Tensor, p: float, rng: np.random.Generator) -> torch.Tensor:
    """``RandomErasing(p)`` with value 0: with probability ``p`` an :func:`erase_box` of every channel set to 0
    (on the un-normalised tensor, before the normalisation, as the official transform runs). ``p`` 0 draws
    nothing."""
    if p <= 0 or rng.random() >= p:
        return x
    box = erase_box(x.shape[-2], x.shape[-1], rng)
    if box is None:
        return x
    top, left, h, w = box
    x = x.clone()
    x[..., top:top + h, left:left + w] = 0.0
    return x
