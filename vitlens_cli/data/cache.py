"""The prepared-dataset cache: fixed-size ``.npy`` shards plus a versioned ``index.json``.

One format serves every modality: a 3D cache holds point clouds ``(num_points, channels)`` that eval samples
as each model card asks; a cache of another modality (``index.modality``) holds its items already through
the modality plug-in's preprocessing (``index.item_shape``, e.g. ``(3, 512, 128)`` audio fbanks), with the
contract they were prepared under in ``index.contract`` so eval can refuse a model that expects another.

A cache is built in ``<dest>.partial/``: each shard is written atomically, so a re-run after an interruption
keeps the finished shards and redoes only the rest (``build.json`` there records which source they came from;
a run over another source starts afresh). Committing moves the finished folder into ``<dest>`` under a fresh
name (``data-<random>/``) and then replaces ``<dest>/index.json``, which names those shards: the index is the
one commit point, so a reader (or a run killed at any moment) sees the previous complete cache or the new
one, never a mix. Shards no index names are removed afterwards. ``eval`` and ``train`` read caches
memory-mapped, after :func:`check_cache` has checked every shard against the index.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import stat
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from ..atomic import write_atomic, write_text_atomic
from ..errors import VitlensError

CACHE_FORMAT = "vitlens-cache/1"
INDEX_NAME = "index.json"
BUILD_NAME = "build.json"
SHARD_SIZE = 512
#: A contract field a benchmark sets per item (SUN RGB-D's sensor baseline and focal length): not compared.
PER_ITEM = "per item"
_RERUN = "re-run `vitlens prepare`"


class CacheError(VitlensError):
    """A prepared dataset is missing, incomplete, damaged or of another format version."""


class SkipItem(VitlensError):
    """Raised by a ``make`` function for an unreadable item: it is left out and reported, not fatal."""


@dataclass
class CacheIndex:
    """What a cache holds and how it is scored.

    ``classes`` are the classes labels index and metrics report. ``prompts`` (when not empty) are the class
    names the text classifier is built from and ``prompt_to_class`` maps each to its class: NYU-D prompts 16
    scene names and scores 10, seven of them counting as "others". ``groups`` assigns items (by name) to
    named groups reported apart, e.g. ``{"fold": {"1-100032-A-0.wav": "1", ...}}`` for ESC-50's folds.
    Non-3D caches set ``num_points = channels = 0`` and ``up_axis = ""``.
    """

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
    # Identifies the release the cache was built from (size and mtime of an archive, or a folder's listing):
    # a different one means the cache is rebuilt rather than reused.
    source_key: str = ""
    modality: str = "3d"
    item_shape: list[int] = field(default_factory=list)
    contract: dict = field(default_factory=dict)
    prompts: list[str] = field(default_factory=list)
    prompt_to_class: list[int] = field(default_factory=list)
    groups: dict[str, dict[str, str]] = field(default_factory=dict)

    @classmethod
    def for_tensors(cls, benchmark: str, variant: str | None, classes: list[str], modality: str,
                    item_shape: Sequence[int], contract: dict, protocol: str, **kw: object) -> CacheIndex:
        """The index of a cache of preprocessed ``modality`` items of ``item_shape``."""
        return cls(benchmark, variant, list(classes), 0, 0, "", protocol, modality=modality,
                   item_shape=[int(d) for d in item_shape], contract=dict(contract), **kw)

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of one stored item."""
        return tuple(self.item_shape) if self.item_shape else (self.num_points, self.channels)

    @property
    def prompt_names(self) -> list[str]:
        """The class names the text classifier is built from."""
        return list(self.prompts) if self.prompts else list(self.classes)


@dataclass
class Sample:
    """One item to store: its array (points ``(num_points, channels)``, or a preprocessed tensor of the index's
    ``item_shape``), class index and a stable name."""

    points: np.ndarray
    label: int
    name: str


@dataclass(frozen=True)
class ItemProgress:
    """An ``on_item`` that is also told how many items there are, once, before the first (for a bar's total).

    Readers pass it on as any ``on_item``; whichever stage first knows the count tells it through :func:`plan`.
    """

    on_item: Callable[[int, bool], None]
    on_plan: Callable[[int], None]

    def __call__(self, i: int, skipped: bool) -> None:
        self.on_item(i, skipped)


def plan(on_item: Callable[[int, bool], None] | None, total: int) -> None:
    """Tell ``on_item`` the number of items to come, when it is an :class:`ItemProgress` (plain callbacks
    have no total to take)."""
    if isinstance(on_item, ItemProgress):
        on_item.on_plan(total)


