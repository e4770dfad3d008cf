"""The on-disk index: Parquet shards of embeddings, a FAISS file over all rows, and ``index.json`` last.

Layout of ``INDEX/``::

    index.json                         format, model record, settings, ordered shard list, ANN record
    shards/shard-NNNNN-<key>.parquet   one per chunk of input files: manifest columns + embedding
    ann.faiss                          FAISS index over the rows of every shard, in shard order

``index.json`` is written last and atomically, and names every file it relies on with its size and
sha256, so a reader sees the previous index or the new one. Shards are written atomically as they
finish and named by a key over their inputs, the model and the settings: a re-run finds the finished
ones and embeds only the rest (resume), and files no ``index.json`` names are removed only after a
new ``index.json`` is in place.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import write_atomic, write_text_atomic
from ..errors import VitlensError

FORMAT = "vitlens-index/1"
INDEX_FILE = "index.json"
ANN_FILE = "ann.faiss"
SHARD_DIR = "shards"
META_KEY = b"vitlens"
# The manifest columns every row carries; ``embedding`` is a fixed-size float32 list beside them.
COLUMNS = ("path", "sha256", "modality", "item", "preprocessing", "model")


class IndexStoreError(VitlensError):
    """An index folder is missing, incomplete, corrupted or from another model."""

    def __init__(self, subject: object, reason: str) -> None:
        super().__init__(f"{subject}: {reason}")
        self.subject = subject
        self.reason = reason


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def json_key(obj: Any) -> str:
    """A stable digest of a JSON-able value (keys sorted)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass
