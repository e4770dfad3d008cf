"""The one point-cloud type every reader returns and every model consumes."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PointCloud:
    """xyz ``(N, 3)`` float32, optional rgb ``(N, 3)`` in [0, 1] and normals ``(N, 3)``."""

    xyz: np.ndarray
    rgb: np.ndarray | None = None
    normals: np.ndarray | None = None

    def __post_init__(self) -> None:
        xyz = np.ascontiguousarray(self.xyz, dtype=np.float32)
        if xyz.ndim != 2 or xyz.shape[1] != 3:
            raise ValueError(f"xyz must have shape (N, 3), got {xyz.shape}")
        object.__setattr__(self, "xyz", xyz)
        for name in ("rgb", "normals"):
            arr = getattr(self, name)
            if arr is None:
                continue
            arr = np.ascontiguousarray(arr, dtype=np.float32)
            if arr.shape != xyz.shape:
                raise ValueError(f"{name} must have shape {xyz.shape}, got {arr.shape}")
            object.__setattr__(self, name, arr)

    def __len__(self) -> int:
        return int(self.xyz.shape[0])

    @property
    def has_rgb(self) -> bool:
        return self.rgb is not None

    def take(self, index: np.ndarray) -> PointCloud:
        """The sub-cloud at ``index`` with every attribute kept aligned."""
        return PointCloud(
            self.xyz[index],
            None if self.rgb is None else self.rgb[index],
            None if self.normals is None else self.normals[index],
        )

    def with_xyz(self, xyz: np.ndarray) -> PointCloud:
        return PointCloud(xyz, self.rgb, self.normals)

    def features(self, channels: int, default_rgb: float = 0.4) -> np.ndarray:
        """``(N, channels)``: xyz, or xyz+rgb where a missing colour becomes ``default_rgb`` grey.

        OpenShape-trained lenses saw constant 0.4 for uncoloured shapes, so that is the default.
        """
        if channels == 3:
            return self.xyz
        if channels == 6:
            rgb = self.rgb if self.rgb is not None else np.full_like(self.xyz, default_rgb)
            return np.concatenate([self.xyz, rgb], axis=1)
        raise ValueError(f"channels must be 3 or 6, got {channels}")