def is_complete(dest: Path) -> bool:
    return (Path(dest) / INDEX_NAME).is_file()


def build_cache(dest: Path, index: CacheIndex, names: Sequence[str],
                make: Callable[[int], Sample], *, on_item: Callable[[int, bool], None] | None = None) -> CacheIndex:
    """Build ``dest`` from ``make(i)`` for every item ``i`` of ``names`` (a deterministic order).

    Returns the existing index untouched when the cache is complete, undamaged and from the same
    ``index.source_key``. ``on_item(i, skipped)`` reports progress; items of shards finished by an earlier
    run are reported as skipped. Items whose ``make`` raises :class:`SkipItem` are left out and listed in
    ``index.skipped`` with the reason.
    """
    dest = Path(dest)
    current = valid_index(dest)
    if current is not None and current.source_key == index.source_key:
        return current
    work = dest.with_name(dest.name + ".partial")
    _open_work(work, index.source_key)
    plan(on_item, len(names))
    shards, skipped_all = [], []
    for start in range(0, len(names), SHARD_SIZE):
        stop = min(start + SHARD_SIZE, len(names))
        stem = f"shard-{start // SHARD_SIZE:05d}"
        files = {"points": f"{stem}.points.npy", "labels": f"{stem}.labels.npy",
                 "skipped": f"{stem}.skipped.json", "names": f"{stem}.names.json"}
        done = _shard_done(work, files, names[start:stop], index.shape)
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
                    if tuple(sample.points.shape) != index.shape:
                        raise CacheError(f"{names[i]}: prepared item has shape {tuple(sample.points.shape)}, "
                                         f"expected {index.shape}")
                    samples.append(sample)
                if on_item:
                    on_item(i, False)
            pts = np.stack([np.asarray(s.points) for s in samples]).astype(np.float32) if samples else \
                np.zeros((0, *index.shape), np.float32)
            write_atomic(work / files["points"], lambda p: _save(p, pts))
            write_atomic(work / files["labels"], lambda p: _save(p, np.array([s.label for s in samples], np.int64)))
            write_text_atomic(work / files["skipped"], json.dumps(skipped))
            # names last: its presence marks the shard as finished
            write_text_atomic(work / files["names"], json.dumps([s.name for s in samples]))
            kept = len(samples)
        skipped_all.extend(skipped)
        shards.append({**files, "count": kept})
    index.skipped = skipped_all
    index.count = sum(s["count"] for s in shards)
    _commit(dest, work, index, shards)
    return index


def _open_work(work: Path, source_key: str) -> None:
    """The build folder, emptied first if an earlier run left it for another source (or left no record)."""
    if work.is_dir() and not work.is_symlink():
        try:
            build = json.loads((work / BUILD_NAME).read_text(encoding="utf-8"))
            same = isinstance(build, dict) and build.get("format") == CACHE_FORMAT and \
                build.get("source_key") == source_key
        except (OSError, ValueError):
            same = False
        if same:
            return
        shutil.rmtree(work)
    elif work.exists() or work.is_symlink():
        work.unlink()
    work.mkdir(parents=True)
    write_text_atomic(work / BUILD_NAME, json.dumps({"format": CACHE_FORMAT, "source_key": source_key}))


def _commit(dest: Path, work: Path, index: CacheIndex, shards: list[dict]) -> None:
    if dest.exists() and not dest.is_dir():
        raise CacheError(f"{dest}: exists and is not a folder; move it away and {_RERUN}")
    dest.mkdir(parents=True, exist_ok=True)
    data = f"data-{secrets.token_hex(4)}"
    for leftover in work.glob(".*.tmp"):  # atomic-write temp files of a run killed mid-write
        leftover.unlink()
    (work / BUILD_NAME).unlink(missing_ok=True)
    os.rename(work, dest / data)
    index.shards = [{k: (f"{data}/{v}" if isinstance(v, str) else v) for k, v in s.items()} for s in shards]
    write_text_atomic(dest / INDEX_NAME, json.dumps(asdict(index), indent=1))
    tidy(dest, index)


