"""The prepared-dataset cache: fixed-size ``.npy`` shards plus a versioned ``index.json``.

A cache is built in ``<dest>.partial/``: each shard is written atomically, so a re-run after an
interruption keeps the finished shards and redoes only the rest; the folder is renamed to
``<dest>`` only when the index is complete. ``eval`` and ``train`` read caches memory-mapped.
"""
from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..atomic import write_atomic, write_text_atomic
from ..errors import VitlensError

CACHE_FORMAT = "vitlens-cache/1"
INDEX_NAME = "index.json"
SHARD_SIZE = 512


class CacheError(VitlensError):
    """A prepared dataset is missing, incomplete or of another format version."""


class SkipItem(VitlensError):
    """Raised by a ``make`` function for an unreadable item: it is left out and reported, not fatal."""


@dataclass
class CacheIndex:
    benchmark: str
    variant: str | None
    classes: list[str]
    num_points: int
    channels: int
    up_axis: str
    protocol: str
    count: int = 0
    shards: list[dict] = field(default_factory=list)
    source: str = ""
    skipped: list[dict] = field(default_factory=list)
    format: str = CACHE_FORMAT


@dataclass
class Sample:
    """One item to store: points ``(num_points, channels)``, class index and a stable name."""

    points: np.ndarray
    label: int
    name: str


def is_complete(dest: Path) -> bool:
    return (Path(dest) / INDEX_NAME).is_file()


def build_cache(dest: Path, index: CacheIndex, names: Sequence[str],
                make: Callable[[int], Sample], *, on_item: Callable[[int, bool], None] | None = None) -> CacheIndex:
    """Build ``dest`` from ``make(i)`` for every item ``i`` of ``names`` (a deterministic order).

    Returns the existing index untouched when the cache is already complete. ``on_item(i, skipped)``
    reports progress; items of shards finished by an earlier run are reported as skipped. Items whose
    ``make`` raises :class:`SkipItem` are left out and listed in ``index.skipped`` with the reason.
    """
    dest = Path(dest)
    if is_complete(dest):
        try:
            return read_index(dest)
        except CacheError:
            pass  # another format version or a damaged index: rebuilt below, then swapped in
    work = dest.with_name(dest.name + ".partial")
    work.mkdir(parents=True, exist_ok=True)
    shards, skipped_all = [], []
    for start in range(0, len(names), SHARD_SIZE):
        stop = min(start + SHARD_SIZE, len(names))
        stem = f"shard-{start // SHARD_SIZE:05d}"
        files = {"points": f"{stem}.points.npy", "labels": f"{stem}.labels.npy",
                 "skipped": f"{stem}.skipped.json", "names": f"{stem}.names.json"}
        done = _shard_done(work, files, names[start:stop], (index.num_points, index.channels))
        if done is not None:
            kept, skipped = done
            for i in range(start, stop):
                if on_item:
                    on_item(i, True)
        else:
            samples, skipped = [], []
            for i in range(start, stop):
                try:
                    sample = make(i)
                except SkipItem as exc:
                    skipped.append({"name": names[i], "reason": str(exc)})
                else:
                    if sample.points.shape != (index.num_points, index.channels):
                        raise CacheError(f"{names[i]}: prepared points have shape {sample.points.shape}, "
                                         f"expected {(index.num_points, index.channels)}")
                    samples.append(sample)
                if on_item:
                    on_item(i, False)
            pts = np.stack([s.points for s in samples]).astype(np.float32) if samples else \
                np.zeros((0, index.num_points, index.channels), np.float32)
            write_atomic(work / files["points"], lambda p: _save(p, pts))
            write_atomic(work / files["labels"], lambda p: _save(p, np.array([s.label for s in samples], np.int64)))
            write_text_atomic(work / files["skipped"], json.dumps(skipped))
            # names last: its presence marks the shard as finished
            write_text_atomic(work / files["names"], json.dumps([s.name for s in samples]))
            kept = len(samples)
        skipped_all.extend(skipped)
        shards.append({**files, "count": kept})
    index.shards = shards
    index.skipped = skipped_all
    index.count = sum(s["count"] for s in shards)
    write_text_atomic(work / INDEX_NAME, json.dumps(asdict(index), indent=1))
    if dest.exists():  # an empty or foreign leftover; a complete cache returned above
        shutil.rmtree(dest)
    os.replace(work, dest)
    return index


