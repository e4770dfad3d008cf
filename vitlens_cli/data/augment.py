"""Training augmentations of point clouds, as published (ULIP and OpenShape)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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
