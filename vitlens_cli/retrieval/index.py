"""The Python face of retrieval: :class:`Index` (``build`` / ``add`` / ``search``), results as pandas DataFrames.

    from vitlens_cli.retrieval import Index
    index = Index.build(["shapes/", "sounds/"], "my-index", model="tiny")
    hits = index.search(text="a red chair", k=5)              # DataFrame: query, rank, score, path, …
    hits = index.search(file="chair.ply", modality="3d")
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import VitlensError
from . import ann, store
from .build import BuildOptions, BuildReport, build_index
from .model_ref import ModelRef, describe, fingerprint
from .sources import EmbedSettings, Failure, Source, check_modality, embed_sources, modality_of

if TYPE_CHECKING:
    import pandas as pd

QUERY_KINDS = ("text", "image", "file")
AUTO_VERIFY_BYTES = 256 << 20
RESULT_COLUMNS = ["query", "kind", "rank", "score", "path", "item", "modality", "sha256", "row"]


@dataclass(frozen=True)
class Query:
    """One query: ``text`` (a prompt), ``image`` (a picture) or ``file`` (any indexed modality)."""

    kind: str
    value: str

    def __post_init__(self) -> None:
        if self.kind not in QUERY_KINDS:
            raise VitlensError(f"{self.kind}: unknown query kind (one of {', '.join(QUERY_KINDS)})")


@dataclass
class SearchResult:
    hits: pd.DataFrame
    failures: list[Failure] = field(default_factory=list)
    queries: list[str] = field(default_factory=list)


def read_queries(path: str | Path) -> list[Query]:
    """A queries file: one per line, ``text: …``, ``image: PATH`` or ``file: PATH`` (a bare line is text).

    Blank lines and lines starting with ``#`` are skipped; relative paths are relative to the file's folder.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise VitlensError(f"{path}: queries file not found") from None
    except IsADirectoryError:
        raise VitlensError(f"{path}: queries file is a folder") from None
    except UnicodeDecodeError:
        raise VitlensError(f"{path}: queries file is not UTF-8 text") from None
    except OSError as exc:
        raise VitlensError(f"{path}: cannot read the queries file ({exc.strerror or exc})") from None
    queries = []
    for line in lines:
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        kind, sep, rest = text.partition(":")
        if sep and kind.strip().lower() in QUERY_KINDS and rest.strip():
            kind, value = kind.strip().lower(), rest.strip()
            if kind != "text" and not Path(value).is_absolute():
                value = str(path.parent / value)
            queries.append(Query(kind, value))
        else:
            queries.append(Query("text", text))
    if not queries:
        raise VitlensError(f"{path}: queries file holds no queries")
    return queries


