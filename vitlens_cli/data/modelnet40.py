"""ModelNet40, ULIP protocol: the 2,468 test shapes, FPS to 8192 points, normalised, xyz, y-up.

Two sources give the same benchmark: the official ``modelnet40_normal_resampled`` tree (10,000-point
clouds, y-up) or the original ``ModelNet40`` meshes (``<class>/test/*.off``, z-up), which are
surface-sampled to 10,000 points and turned y-up first.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import PointFileError, VitlensError
from ..points import convert_up_axis, normalize, read_points, resample
from .cache import CacheIndex, Sample, SkipItem, build_cache
from .inputs import file_problem, is_missing
from .meta import classnames

PROTOCOL = ("ULIP ModelNet40: test split (2,468 shapes), FPS from index 0 to 8192 points, centred, "
            "max radius 1, xyz, y-up")
NUM_POINTS = 8192
MESH_POINTS = 10_000


def _class_of(shape_id: str) -> str:
    return shape_id.rsplit("_", 1)[0]


def find_source(src: Path) -> tuple[str, Path]:
    """``("resampled", root)`` or ``("mesh", root)`` for a folder holding either official tree."""
    for names in sorted(src.rglob("modelnet40_shape_names.txt")):
        return "resampled", names.parent
    tests = sorted(p for p in src.rglob("test") if p.is_dir() and any(p.glob("*.off")))
    if tests:
        return "mesh", tests[0].parent.parent
    raise VitlensError(f"{src}: neither a modelnet40_normal_resampled tree (modelnet40_shape_names.txt) "
                       "nor a ModelNet40 mesh tree (<class>/test/*.off)")


def split_items(kind: str, root: Path) -> list[tuple[str, Path]]:
    """``(class name as prompted, file)`` for every test shape, in a fixed order."""
    if kind == "resampled":
        listing = root / "modelnet40_test.txt"
        if not listing.is_file():
            raise VitlensError(f"{root}: modelnet40_test.txt (the test split list) is missing")
        ids = [ln.strip() for ln in listing.read_text().splitlines() if ln.strip()]
        items = [(_class_of(i), root / _class_of(i) / f"{i}.txt") for i in ids]
    else:
        items = [(p.parent.parent.name, p) for p in sorted(root.glob("*/test/*.off"))]
    missing = [str(p) for _, p in items if is_missing(p)]
    if missing:
        raise VitlensError(f"{root}: {len(missing)} test shapes are missing (first: {missing[0]})")
    return [(cls.replace("_", " "), path) for cls, path in items]


def load_shape(kind: str, path: Path, seed: int = 0) -> np.ndarray:
    if kind == "resampled":
        cloud = read_points(path)
    else:
        # ModelNet meshes are z-up in their own units; the resampled release is y-up (x, z, y).
        cloud = convert_up_axis(read_points(path, mesh_points=MESH_POINTS, seed=seed), "z", "y")
    return normalize(resample(cloud, NUM_POINTS, "fps")).xyz


def prepare(src: Path, dest: Path, *, on_item=None, source_key: str = "") -> CacheIndex:
    kind, root = find_source(src)
    items = split_items(kind, root)
    names_list = classnames("modelnet40")
    lookup = {c: i for i, c in enumerate(names_list)}
    unknown = sorted({c for c, _ in items} - set(lookup))
    if unknown:
        raise VitlensError(f"{root}: classes not in ModelNet40: {', '.join(unknown)}")
    index = CacheIndex(benchmark="modelnet40", variant=None, classes=names_list, num_points=NUM_POINTS,
                       channels=3, up_axis="y", protocol=PROTOCOL + f" (from the {kind} release)", source=str(root),
                       source_key=source_key)
    names = [str(p.relative_to(root)) for _, p in items]

    def make(i: int) -> Sample:
        problem = file_problem(items[i][1])  # a FIFO would block the reader; an unreadable file is one item
        if problem is not None:
            raise SkipItem(problem)
        try:
            return Sample(load_shape(kind, items[i][1]), lookup[items[i][0]], names[i])
        except PointFileError as exc:
            raise SkipItem(exc.reason) from exc

    return build_cache(dest, index, names, make, on_item=on_item)
