"""ScanObjectNN test splits (official h5 files), labelled in the official, non-alphabetical order."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import VitlensError
from ..points import PointCloud, normalize
from .cache import CacheIndex, Sample, build_cache
from .inputs import file_problem
from .meta import classnames

# variant -> (folder, file) inside the official h5_files release
VARIANTS = {
    "obj_only": ("main_split_nobg", "test_objectdataset.h5"),
    "obj_bg": ("main_split", "test_objectdataset.h5"),
    "pb_t50_rs": ("main_split", "test_objectdataset_augmentedrot_scale75.h5"),
}
PROTOCOL = "ScanObjectNN {variant} test split ({file}): 2048 points as released, centred, max radius 1, xyz"


def find_h5(src: Path, variant: str) -> Path:
    if variant not in VARIANTS:
        raise VitlensError(f"unknown ScanObjectNN variant '{variant}' (known: {', '.join(VARIANTS)})")
    folder, name = VARIANTS[variant]
    if src.is_file():
        return src
    hits = [p for p in sorted(src.rglob(name)) if p.parent.name == folder]
    if not hits:
        raise VitlensError(f"{src}: no {folder}/{name} (the {variant} test split) found")
    return hits[0]


def read_h5(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import h5py

    problem = file_problem(path)  # h5py would block on a FIFO
    if problem is not None:
        raise VitlensError(f"{path}: {problem}")
    try:
        with h5py.File(path, "r") as fh:
            data, label = np.asarray(fh["data"], dtype=np.float32), np.asarray(fh["label"]).reshape(-1)
    except KeyError as exc:
        raise VitlensError(f"{path}: expected 'data' and 'label' datasets ({exc})") from exc
    except OSError as exc:
        raise VitlensError(f"{path}: not a readable h5 file ({exc})") from exc
    if data.ndim != 3 or data.shape[-1] < 3 or len(data) != len(label):
        raise VitlensError(f"{path}: 'data' {data.shape} and 'label' {label.shape} do not form a point set")
    if label.min() < 0 or label.max() >= len(classnames("scanobjectnn")):
        raise VitlensError(f"{path}: labels outside 0..14")
    return data[..., :3], label.astype(np.int64)


def prepare(src: Path, dest: Path, variant: str, *, on_item=None, source_key: str = "") -> CacheIndex:
    path = find_h5(src, variant)
    data, labels = read_h5(path)
    index = CacheIndex(benchmark="scanobjectnn", variant=variant, classes=classnames("scanobjectnn"),
                       num_points=data.shape[1], channels=3, up_axis="y",
                       protocol=PROTOCOL.format(variant=variant, file=path.name), source=str(path),
                       source_key=source_key)
    names = [f"{path.name}#{i}" for i in range(len(data))]
    return build_cache(dest, index, names,
                       lambda i: Sample(normalize(PointCloud(data[i])).xyz, int(labels[i]), names[i]),
                       on_item=on_item)
