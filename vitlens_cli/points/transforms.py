"""Normalisation, axis conventions and deterministic resampling."""
from __future__ import annotations

from typing import Literal

import numpy as np

from .cloud import PointCloud
from .sampling import farthest_point_sample

UpAxis = Literal["y", "z"]


def normalize(cloud: PointCloud) -> PointCloud:
    """Centre on the mean and scale so the farthest point is at radius 1 (ULIP and OpenShape rule)."""
    xyz = cloud.xyz.astype(np.float64)
    xyz = xyz - xyz.mean(axis=0)
    radius = float(np.sqrt((xyz**2).sum(axis=1)).max())
    if radius > 0:
        xyz = xyz / radius
    return cloud.with_xyz(xyz.astype(np.float32))


def convert_up_axis(cloud: PointCloud, source: UpAxis, target: UpAxis) -> PointCloud:
    """Swap y and z when the conventions differ.

    A swap, not a rotation: it is what OpenShape applies between its z-up data and y-up
    ModelNet/ULIP data, so checkpoints trained on either side see what they were trained on.
    """
    for axis in (source, target):
        if axis not in ("y", "z"):
            raise ValueError(f"up-axis must be 'y' or 'z', got {axis!r}")
    if source == target:
        return cloud
    order = [0, 2, 1]
    normals = None if cloud.normals is None else cloud.normals[:, order]
    return PointCloud(cloud.xyz[:, order], cloud.rgb, normals)


def resample(cloud: PointCloud, n: int, method: Literal["fps", "random"] = "fps", seed: int = 0) -> PointCloud:
    """Exactly ``n`` points, deterministically.

    More points than ``n``: farthest point sampling from index 0 (the ULIP protocol) or a seeded
    random subset. Fewer: every point is kept and seeded random repeats fill the rest.
    """
    count = len(cloud)
    if n <= 0:
        raise ValueError(f"point count must be positive, got {n}")
    if count == n:
        return cloud
    rng = np.random.default_rng(seed)
    if count > n:
        if method == "fps":
            idx = farthest_point_sample(cloud.xyz, n).numpy()
        elif method == "random":
            idx = np.sort(rng.choice(count, n, replace=False))
        else:
            raise ValueError(f"unknown sampling method {method!r}")
    else:
        idx = np.concatenate([np.arange(count), rng.integers(0, count, n - count)])
    return cloud.take(idx)
