"""ModelNet40, ULIP protocol: the 2,468 test shapes, FPS to 8192 points, normalised, xyz, y-up.

Three sources give the same benchmark: ULIP's processed file (``modelnet40_test_8192pts_fps.dat``, the
8192-point FPS clouds ULIP and ViT-Lens evaluate on, pickled), the official ``modelnet40_normal_resampled``
tree (10,000-point clouds, y-up), or the original ``ModelNet40`` meshes (``<class>/test/*.off``, z-up), which
are surface-sampled to 10,000 points and turned y-up first.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from ..errors import PointFileError, VitlensError
from ..points import PointCloud, convert_up_axis, normalize, read_points, resample
from .cache import CacheIndex, Sample, SkipItem, build_cache
from .inputs import file_problem, is_missing
from .meta import classnames
from .safe_npy import UnsafePickleError, safe_load

PROTOCOL = ("ULIP ModelNet40: test split (2,468 shapes), FPS from index 0 to 8192 points, centred, "
            "max radius 1, xyz, y-up")
NUM_POINTS = 8192
MESH_POINTS = 10_000


def _class_of(shape_id: str) -> str:
    return shape_id.rsplit("_", 1)[0]


PROCESSED = "modelnet40_test_8192pts_fps.dat"


def find_source(src: Path) -> tuple[str, Path]:
    """``("processed" | "resampled" | "mesh", root)`` for a folder holding one of the releases."""
    for names in sorted(src.rglob("modelnet40_shape_names.txt")):
        # ULIP's own FPS clouds win over re-sampling the tree: they are exactly what the paper's numbers saw.
        return ("processed" if (names.parent / PROCESSED).is_file() else "resampled"), names.parent
    tests = sorted(p for p in src.rglob("test") if p.is_dir() and any(p.glob("*.off")))
    if tests:
        return "mesh", tests[0].parent.parent
    raise VitlensError(f"{src}: neither a modelnet40_normal_resampled tree (modelnet40_shape_names.txt) "
                       "nor a ModelNet40 mesh tree (<class>/test/*.off)")


def split_items(kind: str, root: Path) -> list[tuple[str, Path]]:
    """``(class name as prompted, file)`` for every test shape, in a fixed order."""
    if kind in ("resampled", "processed"):
        listing = root / "modelnet40_test.txt"
        if not listing.is_file():
            raise VitlensError(f"{root}: modelnet40_test.txt (the test split list) is missing")
        ids = [ln.strip() for ln in listing.read_text().splitlines() if ln.strip()]
        items = [(_class_of(i), root / _class_of(i) / f"{i}.txt") for i in ids]
        if kind == "processed":  # the clouds are in the .dat, in this order
            return [(cls.replace("_", " "), path) for cls, path in items]
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


def read_processed(root: Path, count: int) -> list[np.ndarray]:
    """The ``count`` clouds of ULIP's pickled ``[points, labels]`` file, read by the restricted unpickler."""
    path = root / PROCESSED
    problem = file_problem(path)
    if problem is not None:
        raise VitlensError(f"{path}: {problem}")
    try:
        with open(path, "rb") as fh:
            data = safe_load(fh)
    except UnsafePickleError as exc:
        raise VitlensError(f"{path}: {exc}; only arrays and plain containers are loaded") from exc
    except (ValueError, OSError, EOFError, pickle.UnpicklingError) as exc:
        raise VitlensError(f"{path}: not ULIP's pickled [points, labels] ({exc})") from exc
    points = data[0] if isinstance(data, (list, tuple)) and len(data) == 2 else None
    if not isinstance(points, (list, tuple)) or len(points) != count:
        have = len(points) if isinstance(points, (list, tuple)) else "no"
        raise VitlensError(f"{path}: {have} clouds where modelnet40_test.txt lists {count}")
    return list(points)


def prepare(src: Path, dest: Path, *, on_item=None, source_key: str = "") -> CacheIndex:
    kind, root = find_source(src)
    items = split_items(kind, root)
    clouds = read_processed(root, len(items)) if kind == "processed" else None
    names_list = classnames("modelnet40")
    lookup = {c: i for i, c in enumerate(names_list)}
    unknown = sorted({c for c, _ in items} - set(lookup))
    if unknown:
        raise VitlensError(f"{root}: classes not in ModelNet40: {', '.join(unknown)}")
    protocol = PROTOCOL + f" (from the {kind} release)" if kind != "processed" else \
        PROTOCOL.replace("FPS from index 0", "ULIP's own FPS") + f" (from ULIP's {PROCESSED})"
    index = CacheIndex(benchmark="modelnet40", variant=None, classes=names_list, num_points=NUM_POINTS,
                       channels=3, up_axis="y", protocol=protocol, source=str(root),
                       source_key=source_key)
    names = [str(p.relative_to(root)) for _, p in items]

    def make(i: int) -> Sample:
        if clouds is not None:
            cloud = np.asarray(clouds[i], dtype=np.float32)
            if cloud.ndim != 2 or cloud.shape[1] < 3:
                raise SkipItem(f"cloud {i} of {PROCESSED} has shape {cloud.shape}, not (points, 3+)")
            return Sample(normalize(resample(PointCloud(cloud[:, :3]), NUM_POINTS, "fps")).xyz,
                          lookup[items[i][0]], names[i])
        problem = file_problem(items[i][1])  # a FIFO would block the reader; an unreadable file is one item
        if problem is not None:
            raise SkipItem(problem)
        try:
            return Sample(load_shape(kind, items[i][1]), lookup[items[i][0]], names[i])
        except PointFileError as exc:
            raise SkipItem(exc.reason) from exc

    return build_cache(dest, index, names, make, on_item=on_item)