def tidy(dest: Path, index: CacheIndex) -> None:
    """Remove what a cache folder holds beyond ``index``: shards of replaced builds, temp files of killed runs."""
    keep = {Path(s[k]).parts[0] for s in index.shards for k in ("points", "labels", "names", "skipped") if k in s}
    for entry in Path(dest).iterdir():
        if entry.name == INDEX_NAME or entry.name in keep:
            continue
        ours = entry.name.startswith(("data-", "shard-")) or \
            (entry.name.startswith(f".{INDEX_NAME}.") and entry.name.endswith(".tmp"))
        if not ours:
            continue  # not written by vitlens: leave it alone
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def _shard_done(work: Path, files: dict[str, str], names: Sequence[str],
                point_shape: tuple[int, ...]) -> tuple[int, list[dict]] | None:
    """``(kept count, skipped items)`` of a shard an earlier run finished for exactly these items, else None."""
    if not all((work / f).is_file() for f in files.values()):
        return None
    try:
        skipped = json.loads((work / files["skipped"]).read_text())
        left_out = {s["name"] for s in skipped}
        kept = json.loads((work / files["names"]).read_text())
        if kept != [n for n in names if n not in left_out] or len(kept) + len(skipped) != len(names):
            return None
        _check_npy(work / files["points"], (len(kept), *point_shape), np.float32)
        _check_npy(work / files["labels"], (len(kept),), np.int64)
    except (OSError, ValueError, TypeError, KeyError, CacheError):
        return None
    return len(kept), skipped


