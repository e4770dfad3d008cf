"""ShapeNet-55 as ULIP ships it: ``shapenet_pc/<synset>-<model>.npy`` (8192 xyz) + ``train.txt`` / ``test.txt``."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import VitlensError
from ..points import PointCloud, normalize, resample
from .cache import CacheIndex, Sample, SkipItem, build_cache
from .inputs import file_problem
from .meta import synsets

NUM_POINTS = 8192
SPLITS = ("test", "train")
PROTOCOL = "ULIP ShapeNet-55 {split} split: 8192 xyz points per shape, centred, max radius 1, y-up"


def find_root(src: Path) -> Path:
    for listing in sorted(src.rglob("test.txt")):
        if (listing.parent / "shapenet_pc").is_dir():
            return listing.parent
    raise VitlensError(f"{src}: no ShapeNet-55 release (a folder with shapenet_pc/ and test.txt)")


def prepare(src: Path, dest: Path, split: str, *, on_item=None, source_key: str = "") -> CacheIndex:
    root = find_root(src)
    listing = root / f"{split}.txt"
    if not listing.is_file():
        raise VitlensError(f"{root}: {listing.name} (the {split} split list) is missing")
    files = [ln.strip() for ln in listing.read_text().splitlines() if ln.strip()]
    table = synsets("shapenet55")
    order = list(table)
    labels = []
    for f in files:
        synset = f.split("-", 1)[0]
        if synset not in table:
            raise VitlensError(f"{listing}: '{f}' names unknown synset {synset}")
        labels.append(order.index(synset))

    def make(i: int) -> Sample:
        path = root / "shapenet_pc" / files[i]
        problem = file_problem(path)  # a FIFO would block np.load
        if problem is not None:
            raise SkipItem(f"{path}: {problem}")
        try:
            xyz = np.load(path, allow_pickle=False)[:, :3]
        except (OSError, ValueError) as exc:
            raise SkipItem(f"{path}: {exc}") from exc
        cloud = normalize(resample(PointCloud(xyz), NUM_POINTS, "fps"))
        return Sample(cloud.xyz, labels[i], files[i])

    index = CacheIndex("shapenet55", split, list(table.values()), NUM_POINTS, 3, "y",
                       PROTOCOL.format(split=split), source=str(root), source_key=source_key)
    return build_cache(dest, index, files, make, on_item=on_item)
