"""Turn any point cloud into exactly what a checkpoint was trained on (its model card's contract)."""
from __future__ import annotations

import numpy as np

from ..points import PointCloud, convert_up_axis, normalize, resample
from .config import Preprocess


def prepare_points(cloud: PointCloud, pre: Preprocess, *, normalize_points: bool = True,
                   source_up_axis: str | None = None, seed: int = 0) -> np.ndarray:
    """``(num_points, channels)`` float32 ready for ``encode_points``.

    With ``normalize_points=False`` the points are fed exactly as read: no axis change, no
    centring, and no resampling when the cloud already has the model's point count.
    """
    if normalize_points and source_up_axis is not None:
        cloud = convert_up_axis(cloud, source_up_axis, pre.up_axis)
    cloud = resample(cloud, pre.num_points, pre.sampling, seed)
    if normalize_points and pre.normalize:
        cloud = normalize(cloud)
    return np.ascontiguousarray(cloud.features(pre.channels, pre.default_rgb), dtype=np.float32)
