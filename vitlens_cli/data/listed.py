"""Benchmarks defined by a list of files (Clotho, AudioCaps, AudioSet, VGGSound): prepare finds each listed
file in the user's copy, eval reads the files where they are.

The official lists name paths relative to the data root the authors used (``clotho/audio/evaluation/1.flac``);
a user's copy is the extracted archive, one folder above or below it, or a partial copy (AudioSet and VGGSound
videos keep disappearing from YouTube). So a listed path is looked up by its trailing components in one walk of
the release folder: the copy whose path ends with the most of them wins (at least ``min_parts`` of them, so
Clotho's ``evaluation/1.flac`` is never taken for ``validation/1.flac``).

Prepare writes ``<root>/<benchmark>-<split>/presence.csv`` (``id,expected_path,present,path,reason``: one row
per listed file, ``present`` 1 with where it was found or 0 with why not: not found, not a regular file, empty)
and then ``benchmark.json`` (the commit point): the list with the resolved
absolute path of every present file, the class names, the protocol and the release's identity. Decoding is left
to eval, which reports the files that fail to decode.
"""
from __future__ import annotations

import csv
import io
import json
import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..atomic import write_text_atomic
from ..errors import VitlensError, os_reason
from .cache import plan
from .inputs import special_kind

FORMAT = "vitlens-listed/1"
MANIFEST = "benchmark.json"
PRESENCE_CSV = "presence.csv"
PRESENCE_HEADER = ("id", "expected_path", "present", "path", "reason")


@dataclass
class ListedItem:
    """One listed file: its id in the list, the path the list gives, and where it was found (``None``: missing).

    ``labels`` are class indices (classification, multi-label); ``captions`` its captions (retrieval).
    """

    id: str
    expected: str
    path: str | None = None
    reason: str | None = None
    labels: list[int] = field(default_factory=list)
    captions: list[str] = field(default_factory=list)


@dataclass
class Listed:
    """A prepared list benchmark, as ``benchmark.json`` stores it."""

    benchmark: str
    split: str
    task: str  # "retrieval", "multilabel" or "classification"
    protocol: dict[str, Any]
    source: str
    source_key: str
    items: list[ListedItem]
    classes: list[str] = field(default_factory=list)
    modality: str = "audio"
    templates: str = ""  # the name of the official prompt set in meta/templates.json (classification)
    format: str = FORMAT

    @property
    def present(self) -> list[ListedItem]:
        return [item for item in self.items if item.path is not None]

    @property
    def missing(self) -> list[ListedItem]:
        return [item for item in self.items if item.path is None]


class FileIndex:
    """Every regular file under ``root`` by name, from one walk (sorted, so look-ups are deterministic)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.by_name: dict[str, list[tuple[str, ...]]] = {}
        for folder, dirs, files in os.walk(self.root):
            dirs.sort()
            rel = Path(folder).relative_to(self.root).parts
            for name in sorted(files):
                self.by_name.setdefault(name, []).append((*rel, name))

    def find(self, listed: str, min_parts: int = 1) -> tuple[Path | None, str | None]:
        """The copy of ``listed`` (a relative path) under the root, or ``(None, why not)``."""
        want = Path(listed.replace("\\", "/")).parts
        if not want:
            return None, "empty path in the list"
        need = min(min_parts, len(want))
        best, best_len = None, 0
        for parts in self.by_name.get(want[-1], ()):
            n = 0
            while n < min(len(parts), len(want)) and parts[-1 - n] == want[-1 - n]:
                n += 1
            if n >= need and n > best_len:
                best, best_len = parts, n
        if best is None:
            return None, "not found"
        path = self.root.joinpath(*best)
        try:
            st = os.stat(path)
        except OSError as exc:
            return None, os_reason(exc, path)
        if not stat.S_ISREG(st.st_mode):
            return None, f"not a regular file ({special_kind(st.st_mode) or 'a folder'})"
        if st.st_size == 0:
            return None, "empty file"
        return path, None


def find_file(root: Path, names: Sequence[str]) -> Path | None:
    """The shallowest file under ``root`` named one of ``names`` (earlier names first at equal depth)."""
    hits = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for rank, name in enumerate(names):
            if name in files:
                hits.append((len(Path(folder).relative_to(root).parts), rank, Path(folder) / name))
    return min(hits)[2] if hits else None


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except OSError as exc:
        raise VitlensError(f"{path}: {os_reason(exc, path)}") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise VitlensError(f"{path}: not valid JSON ({exc})") from None


def read_json_list(path: Path, what: str) -> list:
    """A JSON file that must hold a list (of ``what``, for the error)."""
    data = read_json(path)
    if not isinstance(data, list):
        raise VitlensError(f"{path}: expected a JSON list of {what}, found {type(data).__name__}")
    return data


def read_table(path: Path, delimiter: str, required: Sequence[str]) -> list[tuple[int, dict[str, str]]]:
    """``(line number, row)`` of a CSV/TSV with a header that holds ``required``; empty lines skipped."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise VitlensError(f"{path}: {os_reason(exc, path)}") from None
    except UnicodeDecodeError as exc:
        raise VitlensError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    rows: list[tuple[int, dict[str, str]]] = []
    header: list[str] | None = None
    try:
        for cells in reader:
            if not cells or not "".join(cells).strip():
                continue
            cells = [c.strip() for c in cells]
            if header is None:
                header = cells
                lacking = [c for c in required if c not in header]
                if lacking:
                    raise VitlensError(f"{path}:{reader.line_num}: no column '{lacking[0]}' in the header "
                                       f"{delimiter.join(header)[:100]!r} (expected {', '.join(required)})")
                continue
            if len(cells) != len(header):
                raise VitlensError(f"{path}:{reader.line_num}: {len(cells)} field(s) but the header has "
                                   f"{len(header)}")
            rows.append((reader.line_num, dict(zip(header, cells))))
    except csv.Error as exc:
        raise VitlensError(f"{path}:{reader.line_num}: not a readable table ({exc})") from None
    if header is None:
        raise VitlensError(f"{path}: empty; expected the header {delimiter.join(required)}")
    return rows