class ShardRows:
    """The rows of one shard: manifest columns and their embeddings ``(n, dim)`` float32."""

    columns: dict[str, list[str]]
    embeddings: np.ndarray
    key: str = ""
    failures: list[dict[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.embeddings)


def _schema(dim: int):
    import pyarrow as pa

    return pa.schema([*(pa.field(c, pa.string()) for c in COLUMNS),
                      pa.field("embedding", pa.list_(pa.float32(), dim))])


def write_shard(path: Path, rows: ShardRows, dim: int, row_group: int = 1024) -> None:
    """Write a shard atomically, in row groups so a reader can stream it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    emb = np.ascontiguousarray(rows.embeddings, dtype=np.float32).reshape(-1, dim)
    flat = pa.array(emb.reshape(-1), type=pa.float32())
    arrays = [pa.array(rows.columns[c], type=pa.string()) for c in COLUMNS]
    arrays.append(pa.FixedSizeListArray.from_arrays(flat, dim))
    meta = {"key": rows.key, "failures": rows.failures, "format": FORMAT}
    schema = _schema(dim).with_metadata({META_KEY: json.dumps(meta).encode()})
    table = pa.Table.from_arrays(arrays, schema=schema)
    write_atomic(path, lambda p: pq.write_table(table, p, row_group_size=row_group))


def shard_meta(path: Path) -> dict[str, Any] | None:
    """The vitlens metadata of a shard file, or ``None`` when it is not a readable shard."""
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
        raw = (schema.metadata or {}).get(META_KEY)
        meta = json.loads(raw) if raw else None
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("format") == FORMAT else None


def read_shard(path: Path, dim: int, *, embeddings: bool = True) -> ShardRows:
    import pyarrow.parquet as pq

    columns = list(COLUMNS) + (["embedding"] if embeddings else [])
    try:
        table = pq.read_table(path, columns=columns)
        meta = json.loads(table.schema.metadata[META_KEY])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise IndexStoreError(path, f"corrupted shard ({_short(exc)}); rebuild with `vitlens index build`") from None
    cols = {c: table.column(c).to_pylist() for c in COLUMNS}
    if embeddings:
        col = table.column("embedding").combine_chunks()
        if col.type.list_size != dim:
            raise IndexStoreError(path, f"corrupted shard (embedding width {col.type.list_size}, index says {dim})")
        emb = col.values.to_numpy(zero_copy_only=False).reshape(-1, dim)
    else:
        emb = np.zeros((table.num_rows, 0), dtype=np.float32)
    return ShardRows(cols, emb, meta.get("key", ""), list(meta.get("failures", [])))


def _short(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__


def shard_name(position: int, key: str) -> str:
    return f"{SHARD_DIR}/shard-{position:05d}-{key[:16]}.parquet"


def shard_position(name: str) -> int:
    return int(Path(name).name.split("-")[1])


@dataclass
class IndexRecord:
    """What ``index.json`` holds."""

    model: dict[str, Any]
    dim: int
    settings: dict[str, Any]
    shards: list[dict[str, Any]]
    ann: dict[str, Any]
    failures: list[dict[str, str]] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(s["rows"] for s in self.shards)

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, "rows": self.rows, "dim": self.dim, "model": self.model,
                           "settings": self.settings, "shards": self.shards, "ann": self.ann,
                           "failures": self.failures}, indent=2)


def read_record(folder: Path) -> IndexRecord:
    """``index.json`` of ``folder``, checked against the files it names (sizes; sha256 with :func:`verify`)."""
    folder = Path(folder)
    if not folder.exists():
        raise IndexStoreError(folder, "no such index folder")
    if not folder.is_dir():
        raise IndexStoreError(folder, "not an index folder (it is a file)")
    path = folder / INDEX_FILE
    if not path.is_file():
        hint = ("an interrupted build; run `vitlens index build` again to resume"
                if (folder / SHARD_DIR).is_dir() else "not a vitlens index (build one with `vitlens index build`)")
        raise IndexStoreError(folder, f"no {INDEX_FILE}: {hint}")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise IndexStoreError(path, "corrupted (not JSON); rebuild with `vitlens index build`") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        found = raw.get("format") if isinstance(raw, dict) else None
        raise IndexStoreError(path, f"not a {FORMAT} index (format {found!r})")
    try:
        record = IndexRecord(model=dict(raw["model"]), dim=int(raw["dim"]), settings=dict(raw["settings"]),
                             shards=[dict(s) for s in raw["shards"]], ann=dict(raw["ann"]),
                             failures=list(raw.get("failures", [])))
        for entry in [*record.shards, record.ann]:
            _check_file(folder, entry)
    except (KeyError, TypeError, ValueError) as exc:
        raise IndexStoreError(path, f"corrupted (missing or bad field {_short(exc)})") from None
    return record


def _check_file(folder: Path, entry: dict[str, Any]) -> None:
    target = folder / entry["file"]
    if not target.is_file():
        raise IndexStoreError(target, f"missing: {INDEX_FILE} names it; rebuild with `vitlens index build`")
    if target.stat().st_size != int(entry["bytes"]):
        raise IndexStoreError(target, f"corrupted (size differs from {INDEX_FILE}); rebuild with `vitlens index build`")


def verify(folder: Path, record: IndexRecord) -> None:
    """Check every file's sha256 against ``index.json`` (reads everything once)."""
    for entry in [*record.shards, record.ann]:
        target = Path(folder) / entry["file"]
        if file_sha256(target) != entry["sha256"]:
            raise IndexStoreError(target, f"corrupted (sha256 differs from {INDEX_FILE}); "
                                          "rebuild with `vitlens index build`")


def file_entry(folder: Path, name: str, **extra: Any) -> dict[str, Any]:
    target = Path(folder) / name
    return {"file": name, "bytes": target.stat().st_size, "sha256": file_sha256(target), **extra}


def write_record(folder: Path, record: IndexRecord) -> None:
    write_text_atomic(Path(folder) / INDEX_FILE, record.to_json())


def remove_unreferenced(folder: Path, keep: Iterable[str]) -> None:
    """Shards no ``index.json`` names, and temporary files of killed writers (the caller holds the lock)."""
    keep = set(keep)
    shard_dir = Path(folder) / SHARD_DIR
    for path in [*shard_dir.glob("*"), *Path(folder).glob(".*.tmp")]:
        rel = path.relative_to(folder).as_posix()
        if path.is_file() and rel not in keep:
            path.unlink(missing_ok=True)


def manifest_columns(rows: Sequence[dict[str, str]]) -> dict[str, list[str]]:
    return {c: [str(r[c]) for r in rows] for c in COLUMNS}
