"""``prepare``: fetch (or take) a dataset's release, extract it safely, convert it into the cache."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import VitlensError
from ..benchmarks import get_benchmark
from ..cache import CacheError, is_complete, read_index
from .download import download
from .extract import archive_kind, safe_extract


@dataclass(frozen=True)
class Release:
    """Where a dataset's official files come from; ``url`` is None where the terms require a sign-up."""

    filename: str
    url: str | None = None
    sha256: str | None = None
    where: str = ""


_OPENSHAPE_META = Release(
    "meta_data.zip", "https://huggingface.co/datasets/OpenShape/openshape-training-data/resolve/main/meta_data.zip",
    where="meta_data.zip of the HF dataset OpenShape/openshape-training-data")

RELEASES = {
    "modelnet40": Release(
        "modelnet40_normal_resampled.zip", "https://shapenet.cs.stanford.edu/media/modelnet40_normal_resampled.zip",
        where="the official modelnet40_normal_resampled.zip (PointNet++), or the ModelNet40 .off meshes"),
    "scanobjectnn": Release(
        "h5_files.zip",
        where="h5_files.zip from https://hkust-vgd.github.io/scanobjectnn/ (fill in the terms-of-use form)"),
    "shapenet55": Release(
        "ShapeNet55.zip", where="ULIP's ShapeNet-55 release (shapenet_pc/ + train.txt/test.txt; ShapeNet's terms "
        "need a sign-up at shapenet.org)"),
    "openshape-meta": _OPENSHAPE_META,
    "modelnet40-openshape": _OPENSHAPE_META,
    "scanobjectnn-openshape": _OPENSHAPE_META,
    "objaverse-lvis": Release(
        "meta_data.zip", where="a folder holding OpenShape's meta_data/ and the processed objects "
        "(Objaverse/<group>/<uid>.npy, from the Objaverse/000-*.tar.gz files of the HF dataset "
        "OpenShape/openshape-training-data, ~185 GB)"),
}
FETCH_ONLY = {"openshape-meta"}

Progress = Callable[[str, int, int | None], None]


@dataclass
class PrepareSummary:
    benchmark: str
    variant: str | None
    dest: Path
    count: int
    converted: int
    skipped: int
    already_done: bool
    protocol: str
    skipped_items: list[dict] = field(default_factory=list)


def _source_folder(name: str, root: Path, from_path: Path | None, progress: Progress | None) -> Path:
    release = RELEASES[name]
    if from_path is not None:
        from_path = Path(from_path)
        if not from_path.exists():
            raise VitlensError(f"{from_path}: no such file or folder")
        if from_path.is_dir() or from_path.suffix.lower() in (".h5", ".hdf5"):
            return from_path
        archive = from_path
    else:
        if release.url is None:
            raise VitlensError(f"{name} cannot be downloaded automatically: get {release.where}, "
                               "then pass it with --from")
        archive = download(release.url, root / "_downloads" / release.filename, release.sha256,
                           progress=None if progress is None else lambda done, total: progress("download", done, total))
    archive_kind(archive)  # a clear error for an unsupported file before anything is written
    return safe_extract(archive, root / "_sources" / archive.name.split(".")[0],
                        progress=None if progress is None else lambda done, total: progress("extract", done, total))


def prepare_dataset(name: str, root: Path, *, from_path: Path | None = None, variant: str | None = None,
                    progress: Progress | None = None) -> PrepareSummary:
    """Idempotent and resumable: a finished cache is left alone; an interrupted one is completed."""
    if name in FETCH_ONLY:
        src = _source_folder(name, Path(root), from_path, progress)
        return PrepareSummary(name, None, src, 0, 0, 0, False, "downloaded and extracted only")
    bench = get_benchmark(name)
    variant = bench.resolve_variant(variant)
    root = Path(root)
    dest = bench.cache_dir(root, variant)
    if is_complete(dest):
        try:
            idx = read_index(dest)
        except CacheError:
            pass  # another cache format version or a damaged index: rebuild it
        else:
            return PrepareSummary(name, variant, dest, idx.count, 0, idx.count, True, idx.protocol)
    src = _source_folder(name, root, from_path, progress)
    counts = {"converted": 0, "skipped": 0}

    def on_item(i: int, skipped: bool) -> None:
        counts["skipped" if skipped else "converted"] += 1
        if progress is not None:
            progress("convert", counts["converted"] + counts["skipped"], None)

    idx = bench.prepare(src, dest, variant, on_item=on_item)
    return PrepareSummary(name, variant, dest, idx.count, counts["converted"], counts["skipped"], False, idx.protocol,
                          idx.skipped)


def prepare_objaverse(root: Path, *, categories: list[str] | None = None, per_category: int | None = None,
                      download_processes: int = 1, progress: Progress | None = None) -> PrepareSummary:
    """Raw LVIS-annotated Objaverse objects through the objaverse package, into ``<root>/objaverse[-subset]``."""
    from .. import objaverse

    tag = "all" if not categories else "+".join(sorted(categories))[:80]
    dest = Path(root) / (f"objaverse-{tag}" + ("" if per_category is None else f"-{per_category}"))
    if is_complete(dest):
        idx = read_index(dest)
        return PrepareSummary("objaverse", None, dest, idx.count, 0, idx.count, True, idx.protocol, idx.skipped)
    counts = {"converted": 0, "skipped": 0}

    def on_item(i: int, skipped: bool) -> None:
        counts["skipped" if skipped else "converted"] += 1
        if progress is not None:
            progress("convert", counts["converted"] + counts["skipped"], None)

    idx = objaverse.prepare(dest, categories=categories, per_category=per_category,
                            download_processes=download_processes, on_item=on_item)
    return PrepareSummary("objaverse", None, dest, idx.count, counts["converted"], counts["skipped"], False,
                          idx.protocol, idx.skipped)
