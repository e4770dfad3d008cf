"""OpenShape's evaluation sets: ModelNet40 (``test_pc.npy``), ScanObjectNN (``xyz_label.npy``), Objaverse-LVIS.

All hold 10,000 xyz+rgb points stored y-up; OpenShape models see them z-up (a y/z swap), which the
model card's up-axis handles at eval time, so the cache keeps them as stored (``up_axis="y"``).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import VitlensError
from ..points import PointCloud, normalize
from .cache import CacheIndex, Sample, SkipItem, build_cache
from .meta import classnames
from .safe_npy import load_npy

NUM_POINTS = 10_000
PROTOCOL = ("OpenShape {name}: {file}, {points} xyz+rgb points (rgb in [0, 1]), centred, max radius 1, "
            "stored y-up (OpenShape checkpoints see them z-up)")


def find_meta(src: Path, relative: str) -> Path:
    """``meta_data/<relative>`` under ``src`` (``src`` may be the meta_data folder itself or hold it)."""
    for candidate in (src / relative, src / "meta_data" / relative):
        if candidate.is_file():
            return candidate
    hits = sorted(src.rglob(Path(relative).name))
    hits = [h for h in hits if str(h).endswith(relative) and h.is_file()]
    if not hits:
        raise VitlensError(f"{src}: no meta_data/{relative} found (OpenShape's meta_data release)")
    return hits[0]


def _sample(xyz: np.ndarray, rgb: np.ndarray | None, rng: np.random.Generator, replace: bool) -> np.ndarray:
    """OpenShape's rule: keep a 10,000-point cloud as is, else draw 10,000 indices at random."""
    n = len(xyz)
    if n != NUM_POINTS:
        idx = rng.choice(n, NUM_POINTS, replace=replace or n < NUM_POINTS)
        xyz, rgb = xyz[idx], None if rgb is None else rgb[idx]
    rgb = np.full_like(xyz, 0.4) if rgb is None else rgb
    cloud = normalize(PointCloud(np.asarray(xyz, np.float32), rgb=np.clip(rgb, 0, 1)))
    return np.concatenate([cloud.xyz, cloud.rgb], axis=1)


def prepare_modelnet40(src: Path, dest: Path, *, on_item=None, seed: int = 0, source_key: str = "") -> CacheIndex:
    split_path = find_meta(src, "modelnet40/test_split.json")
    pcs_path = split_path.parent / "test_pc.npy"
    split = json.loads(split_path.read_text())
    pcs = load_npy(pcs_path)
    if len(pcs) != len(split):
        raise VitlensError(f"{pcs_path}: {len(pcs)} clouds but {split_path.name} lists {len(split)} shapes")
    names_list = classnames("modelnet40")
    lookup = {c: i for i, c in enumerate(names_list)}
    labels = []
    for entry in split:
        cat = str(entry["category"]).replace("_", " ")
        if cat not in lookup:
            raise VitlensError(f"{split_path}: unknown ModelNet40 category '{entry['category']}'")
        labels.append(lookup[cat])
    rng = np.random.default_rng(seed)
    index = CacheIndex("modelnet40-openshape", None, names_list, NUM_POINTS, 6, "y",
                       PROTOCOL.format(name="ModelNet40", file=pcs_path.name, points=NUM_POINTS), source=str(pcs_path),
                       source_key=source_key)
    names = [str(e["name"]) for e in split]
    # ModelNet has no colour: OpenShape stores 100 and divides by 255 (≈ 0.4, the training grey).
    return build_cache(dest, index, names, lambda i: Sample(
        _sample(pcs[i]["xyz"], np.asarray(pcs[i]["rgb"], np.float32) / 255.0, rng, False), labels[i], names[i]),
        on_item=on_item)


def prepare_scanobjectnn(src: Path, dest: Path, *, on_item=None, seed: int = 0, source_key: str = "") -> CacheIndex:
    path = find_meta(src, "scanobjectnn/xyz_label.npy")
    data = load_npy(path)
    if not isinstance(data, dict) or "xyz" not in data or "label" not in data:
        raise VitlensError(f"{path}: expected a dict with 'xyz' and 'label'")
    xyz, labels = data["xyz"], np.asarray(data["label"]).reshape(-1).astype(np.int64)
    rgb = data.get("rgb")
    if len(xyz) != len(labels) or labels.min() < 0 or labels.max() > 14:
        raise VitlensError(f"{path}: {len(xyz)} clouds, {len(labels)} labels (expected 0..14)")
    rng = np.random.default_rng(seed)
    index = CacheIndex("scanobjectnn-openshape", None, classnames("scanobjectnn"), NUM_POINTS, 6, "y",
                       PROTOCOL.format(name="ScanObjectNN", file=path.name, points=NUM_POINTS), source=str(path),
                       source_key=source_key)
    names = [f"{path.name}#{i}" for i in range(len(labels))]
    # OpenShape draws with replacement here, even for clouds of 10,000 points or more.
    return build_cache(dest, index, names, lambda i: Sample(
        _sample(np.asarray(xyz[i], np.float32)[:, :3], None if rgb is None else np.asarray(rgb[i], np.float32),
                rng, True), int(labels[i]), names[i]), on_item=on_item)


def prepare_lvis(src: Path, dest: Path, *, on_item=None, seed: int = 0, source_key: str = "") -> CacheIndex:
    split_path = find_meta(src, "split/lvis.json")
    split = json.loads(split_path.read_text())
    categories = sorted({str(e["category"]) for e in split})  # OpenShape's label order
    lookup = {c: i for i, c in enumerate(categories)}
    prompts = [c.replace("_", " ") for c in categories]  # "arctic_(type_of_shoe)" reads as words
    data_root = split_path.parent.parent.parent  # <root>/meta_data/split/lvis.json

    def locate(entry: dict) -> Path:
        # data_path is absolute on the authors' machines (/mnt/data/objaverse-processed/...): keep its tail.
        tail = Path(*Path(entry["data_path"]).parts[-3:])
        for base in (src, data_root):
            if (base / tail).is_file():
                return base / tail
        raise SkipItem(f"processed object {tail} not found under {src}")

    rng = np.random.default_rng(seed)

    def make(i: int) -> Sample:
        path = locate(split[i])
        try:
            obj = load_npy(path)
        except VitlensError as exc:
            raise SkipItem(str(exc)) from exc
        if not isinstance(obj, dict) or "xyz" not in obj:
            raise SkipItem(f"{path}: expected an OpenShape dict with 'xyz'")
        rgb = obj.get("rgb")
        return Sample(_sample(np.asarray(obj["xyz"], np.float32), None if rgb is None else np.asarray(rgb, np.float32),
                              rng, False), lookup[str(split[i]["category"])], str(split[i]["uid"]))

    index = CacheIndex("objaverse-lvis", None, prompts, NUM_POINTS, 6, "y",
                       PROTOCOL.format(name="Objaverse-LVIS", file=split_path.name, points=NUM_POINTS)
                       + f", {len(categories)} categories", source=str(split_path), source_key=source_key)
    return build_cache(dest, index, [str(e["uid"]) for e in split], make, on_item=on_item)
