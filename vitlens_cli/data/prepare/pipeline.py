"""``prepare``: fetch (or take) a dataset's release, extract it safely, convert it into the cache.

Nothing a failed run leaves can make a later run fail: a download that turns out not to be the archive (an
HTML page, a transfer cut short) is deleted so the next run asks the server again; extractions and caches are
keyed by the release's identity (an archive's size and mtime, a folder's listing), not its name, so a
corrected archive under the same name is extracted and converted afresh. One ``prepare`` at a time works in
a data root (a lock on the folder), which lets each run clear the temporary folders a killed run left.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import VitlensError
from ..benchmarks import get_benchmark
from ..cache import CacheError, ItemProgress, tidy, valid_index
from ..inputs import input_kind, os_reason
from .download import download, forget
from .extract import ArchiveError, safe_extract
from .hub import HubSource
from .hub import fetch as fetch_hub


@dataclass(frozen=True)
class Release:
    """Where a dataset's files come from: a Hugging Face dataset repo (``hub``), a plain ``url``, or neither
    (the terms require a sign-up, or no source could be confirmed) — then ``--from`` is the only way."""

    filename: str
    url: str | None = None
    sha256: str | None = None
    where: str = ""
    hub: HubSource | None = None


# Each Hub layout below was confirmed from public material on 2026-12-03 (no live listing could be made here):
# salesforce/ULIP's README (05/23/2025: "all ULIP-series datasets and models have been reuploaded to Hugging
# Face", https://huggingface.co/datasets/SFXX/ulip), ULIP's ModelNet loader (which reads
# modelnet40_shape_names.txt, modelnet40_test.txt and modelnet40_test_8192pts_fps.dat from the folder), and
# public scripts and notes of users of that repo (snapshot_download allow_patterns
# "ULIP-1/modelnet40_normal_resampled/*" and "ULIP_Shapenet_Triplets/*"; a mirror listing ULIP-1/
# modelnet40_normal_resampled with the .dat and ULIP_Shapenet_Triplets/ with shapenet_pc/*.npy, train.txt,
# test.txt). OpenShape: Colin97/OpenShape_code's download_data.py (hf_hub_download of meta_data.zip,
# 3D-FUTURE/ABO/ShapeNet.tar.gz and Objaverse/000-NNN.tar.gz from OpenShape/openshape-training-data).
# shapenet.cs.stanford.edu, the old home of modelnet40_normal_resampled.zip, refuses connections since 2023-24.
_ULIP_MODELNET = "ULIP-1/modelnet40_normal_resampled"
_OPENSHAPE_META = Release(
    "meta_data.zip", where="meta_data.zip of the HF dataset OpenShape/openshape-training-data",
    hub=HubSource("OpenShape/openshape-training-data", ("meta_data.zip",),
                  confirmed="Colin97/OpenShape_code download_data.py"))

# SUN-D / NYU-D: the processed SUN RGB-D that ViT-Lens docs/DATASETS.md links (the release's own
# depth_bfx/*_disparity.pt beside the PNGs); --from also takes the original SUNRGBD.zip of rgbd.cs.princeton.edu.
_SUNRGBD = Release(
    "SUNRGBD.zip", where="SUNRGBD.zip of the HF dataset leiwx52/ViT-Lens-dev (processed, with _disparity.pt), or "
    "the original https://rgbd.cs.princeton.edu/data/SUNRGBD.zip",
    hub=HubSource("leiwx52/ViT-Lens-dev", ("SUNRGBD.zip",),
                  confirmed="ViT-Lens docs/DATASETS.md (huggingface.co/datasets/leiwx52/ViT-Lens-dev, "
                            "blob/main/SUNRGBD.zip)"))

RELEASES = {
    "modelnet40": Release(
        "modelnet40_normal_resampled", where="ULIP's processed ModelNet40 (modelnet40_test_8192pts_fps.dat with "
        "modelnet40_shape_names.txt and modelnet40_test.txt), the official modelnet40_normal_resampled.zip, or "
        "the ModelNet40 .off meshes",
        hub=HubSource("SFXX/ulip", tuple(f"{_ULIP_MODELNET}/{n}" for n in (
            "modelnet40_shape_names.txt", "modelnet40_test.txt", "modelnet40_test_8192pts_fps.dat")),
            root=_ULIP_MODELNET, confirmed="salesforce/ULIP README + data/dataset_3d.py; users' SFXX/ulip scripts")),
    "scanobjectnn": Release(
        "h5_files.zip",
        where="h5_files.zip from https://hkust-vgd.github.io/scanobjectnn/ (fill in the terms-of-use form)"),
    # ULIP's copy lists shapenet_pc/ files in train.txt / test.txt (one user counted 11 lines in its test.txt).
    "shapenet55": Release(
        "ULIP_Shapenet_Triplets", where="ULIP's ShapeNet-55 release (shapenet_pc/ + train.txt/test.txt; under "
        "ShapeNet's terms, https://shapenet.org/terms)",
        hub=HubSource("SFXX/ulip", ("ULIP_Shapenet_Triplets/test.txt", "ULIP_Shapenet_Triplets/train.txt"),
                      root="ULIP_Shapenet_Triplets", listing="ULIP_Shapenet_Triplets/{variant}.txt",
                      listed_under="ULIP_Shapenet_Triplets/shapenet_pc",
                      confirmed="salesforce/ULIP README; users' SFXX/ulip scripts and notes")),
    "openshape-meta": _OPENSHAPE_META,
    "modelnet40-openshape": _OPENSHAPE_META,
    "scanobjectnn-openshape": _OPENSHAPE_META,
    # On the Hub (OpenShape/openshape-training-data, Objaverse/000-000..159.tar.gz) but ~185 GB: not fetched
    # behind a user's back.
    "objaverse-lvis": Release(
        "meta_data.zip", where="a folder holding OpenShape's meta_data/ and the processed objects "
        "(Objaverse/<group>/<uid>.npy, from the Objaverse/000-*.tar.gz files of the HF dataset "
        "OpenShape/openshape-training-data, ~185 GB)"),
    "esc50": Release("ESC-50-master.zip", "https://github.com/karolpiczak/ESC-50/archive/refs/heads/master.zip",
                     where="ESC-50-master.zip of https://github.com/karolpiczak/ESC-50 (audio/*.wav + meta/esc50.csv), "
                     "or ONE-PEACE's esc50.zip mirror (audio/*.flac)"),
    "sunrgbd-depth": _SUNRGBD,
    "nyu-depth": _SUNRGBD,
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


@dataclass
class _Source:
    folder: Path  # what the benchmark reader is given
    key: str  # identity of the release it came from
    archive: Path | None = None  # the archive it was extracted from
    downloaded: bool = False  # the archive is our download (not the user's file), unverified by a checksum


def source_key(path: Path) -> str:
    """Identity of a release: an archive's size and mtime, or the relative names, sizes and mtimes in a folder."""
    h = hashlib.sha256(b"vitlens-source/1")
    st = os.stat(path)
    if stat.S_ISDIR(st.st_mode):
        h.update(os.fsencode(os.path.realpath(path)))
        for folder, dirs, files in os.walk(path):
            dirs.sort()
            for name in sorted(files):
                full = os.path.join(folder, name)
                try:
                    fst = os.stat(full)
                except OSError:
                    fst = None
                rel = os.fsencode(os.path.relpath(full, path))
                h.update(rel + (f"|{fst.st_size}|{fst.st_mtime_ns}" if fst else "|?").encode() + b"\0")
    else:
        h.update(f"file|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


@contextlib.contextmanager
def locked_data_root(root: Path) -> Iterator[None]:
    """Hold an exclusive lock on the data root for one run (released by the kernel if the run is killed)."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd = os.open(root, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as exc:
        raise VitlensError(f"{root}: cannot use as the data folder ({os_reason(exc, root)})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise VitlensError(f"{root}: another `vitlens prepare` is working in this data folder; let it "
                               "finish first") from None
        yield
    finally:
        os.close(fd)


def check_from(from_path: Path | None) -> str | None:
    """``"file"``/``"dir"`` for a ``--from`` that may be opened (a FIFO would block the reader), else an error."""
    if from_path is None:
        return None
    return input_kind(from_path, what="--from input")


def stage_progress(progress: Progress | None, stage: str) -> Callable[[int, int | None], None] | None:
    """``progress`` bound to one stage, as download and extraction report it (``None`` stays ``None``)."""
    return None if progress is None else lambda done, total: progress(stage, done, total)


def count_items(progress: Progress | None, stage: str) -> tuple[ItemProgress, dict[str, int]]:
    """An ``on_item`` that reports ``stage`` with the total it is told (:class:`ItemProgress`), and the counts
    it keeps: ``{"done": …, "skipped": …}`` (skipped items are counted in ``done`` too)."""
    counts = {"done": 0, "skipped": 0}
    total: list[int | None] = [None]

    def item(i: int, skipped: bool) -> None:
        counts["done"] += 1
        counts["skipped"] += skipped
        if progress is not None:
            progress(stage, counts["done"], total[0])

    def plan(n: int) -> None:
        total[0] = n
        if progress is not None:
            progress(stage, 0, n)

    return ItemProgress(item, plan), counts


def extract_release(archive: Path, root: Path, *, downloaded: bool, progress: Progress | None
                    ) -> tuple[Path, str]:
    """``archive`` safely extracted into ``root/_sources/<stem>-<key>``, and its key (:func:`source_key`).

    Extractions a killed run left are cleared first (safe under the data-root lock: no other run is extracting
    here). An archive that fails to extract is deleted when it is our own ``downloaded`` file, so the next run
    asks the server again."""
    key = source_key(archive)
    sources = root / "_sources"
    dest = sources / f"{archive.name.split('.')[0] or 'archive'}-{key}"
    if sources.is_dir():
        for tmp in sources.glob(".*.extracting"):
            shutil.rmtree(tmp, ignore_errors=True)
    try:
        safe_extract(archive, dest, progress=stage_progress(progress, "extract"))
    except ArchiveError as exc:
        if downloaded:
            forget(archive)
            raise ArchiveError(exc.archive, f"{exc.reason}; the download was deleted: run `vitlens prepare` again "
                                            "to fetch it anew", exc.entry) from None
        raise
    return dest, key


def _fetch(name: str, root: Path, from_path: Path | None, kind: str | None, progress: Progress | None,
           variant: str | None = None, hub: dict | None = None) -> _Source:
    release = RELEASES[name]
    downloaded = False
    if from_path is not None:
        if kind == "dir" or from_path.suffix.lower() in (".h5", ".hdf5"):
            return _Source(from_path, source_key(from_path))
        archive = from_path
    elif release.hub is not None:
        fetched = fetch_hub(release.hub, variant, where=release.where, progress=progress, **(hub or {}))
        if fetched.is_dir():
            return _Source(fetched, source_key(fetched))
        archive = fetched  # verified against the Hub's sha256: never deleted as a suspect download
    else:
        if release.url is None:
            raise VitlensError(f"{name} cannot be downloaded automatically: get {release.where}, "
                               "then pass it with --from")
        archive = download(release.url, root / "_downloads" / release.filename, release.sha256,
                           progress=stage_progress(progress, "download"))
        downloaded = release.sha256 is None
    dest, key = extract_release(archive, root, downloaded=downloaded, progress=progress)
    # An archive of the same name replaces its earlier extraction (a corrected re-download, say): its cache
    # was converted from it, so nothing else reads the old one.
    earlier = re.compile(re.escape(dest.name.rsplit("-", 1)[0]) + r"-[0-9a-f]{16}")
    for old in dest.parent.iterdir():
        if old != dest and earlier.fullmatch(old.name) and old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
    return _Source(dest, key, archive, downloaded)


def _convert(src: _Source, convert: Callable[[Path, str], object]):
    """``convert(folder, key)``; a source that is not the release it should be is named as the user knows it."""
    try:
        return convert(src.folder, src.key)
    except CacheError:
        raise
    except VitlensError as exc:
        if isinstance(exc, OSError) or src.archive is None:
            raise
        # The archive extracted but holds the wrong thing (another benchmark's release, a missing folder):
        # its extraction is useless, and a download of it must be asked for again.
        shutil.rmtree(src.folder, ignore_errors=True)
        if src.downloaded:
            forget(src.archive)
        message = str(exc).replace(str(src.folder), str(src.archive))
        if not message.startswith(str(src.archive)):
            message = f"{src.archive}: {message}"
        raise VitlensError(message) from None
    except OSError as exc:
        where = exc.filename if exc.filename is not None else src.folder
        raise VitlensError(f"{where}: {os_reason(exc, where)}") from None


def prepare_dataset(name: str, root: Path, *, from_path: Path | None = None, variant: str | None = None,
                    progress: Progress | None = None, hub_cache_dir: Path | None = None,
                    hub_endpoint: str | None = None) -> PrepareSummary:
    """Idempotent and resumable: a finished cache of the same release is left alone; an interrupted one is
    completed; a damaged one, or one of another release, is rebuilt (the previous one stays until then).

    Releases on the Hugging Face Hub go through huggingface_hub (``hub_cache_dir`` / ``hub_endpoint`` default
    to its own settings: ``HF_HUB_CACHE``, ``HF_ENDPOINT``, ``HF_TOKEN``, ``HF_HUB_OFFLINE``)."""
    hub = {"cache_dir": hub_cache_dir, "endpoint": hub_endpoint}
    root = Path(root)
    from_path = None if from_path is None else Path(from_path)
    if name in FETCH_ONLY:
        if variant is not None:
            raise VitlensError(f"{name} has no variants")
        kind = check_from(from_path)
        with locked_data_root(root):
            src = _fetch(name, root, from_path, kind, progress, hub=hub)
        return PrepareSummary(name, None, src.folder, 0, 0, 0, False, "downloaded and extracted only")
    bench = get_benchmark(name)
    variant = bench.resolve_variant(variant)
    kind = check_from(from_path)
    with locked_data_root(root):
        dest = bench.cache_dir(root, variant)
        current = valid_index(dest)
        if current is not None and (from_path is None or current.source_key == source_key(from_path)):
            tidy(dest, current)
            return PrepareSummary(name, variant, dest, current.count, 0, current.count, True, current.protocol)
        src = _fetch(name, root, from_path, kind, progress, variant, hub)
        on_item, counts = count_items(progress, "convert")

        idx = _convert(src, lambda folder, key: bench.prepare(folder, dest, variant, on_item=on_item,
                                                               source_key=key))
    return PrepareSummary(name, variant, dest, idx.count, counts["done"] - counts["skipped"], counts["skipped"], False,
                          idx.protocol, idx.skipped)


def prepare_objaverse(root: Path, *, categories: list[str] | None = None, per_category: int | None = None,
                      download_processes: int = 1, progress: Progress | None = None) -> PrepareSummary:
    """Raw LVIS-annotated Objaverse objects through the objaverse package, into ``<root>/objaverse[-subset]``."""
    from .. import objaverse

    root = Path(root)
    tag = "all" if not categories else "+".join(sorted(categories))[:80]
    dest = root / (f"objaverse-{tag}" + ("" if per_category is None else f"-{per_category}"))
    with locked_data_root(root):
        current = valid_index(dest)
        if current is not None:
            return PrepareSummary("objaverse", None, dest, current.count, 0, current.count, True, current.protocol,
                                  current.skipped)
        on_item, counts = count_items(progress, "convert")

        try:
            idx = objaverse.prepare(dest, categories=categories, per_category=per_category,
                                    download_processes=download_processes, on_item=on_item)
        except OSError as exc:
            if isinstance(exc, VitlensError):
                raise
            where = exc.filename if exc.filename is not None else dest
            raise VitlensError(f"{where}: {os_reason(exc, where)}") from None
    return PrepareSummary("objaverse", None, dest, idx.count, counts["done"] - counts["skipped"], counts["skipped"],
                          False, idx.protocol, idx.skipped)