class Index:
    """An index folder written by :meth:`build` (or ``vitlens index build``)."""

    def __init__(self, folder: str | Path, *, verify: bool | None = None) -> None:
        """``verify``: check every file's sha256; by default only for indexes of up to 256 MiB (instant),
        larger ones are checked for sizes and readability (``vitlens index info`` verifies them in full)."""
        self.folder = Path(folder)
        self.record = store.read_record(self.folder)
        if verify is None:
            verify = sum(int(e["bytes"]) for e in [*self.record.shards, self.record.ann]) <= AUTO_VERIFY_BYTES
        if verify:
            store.verify(self.folder, self.record)
        self._model = None
        self._rows: pd.DataFrame | None = None
        self._ann = None

    # ------------------------------------------------------------------ building
    @classmethod
    def build(cls, inputs: Sequence[str | Path], folder: str | Path, model: str | None = "tiny", *,
              checkpoint: str | Path | None = None, config: str | Path | None = None,
              on_file=None, **options: Any) -> Index:
        """Embed ``inputs`` (files, folders, globs; any modality) into ``folder``; resumes an interrupted build."""
        ref = ModelRef(None if checkpoint else model, None if checkpoint is None else str(checkpoint),
                       None if config is None else str(config))
        report = build_index(inputs, folder, ref, BuildOptions(**options), on_file=on_file)
        index = cls(folder)
        index.last_report = report
        return index

    def add(self, inputs: Sequence[str | Path], on_file=None, **options: Any) -> BuildReport:
        """Append new files; unchanged ones (same path and sha256) are skipped, changed ones replaced."""
        rec = self.record.model
        opts = BuildOptions(**{"ann": self.record.ann["kind"] if self.record.ann["kind"] != "flat" else "auto",
                               "exact_max_rows": self.record.ann["params"].get(
                                   "exact_max_rows", ann.DEFAULT_EXACT_MAX_ROWS), **options})
        report = build_index(inputs, self.folder, ModelRef(rec.get("name"), rec.get("checkpoint"), rec.get("config")),
                             opts, add=True, on_file=on_file)
        self.__init__(self.folder)
        return report

    # ------------------------------------------------------------------ reading
    @property
    def rows(self) -> int:
        return self.record.rows

    def frame(self) -> pd.DataFrame:
        """Every row's manifest columns (no embeddings), in row order."""
        import pandas as pd

        if self._rows is None:
            parts = [store.read_shard(self.folder / s["file"], self.record.dim, embeddings=False).columns
                     for s in self.record.shards]
            cols = {c: [v for p in parts for v in p[c]] for c in store.COLUMNS}
            self._rows = pd.DataFrame(cols, columns=list(store.COLUMNS))
        return self._rows

    def embeddings(self) -> np.ndarray:
        blocks = [store.read_shard(self.folder / s["file"], self.record.dim).embeddings for s in self.record.shards]
        return np.concatenate(blocks) if blocks else np.zeros((0, self.record.dim), np.float32)

    def info(self) -> dict[str, Any]:
        frame = self.frame()
        return {"folder": str(self.folder), "rows": self.rows, "files": int(frame["path"].nunique()),
                "dim": self.record.dim, "model": describe(self.record.model),
                "fingerprint": self.record.model.get("fingerprint"),
                "modalities": {str(k): int(v) for k, v in frame["modality"].value_counts().sort_index().items()},
                "shards": len(self.record.shards), "ann": {"kind": self.record.ann["kind"],
                                                           "params": self.record.ann.get("params", {})},
                "settings": self.record.settings,
                "failures_at_last_build": len(self.record.failures)}

    # ------------------------------------------------------------------ searching
    def model(self, model: str | None = None, *, checkpoint: str | Path | None = None,
              config: str | Path | None = None, device: str = "cpu"):
        """The model the index was built with; another one named here must have the same weights."""
        if self._model is not None and model is None and checkpoint is None:
            return self._model
        rec = self.record.model
        if model is None and checkpoint is None:
            ref = ModelRef(rec.get("name"), rec.get("checkpoint"), rec.get("config"))
        else:
            ref = ModelRef(None if checkpoint else model, None if checkpoint is None else str(checkpoint),
                           None if config is None else str(config))
        net = ref.load(device)
        if fingerprint(net) != rec.get("fingerprint"):
            raise store.IndexStoreError(self.folder, f"was built with model {describe(rec)!r}; "
                                                     f"{describe(ref.to_dict())!r} has other weights "
                                                     "(search with the model recorded in the index)")
        self._model = net
        return net

    def _index(self):
        if self._ann is None:
            self._ann = ann.load(self.folder / store.ANN_FILE, self.record.ann, self.rows, self.record.dim)
        return self._ann

    def encode(self, queries: Sequence[Query]) -> tuple[list[str], np.ndarray, list[tuple[int, str]], list[Failure]]:
        """Query labels, their L2-normalised embeddings, ``(query position, kind)`` per row, and failures."""
        import torch

        model = self.model()
        settings = EmbedSettings(**self.record.settings["embed"])
        labels: list[str] = []
        vectors: list[np.ndarray] = []
        origin: list[tuple[int, str]] = []
        failures: list[Failure] = []
        texts = [(i, q.value) for i, q in enumerate(queries) if q.kind == "text"]
        text_emb: dict[int, np.ndarray] = {}
        if texts:
            if getattr(model, "text", None) is None:
                raise VitlensError(f"{describe(self.record.model)}: this model has no text tower; "
                                   "query with --file or --image")
            with torch.inference_mode():
                emb = model.encode_text([t for _, t in texts], normalize=True).float().cpu().numpy()
            text_emb = {i: row for (i, _), row in zip(texts, emb)}
        # Every file query is read and encoded in one pass (batched; the towers' weights cast once), then its
        # rows are handed back to each query that named the file.
        files: dict[int, Source] = {}
        refused: dict[int, str] = {}  # query position → why its file is not read
        indexed: list[str] | None = None  # the index's modalities, read once if a file query needs them
        for i, q in enumerate(queries):
            if q.kind == "text":
                continue
            path = Path(q.value)
            if not path.is_file():
                refused[i] = "no such file" if not path.exists() else "not a regular file"
                continue
            try:
                if q.kind != "image" and indexed is None:
                    indexed = self._indexed_modalities()
                modality = "image" if q.kind == "image" else modality_of(path, indexed)
            except VitlensError as exc:
                refused[i] = getattr(exc, "reason", str(exc))
                continue
            files[i] = Source(path.absolute(), modality)
        rows, emb, bad = embed_sources(model, list(dict.fromkeys(files.values())), settings) if files else ([], [], [])
        found: dict[tuple[str, str], list[tuple[dict, np.ndarray]]] = {}
        for row, vec in zip(rows, emb):
            found.setdefault((row["path"], row["modality"]), []).append((row, vec))
        reasons = {f.path: f.reason for f in bad}
        for i, q in enumerate(queries):
            if q.kind == "text":
                labels.append(q.value)
                vectors.append(text_emb[i][None])
                origin.append((i, "text"))
            elif i in refused:
                failures.append(Failure(q.value, refused[i]))
            else:
                path = str(files[i].path)
                if path in reasons:
                    failures.append(Failure(q.value, reasons[path]))
                for row, vec in found.get((path, files[i].modality), []):
                    labels.append(q.value if row["item"] == row["path"] else row["item"])
                    vectors.append(vec[None])
                    origin.append((i, q.kind))
        matrix = np.concatenate(vectors) if vectors else np.zeros((0, self.record.dim), np.float32)
        return labels, matrix.astype(np.float32), origin, failures

    def _indexed_modalities(self) -> list[str]:
        return sorted(set(self.frame()["modality"]))

    def search_many(self, queries: Sequence[Query], k: int = 10,
                    modality: str | Sequence[str] | None = None) -> SearchResult:
        import pandas as pd

        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise VitlensError(f"-k: must be a whole number of at least 1, got {k!r}")
        allowed = None
        if modality is not None:
            names = [modality] if isinstance(modality, str) else list(modality)
            names = [check_modality(m) for m in names]
            allowed = np.flatnonzero(self.frame()["modality"].isin(names).to_numpy())
        if not queries:
            raise VitlensError("search: give at least one query (--text, --image, --file or --queries)")
        labels, matrix, origin, failures = self.encode(queries)
        records = []
        if len(matrix) and self.rows and (allowed is None or len(allowed)):
            frame = self.frame()
            scores, ids = ann.search(self._index(), self.record.ann, matrix, min(int(k), self.rows), allowed)
            for qi, (label, (_, kind)) in enumerate(zip(labels, origin)):
                rank = 0
                for score, row in zip(scores[qi], ids[qi]):
                    if row < 0:
                        continue
                    rank += 1
                    hit = frame.iloc[int(row)]
                    records.append({"query": label, "kind": kind, "rank": rank, "score": float(score),
                                    "path": hit["path"], "item": hit["item"], "modality": hit["modality"],
                                    "sha256": hit["sha256"], "row": int(row)})
        return SearchResult(pd.DataFrame(records, columns=RESULT_COLUMNS), failures, labels)

    def search(self, text: str | Sequence[str] | None = None, *, file: str | Path | Sequence | None = None,
               image: str | Path | Sequence | None = None, k: int = 10,
               modality: str | Sequence[str] | None = None) -> pd.DataFrame:
        """Ranked hits for each query, best first: one DataFrame with columns :data:`RESULT_COLUMNS`.

        A query file that cannot be read raises (the CLI instead skips it and answers the others).
        """
        queries = [*_as_queries("text", text), *_as_queries("file", file), *_as_queries("image", image)]
        result = self.search_many(queries, k=k, modality=modality)
        if result.failures:
            f = result.failures[0]
            raise VitlensError(f"{f.path}: {f.reason}")
        return result.hits


def _as_queries(kind: str, value) -> list[Query]:
    if value is None:
        return []
    values = [value] if isinstance(value, (str, Path)) else list(value)
    return [Query(kind, str(v)) for v in values]
