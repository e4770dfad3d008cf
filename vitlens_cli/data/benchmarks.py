"""The zero-shot benchmarks by name: where their prepared caches live and how to prepare them."""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import VitlensError
from . import modelnet40, openshape, scanobjectnn, shapenet55
from .cache import CachedPoints
from .custom import LabelledFiles


def default_data_root() -> Path:
    return Path(os.environ.get("VITLENS_DATA", Path.home() / ".cache" / "vitlens" / "data"))


@dataclass(frozen=True)
class Benchmark:
    name: str
    description: str
    prepare: Callable[..., object]
    variants: tuple[str, ...] = ()
    default_variant: str | None = None

    def resolve_variant(self, variant: str | None) -> str | None:
        if not self.variants:
            if variant is not None:
                raise VitlensError(f"{self.name} has no variants")
            return None
        variant = variant or self.default_variant
        if variant not in self.variants:
            raise VitlensError(f"unknown {self.name} variant '{variant}' (known: {', '.join(self.variants)})")
        return variant

    def cache_dir(self, data_root: Path, variant: str | None) -> Path:
        return Path(data_root) / (self.name if variant is None else f"{self.name}-{variant}")


BENCHMARKS: dict[str, Benchmark] = {
    "modelnet40": Benchmark(
        "modelnet40", modelnet40.PROTOCOL,
        lambda src, dest, variant, on_item=None: modelnet40.prepare(src, dest, on_item=on_item)),
    "scanobjectnn": Benchmark(
        "scanobjectnn", "ScanObjectNN test splits from the official h5 files (official label order)",
        lambda src, dest, variant, on_item=None: scanobjectnn.prepare(src, dest, variant, on_item=on_item),
        variants=tuple(scanobjectnn.VARIANTS), default_variant="pb_t50_rs"),
    "modelnet40-openshape": Benchmark(
        "modelnet40-openshape", "OpenShape's ModelNet40 test_pc.npy (10k xyz+rgb)",
        lambda src, dest, variant, on_item=None: openshape.prepare_modelnet40(src, dest, on_item=on_item)),
    "scanobjectnn-openshape": Benchmark(
        "scanobjectnn-openshape", "OpenShape's 2,890-object ScanObjectNN xyz_label.npy",
        lambda src, dest, variant, on_item=None: openshape.prepare_scanobjectnn(src, dest, on_item=on_item)),
    "shapenet55": Benchmark(
        "shapenet55", "ULIP ShapeNet-55 point clouds (55 synsets)",
        lambda src, dest, variant, on_item=None: shapenet55.prepare(src, dest, variant, on_item=on_item),
        variants=shapenet55.SPLITS, default_variant="test"),
    "objaverse-lvis": Benchmark(
        "objaverse-lvis", "Objaverse-LVIS (1,156 categories), OpenShape's lvis.json + processed objects",
        lambda src, dest, variant, on_item=None: openshape.prepare_lvis(src, dest, on_item=on_item)),
}


def get_benchmark(name: str) -> Benchmark:
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise VitlensError(f"unknown benchmark '{name}' (known: {', '.join(BENCHMARKS)}, or a folder of class "
                           "sub-folders, or a CSV of path,label)") from None


@dataclass
class EvalSource:
    """What eval reads: indexable ``(points, label, name)`` items plus their class names and up-axis."""

    dataset: object
    classes: list[str]
    up_axis: str | None
    benchmark: str
    variant: str | None
    protocol: str


def open_source(name: str, data_root: Path | None = None, variant: str | None = None) -> EvalSource:
    """A named benchmark's prepared cache, or your own folder / CSV (read as is, up-axis as the model's)."""
    path = Path(name)
    if name not in BENCHMARKS and (path / "index.json").is_file():  # a prepared cache given by its folder
        ds = CachedPoints(path)
        return EvalSource(ds, ds.index.classes, ds.index.up_axis, ds.index.benchmark, ds.index.variant,
                          ds.index.protocol)
    if name not in BENCHMARKS and (path.is_dir() or path.suffix.lower() == ".csv"):
        if not path.exists():
            raise VitlensError(f"{path}: no such file")
        ds = LabelledFiles.from_folder(path) if path.is_dir() else LabelledFiles.from_csv(path)
        return EvalSource(ds, ds.classes, None, "custom", None, f"your data: {path}")
    bench = get_benchmark(name)
    variant = bench.resolve_variant(variant)
    ds = CachedPoints(bench.cache_dir(data_root or default_data_root(), variant))
    idx = ds.index
    return EvalSource(ds, idx.classes, idx.up_axis, bench.name, variant, idx.protocol)
