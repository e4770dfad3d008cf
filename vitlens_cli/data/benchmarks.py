"""The zero-shot benchmarks by name: where their prepared caches live and how to prepare them."""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import VitlensError
from . import depth_scenes, esc50, modelnet40, openshape, scanobjectnn, shapenet55
from .cache import INDEX_NAME, CachedPoints
from .custom import LabelledFiles
from .inputs import input_kind
from .meta import default_templates


def default_data_root() -> Path:
    return Path(os.environ.get("VITLENS_DATA", Path.home() / ".cache" / "vitlens" / "data"))


@dataclass(frozen=True)
class Benchmark:
    """A named benchmark. ``prepare(src, dest, variant, *, on_item, source_key)`` builds its cache (any
    modality: see :mod:`vitlens_cli.data.cache`); ``templates`` names its prompt set in ``meta/templates.json``
    (None: the default of the cache's modality)."""

    name: str
    description: str
    prepare: Callable[..., object]
    variants: tuple[str, ...] = ()
    default_variant: str | None = None
    templates: str | None = None

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
    # 3D
    "modelnet40": Benchmark(
        "modelnet40", modelnet40.PROTOCOL,
        lambda src, dest, variant, **kw: modelnet40.prepare(src, dest, **kw)),
    "scanobjectnn": Benchmark(
        "scanobjectnn", "ScanObjectNN test splits from the official h5 files (official label order)",
        lambda src, dest, variant, **kw: scanobjectnn.prepare(src, dest, variant, **kw),
        variants=tuple(scanobjectnn.VARIANTS), default_variant="pb_t50_rs"),
    "modelnet40-openshape": Benchmark(
        "modelnet40-openshape", "OpenShape's ModelNet40 test_pc.npy (10k xyz+rgb)",
        lambda src, dest, variant, **kw: openshape.prepare_modelnet40(src, dest, **kw)),
    "scanobjectnn-openshape": Benchmark(
        "scanobjectnn-openshape", "OpenShape's 2,890-object ScanObjectNN xyz_label.npy",
        lambda src, dest, variant, **kw: openshape.prepare_scanobjectnn(src, dest, **kw)),
    "shapenet55": Benchmark(
        "shapenet55", "ULIP ShapeNet-55 point clouds (55 synsets)",
        lambda src, dest, variant, **kw: shapenet55.prepare(src, dest, variant, **kw),
        variants=shapenet55.SPLITS, default_variant="test"),
    "objaverse-lvis": Benchmark(
        "objaverse-lvis", "Objaverse-LVIS (1,156 categories), OpenShape's lvis.json + processed objects",
        lambda src, dest, variant, **kw: openshape.prepare_lvis(src, dest, **kw)),
    # audio
    "esc50": Benchmark(
        "esc50", "ESC-50, all 2,000 clips, 50 classes (top-1, also per fold)",
        lambda src, dest, variant, **kw: esc50.prepare(src, dest, **kw), templates=esc50.TEMPLATES),
    # depth
    "sunrgbd-depth": Benchmark(
        "sunrgbd-depth", depth_scenes.BENCHMARKS["sunrgbd-depth"][1],
        lambda src, dest, variant, **kw: depth_scenes.prepare("sunrgbd-depth", src, dest, **kw),
        templates=depth_scenes.TEMPLATES),
    "nyu-depth": Benchmark(
        "nyu-depth", depth_scenes.BENCHMARKS["nyu-depth"][1],
        lambda src, dest, variant, **kw: depth_scenes.prepare("nyu-depth", src, dest, **kw),
        templates=depth_scenes.TEMPLATES),
}


def get_benchmark(name: str) -> Benchmark:
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise VitlensError(f"unknown benchmark '{name}' (known: {', '.join(BENCHMARKS)}, or a folder of class "
                           "sub-folders, or a CSV of path,label)") from None


@dataclass
class EvalSource:
    """What eval reads: indexable ``(signal, label, name)`` items of one modality plus their class names.

    The signal is raw (points for 3D, what the modality plug-in reads otherwise) unless ``prepared``: then it
    is a lens input already preprocessed under ``contract`` (a prepared non-3D cache). ``prompts`` and
    ``prompt_to_class`` (None: the classes themselves) say which class names are prompted and which class
    each counts as; ``groups`` assigns item names to groups scored apart (see :class:`CacheIndex`).
    ``templates`` names the default prompt set. ``failures`` are ``(path, reason)`` pairs found while
    listing the source (an unreadable sub-folder, a FIFO): eval reports them as skipped next to the items
    that fail to load.
    """

    dataset: object
    classes: list[str]
    up_axis: str | None
    benchmark: str
    variant: str | None
    protocol: str
    failures: list[tuple[str, str]] = field(default_factory=list)
    modality: str = "3d"
    prepared: bool = False
    contract: dict | None = None
    prompts: list[str] | None = None
    prompt_to_class: list[int] | None = None
    groups: dict[str, dict[str, str]] = field(default_factory=dict)
    templates: str = "ulip_64"


def _cached_source(ds: CachedPoints, name: str, variant: str | None, templates: str | None) -> EvalSource:
    idx = ds.index
    points = idx.modality == "3d"
    return EvalSource(ds, idx.classes, idx.up_axis if points else None, name, variant, idx.protocol,
                      modality=idx.modality, prepared=not points, contract=None if points else idx.contract,
                      prompts=idx.prompts or None, prompt_to_class=idx.prompt_to_class or None,
                      groups=idx.groups, templates=templates or default_templates(idx.modality))


def _check_modality(source: EvalSource, modality: str | None) -> EvalSource:
    if modality is not None and modality != source.modality:
        raise VitlensError(f"{source.benchmark}: a prepared {source.modality} benchmark, not {modality} "
                           "(--modality)")
    return source


def open_source(name: str, data_root: Path | None = None, variant: str | None = None,
                modality: str | None = None) -> EvalSource:
    """A named benchmark's prepared cache, or your own folder / CSV of one modality (``modality`` where the
    extensions leave it open; read as is, 3D up-axis as the model's)."""
    from ..modalities import get_modality

    from .lists import CLASSIFIED, list_source

    if modality is not None:
        modality = get_modality(modality).name
    if name in CLASSIFIED:  # files read where the user keeps them (data/listed.py), or ImageNet-EEG's trials
        return _check_modality(list_source(name, data_root, variant), modality)
    path = Path(name)
    if name not in BENCHMARKS and (os.path.lexists(path) or path.suffix.lower() == ".csv"):
        # Only a folder or a regular file is opened: a FIFO named like a CSV would block the reader.
        if input_kind(path, what="eval input") == "dir":
            if os.path.lexists(path / INDEX_NAME):  # a prepared cache given by its folder
                ds = CachedPoints(path)
                bench = BENCHMARKS.get(ds.index.benchmark)
                return _check_modality(_cached_source(ds, ds.index.benchmark, ds.index.variant,
                                                      bench.templates if bench else None), modality)
            ds = LabelledFiles.from_folder(path, modality)
        elif path.suffix.lower() == ".csv":
            ds = LabelledFiles.from_csv(path, modality)
        else:
            raise VitlensError(f"{path}: neither a folder of class sub-folders, a prepared cache nor a .csv of "
                               "path,label")
        return EvalSource(ds, ds.classes, None, "custom", None, f"your data: {path}", ds.failures,
                          modality=ds.modality, templates=default_templates(ds.modality))
    bench = get_benchmark(name)
    variant = bench.resolve_variant(variant)
    ds = CachedPoints(bench.cache_dir(data_root or default_data_root(), variant))
    return _check_modality(_cached_source(ds, bench.name, variant, bench.templates), modality)