def locate(items: list[ListedItem], find: Callable[[ListedItem], tuple[Path | None, str | None]],
           on_item: Callable[[int, bool], None] | None = None) -> None:
    """Fill ``path`` / ``reason`` of every item with ``find(item)``; ``on_item(i, missing)`` reports progress
    (an :class:`ItemProgress` is told the count first)."""
    plan(on_item, len(items))
    for i, item in enumerate(items):
        path, reason = find(item)
        item.path, item.reason = (None if path is None else str(path)), reason
        if on_item is not None:
            on_item(i, path is None)


def check_ids(items: Sequence[ListedItem], where: Path) -> None:
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise VitlensError(f"{where}: clip id '{item.id}' is listed twice")
        seen.add(item.id)


def write_listed(dest: Path, listed: Listed) -> None:
    """``presence.csv`` first, then ``benchmark.json``: a reader never sees a manifest without its CSV."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(PRESENCE_HEADER)
    for item in listed.items:
        writer.writerow((item.id, item.expected, int(item.path is not None), item.path or "", item.reason or ""))
    write_text_atomic(dest / PRESENCE_CSV, buf.getvalue())
    write_text_atomic(dest / MANIFEST, json.dumps(asdict(listed), indent=1, ensure_ascii=False) + "\n")


def read_listed(dest: Path) -> Listed | None:
    """The prepared list in ``dest``, or ``None`` if there is none of this format (never prepared, or older)."""
    path = Path(dest) / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return None
    try:
        items = [ListedItem(**item) for item in data.pop("items")]
        return Listed(items=items, **data)
    except TypeError:
        return None


def open_listed(dest: Path, name: str) -> Listed:
    """The prepared list for eval; an error naming ``vitlens prepare`` when there is none."""
    listed = read_listed(dest)
    if listed is None:
        raise VitlensError(f"{dest}: {name} is not prepared; run `vitlens prepare {name} --from <archive or "
                           "folder>`")
    if not listed.present:
        raise VitlensError(f"{dest}: none of the {len(listed.items)} listed files was found when it was prepared "
                           f"(see {dest / PRESENCE_CSV})")
    return listed


class ListedFiles:
    """``ds[i] -> (what the modality plug-in reads from the file, label, path)`` over the files found.

    ``label`` is the class index (single-label lists) or, for a multi-label list, the index of the item in
    ``labels`` (``ds.labels[i]`` holds its classes); unreadable files raise the plug-in's error, which eval
    reports as skipped.
    """

    def __init__(self, listed: Listed) -> None:
        if listed.task == "retrieval":
            raise VitlensError(f"{listed.benchmark} is a retrieval benchmark, not classification")
        self.listed = listed
        self.modality = listed.modality
        self.items = listed.present
        self.names = [item.path for item in self.items]
        self.labels = [list(item.labels) for item in self.items]
        self.multilabel = listed.task == "multilabel"

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[Any, int, str]:
        from ..modalities import get_modality

        item = self.items[i]
        raw = get_modality(self.modality).read(Path(item.path))
        return raw, (i if self.multilabel else item.labels[0]), item.path