def _shard_done(work: Path, files: dict[str, str], names: Sequence[str],
                point_shape: tuple[int, int]) -> tuple[int, list[dict]] | None:
    """``(kept count, skipped items)`` of a shard an earlier run finished for exactly these items, else None."""
    if not all((work / f).is_file() for f in files.values()):
        return None
    try:
        skipped = json.loads((work / files["skipped"]).read_text())
        left_out = {s["name"] for s in skipped}
        kept = json.loads((work / files["names"]).read_text())
        if kept != [n for n in names if n not in left_out] or len(kept) + len(skipped) != len(names):
            return None
        ok = np.load(work / files["points"], mmap_mode="r").shape == (len(kept), *point_shape) and \
            np.load(work / files["labels"], mmap_mode="r").shape == (len(kept),)
    except (OSError, ValueError, TypeError, KeyError):
        return None
    return (len(kept), skipped) if ok else None


def _save(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as fh:
        np.save(fh, array)


def read_index(dest: Path) -> CacheIndex:
    path = Path(dest) / INDEX_NAME
    if not path.is_file():
        partial = Path(dest).with_name(Path(dest).name + ".partial")
        hint = " (an interrupted run left a .partial folder: re-run `vitlens prepare`)" if partial.exists() else ""
        raise CacheError(f"{dest}: no prepared dataset here{hint}; run `vitlens prepare` first")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CacheError(f"{path}: unreadable cache index ({exc}); re-run `vitlens prepare`") from exc
    if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT:
        found = data.get("format") if isinstance(data, dict) else None
        raise CacheError(f"{dest}: cache format {found!r}, this version reads {CACHE_FORMAT!r}; "
                         "re-run `vitlens prepare`")
    try:
        return CacheIndex(**data)
    except TypeError as exc:
        raise CacheError(f"{path}: malformed cache index ({exc}); re-run `vitlens prepare`") from exc


class CachedPoints:
    """Random access to a prepared cache: ``ds[i] -> (points, label, name)``, shards memory-mapped."""

    def __init__(self, dest: str | Path) -> None:
        self.root = Path(dest)
        self.index = read_index(self.root)
        self._offsets = np.cumsum([0] + [s["count"] for s in self.index.shards])
        self._names: list[str] = []
        for s in self.index.shards:
            self._names.extend(json.loads((self.root / s["names"]).read_text()))
        self._labels = np.concatenate([np.load(self.root / s["labels"]) for s in self.index.shards]) \
            if self.index.shards else np.zeros(0, np.int64)
        self._points: list[np.ndarray | None] = [None] * len(self.index.shards)

    def __len__(self) -> int:
        return self.index.count

    @property
    def labels(self) -> np.ndarray:
        return self._labels

    @property
    def names(self) -> list[str]:
        return self._names

    def __getitem__(self, i: int) -> tuple[np.ndarray, int, str]:
        if not 0 <= i < len(self):
            raise IndexError(i)
        shard = int(np.searchsorted(self._offsets, i, side="right") - 1)
        if self._points[shard] is None:  # opened lazily so each DataLoader worker maps its own view
            self._points[shard] = np.load(self.root / self.index.shards[shard]["points"], mmap_mode="r")
        row = i - int(self._offsets[shard])
        return np.array(self._points[shard][row]), int(self._labels[i]), self._names[i]

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_points"] = [None] * len(self._points)
        return state

