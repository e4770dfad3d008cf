"""Synthetic labelled shapes from open3d primitives: the offline stand-in for a real 3D dataset.

Every item is generated from ``(seed, index)`` alone (random scale, aspect, rotation and noise), so a
dataset of any size costs no disk and is identical on every machine and in every worker.
"""
from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np

from .meta import templates

PRIMITIVES = ("box", "sphere", "cylinder", "cone", "torus", "tetrahedron")
_POOL = 20_000


def _mesh(name: str):
    import open3d as o3d

    make = o3d.geometry.TriangleMesh
    return {
        "box": lambda: make.create_box(1.0, 1.0, 1.0),
        "sphere": lambda: make.create_sphere(0.5, resolution=20),
        "cylinder": lambda: make.create_cylinder(0.35, 1.0, resolution=24),
        "cone": lambda: make.create_cone(0.45, 1.0, resolution=24),
        "torus": lambda: make.create_torus(0.5, 0.15, radial_resolution=24, tubular_resolution=12),
        "tetrahedron": lambda: make.create_tetrahedron(0.6),
    }[name]()


def _rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


@cache
def _surface(name: str) -> np.ndarray:
    """A dense, fixed set of uniform surface samples per primitive; items draw from it (fast)."""
    import open3d as o3d

    o3d.utility.random.seed(0)
    pts = np.asarray(_mesh(name).sample_points_uniformly(number_of_points=_POOL).points)
    return pts - pts.mean(axis=0)


def make_shape(name: str, rng: np.random.Generator, num_points: int = 2048) -> np.ndarray:
    """``(num_points, 3)`` float32 samples of a randomly scaled, stretched, rotated and noisy primitive."""
    pts = _surface(name)[rng.choice(_POOL, num_points, replace=False)]
    pts = pts * rng.uniform(0.7, 1.3, size=3) * rng.uniform(0.5, 2.0)
    pts = pts @ _rotation(rng).T
    pts = pts + rng.normal(scale=0.01 * np.abs(pts).max(), size=pts.shape)
    return pts.astype(np.float32)


class SyntheticShapes:
    """``ds[i] -> (points, label, name)`` and a caption (a ULIP template with the class name) per item."""

    def __init__(self, size: int, seed: int = 0, classes: tuple[str, ...] = PRIMITIVES, num_points: int = 2048,
                 caption_templates: list[str] | None = None) -> None:
        self.size = size
        self.seed = seed
        self.classes = list(classes)
        self.num_points = num_points
        self._templates = list(caption_templates) if caption_templates else templates()

    def __len__(self) -> int:
        return self.size

    def label(self, i: int) -> int:
        return i % len(self.classes)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int, str]:
        if not 0 <= i < self.size:
            raise IndexError(i)
        rng = np.random.default_rng([self.seed, i])
        label = self.label(i)
        return make_shape(self.classes[label], rng, self.num_points), label, f"{self.classes[label]}_{i:05d}"

    def caption(self, i: int, epoch: int = 0) -> str:
        rng = np.random.default_rng([self.seed, epoch, i, 1])
        return self._templates[int(rng.integers(len(self._templates)))].format(self.classes[self.label(i)])


def write_folder(root: Path, per_class: int, seed: int, classes: tuple[str, ...] = PRIMITIVES) -> Path:
    """Class sub-folders of ``.npy`` clouds (what ``vitlens eval <folder>`` reads)."""
    ds = SyntheticShapes(per_class * len(classes), seed=seed, classes=classes)
    for i in range(len(ds)):
        pts, label, name = ds[i]
        folder = Path(root) / ds.classes[label]
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / f"{name}.npy", pts)
    return Path(root)


class SyntheticTriplets:
    """Training view of :class:`SyntheticShapes`: a random caption per item and epoch, no images."""

    def __init__(self, size: int, seed: int = 0, classes: tuple[str, ...] = PRIMITIVES, num_points: int = 2048,
                 caption_templates: list[str] | None = None) -> None:
        self.shapes = SyntheticShapes(size, seed, classes, num_points, caption_templates)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.shapes)

    def __getitem__(self, i: int):
        from .triplets import Triplet

        pts, _, name = self.shapes[i]
        return Triplet(pts, self.shapes.caption(i, self.epoch), None, None, None, name)