def _save(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as fh:
        np.save(fh, array)


def read_index(dest: Path) -> CacheIndex:
    """The index of a complete cache, with every field of the type it must have."""
    path = Path(dest) / INDEX_NAME
    if not path.is_file():
        partial = Path(dest).with_name(Path(dest).name + ".partial")
        hint = " (an interrupted run left a .partial folder: re-run `vitlens prepare`)" if partial.exists() else ""
        raise CacheError(f"{dest}: no prepared dataset here{hint}; run `vitlens prepare` first")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CacheError(f"{path}: unreadable cache index ({exc}); {_RERUN}") from exc
    if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT:
        found = data.get("format") if isinstance(data, dict) else None
        raise CacheError(f"{path}: cache format {found!r}, this version reads {CACHE_FORMAT!r}; {_RERUN}")
    known = {f.name for f in fields(CacheIndex)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise CacheError(f"{path}: unknown key(s) {', '.join(unknown)}; {_RERUN}")
    try:
        index = CacheIndex(**data)
    except TypeError as exc:
        raise CacheError(f"{path}: malformed cache index ({exc}); {_RERUN}") from exc
    _check_types(path, index)
    return index


def _check_types(path: Path, index: CacheIndex) -> None:
    def bad(key: str, want: str) -> CacheError:
        return CacheError(f"{path}: '{key}' must be {want}, got {getattr(index, key)!r:.80}; {_RERUN}")

    def count(v: object) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= 0

    for key in ("benchmark", "up_axis", "protocol", "source", "source_key", "modality"):
        if not isinstance(getattr(index, key), str):
            raise bad(key, "a string")
    if index.variant is not None and not isinstance(index.variant, str):
        raise bad("variant", "a string or null")
    if not isinstance(index.classes, list) or not index.classes or \
            not all(isinstance(c, str) for c in index.classes):
        raise bad("classes", "a non-empty list of class names")
    if index.item_shape:
        if not isinstance(index.item_shape, list) or not all(count(d) and d > 0 for d in index.item_shape):
            raise bad("item_shape", "a list of positive integers")
    else:
        for key in ("num_points", "channels"):
            if not count(getattr(index, key)) or getattr(index, key) == 0:
                raise bad(key, "a positive integer")
    if not isinstance(index.contract, dict):
        raise bad("contract", "an object")
    if not isinstance(index.prompts, list) or not all(isinstance(p, str) for p in index.prompts):
        raise bad("prompts", "a list of class names")
    if index.prompts:
        mapping = index.prompt_to_class
        if not isinstance(mapping, list) or len(mapping) != len(index.prompts) or \
                not all(count(c) and c < len(index.classes) for c in mapping):
            raise bad("prompt_to_class", f"one class index (0..{len(index.classes) - 1}) per prompt")
    elif index.prompt_to_class:
        raise bad("prompt_to_class", "empty when there are no prompts")
    if not isinstance(index.groups, dict) or not all(
            isinstance(k, str) and isinstance(g, dict) and all(isinstance(n, str) and isinstance(v, str)
                                                               for n, v in g.items())
            for k, g in index.groups.items()):
        raise bad("groups", "an object of {group name: {item name: group}}")
    if not count(index.count):
        raise bad("count", "a non-negative integer")
    if not isinstance(index.skipped, list):
        raise bad("skipped", "a list")
    if not isinstance(index.shards, list):
        raise bad("shards", "a list")
    for n, shard in enumerate(index.shards):
        ok = isinstance(shard, dict) and count(shard.get("count")) and \
            all(isinstance(shard.get(k), str) for k in ("points", "labels", "names"))
        if not ok:
            raise CacheError(f"{path}: shard {n} must name its points, labels and names files and hold a "
                             f"count; {_RERUN}")
    total = sum(s["count"] for s in index.shards)
    if total != index.count:
        raise CacheError(f"{path}: says {index.count} items but its shards hold {total}; {_RERUN}")


def _shard_file(dest: Path, rel: str) -> Path:
    """A file an index names: inside the cache folder, and a regular file (a FIFO would block ``np.load``)."""
    parts = Path(rel).parts
    path = Path(dest) / rel
    if not parts or Path(rel).is_absolute() or ".." in parts:
        raise CacheError(f"{dest / INDEX_NAME}: names {rel!r}, a file outside the cache; {_RERUN}")
    try:
        st = os.stat(path)
    except OSError:
        raise CacheError(f"{path}: shard file missing; {_RERUN}") from None
    if not stat.S_ISREG(st.st_mode):
        raise CacheError(f"{path}: not a regular file; {_RERUN}")
    return path


def _check_npy(path: Path, shape: tuple[int, ...], dtype: type) -> None:
    """The ``.npy`` header says ``shape``/``dtype`` and the file holds exactly that many bytes."""
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                np.lib.format.read_array_header_2_0
            got_shape, fortran, got_dtype = read(fh)
            offset = fh.tell()
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise CacheError(f"{path}: not a readable .npy shard ({exc}); {_RERUN}") from None
    if got_dtype != np.dtype(dtype) or tuple(got_shape) != tuple(shape) or fortran:
        raise CacheError(f"{path}: holds {got_dtype} {tuple(got_shape)}, the index says {np.dtype(dtype)} "
                         f"{tuple(shape)}; {_RERUN}")
    expected = offset + int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    size = path.stat().st_size
    if size != expected:
        raise CacheError(f"{path}: {size} bytes, {expected} expected (truncated or padded); {_RERUN}")


def check_cache(dest: Path) -> tuple[CacheIndex, list[str], np.ndarray]:
    """Index, names and labels of a complete cache, every shard checked against the index.

    A :class:`CacheError` names the first file that does not fit (missing or truncated shard, counts or
    shapes the index gets wrong, labels outside the class list, an index of another version).
    """
    dest = Path(dest)
    index = read_index(dest)
    names: list[str] = []
    labels = []
    for shard in index.shards:
        n = shard["count"]
        _check_npy(_shard_file(dest, shard["points"]), (n, *index.shape), np.float32)
        labels_path = _shard_file(dest, shard["labels"])
        _check_npy(labels_path, (n,), np.int64)
        names_path = _shard_file(dest, shard["names"])
        try:
            shard_names = json.loads(names_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CacheError(f"{names_path}: unreadable ({exc}); {_RERUN}") from None
        if not isinstance(shard_names, list) or len(shard_names) != n or \
                not all(isinstance(s, str) for s in shard_names):
            raise CacheError(f"{names_path}: expected a list of {n} names; {_RERUN}")
        shard_labels = np.load(labels_path)
        if n and (shard_labels.min() < 0 or shard_labels.max() >= len(index.classes)):
            raise CacheError(f"{labels_path}: labels outside 0..{len(index.classes) - 1}; {_RERUN}")
        names.extend(shard_names)
        labels.append(shard_labels)
    return index, names, np.concatenate(labels) if labels else np.zeros(0, np.int64)


def valid_index(dest: Path) -> CacheIndex | None:
    """The index of a complete, undamaged cache at ``dest``, else None (absent, interrupted or damaged)."""
    if not is_complete(dest):
        return None
    try:
        return check_cache(dest)[0]
    except CacheError:
        return None


class CachedPoints:
    """Random access to a prepared cache of any modality: ``ds[i] -> (array, label, name)`` (points for 3D, a
    preprocessed tensor otherwise), shards memory-mapped."""

    def __init__(self, dest: str | Path) -> None:
        self.root = Path(dest)
        self.index, self._names, self._labels = check_cache(self.root)
        self._offsets = np.cumsum([0] + [s["count"] for s in self.index.shards])
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
