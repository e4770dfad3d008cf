"""Build or extend an index: plan chunks of files, embed them into shards (over torchrun ranks), merge.

Inputs are expanded in a fixed order and cut into chunks of ``shard_files`` files; chunk ``j`` goes to
rank ``j % world_size`` (or a local worker process), which writes it as one shard. Rank 0 then builds the
FAISS index over every shard in order and writes ``index.json``. The chunk plan and each chunk's content
do not depend on the number of processes, so a 2-rank build writes the same shards as a 1-process build,
and a re-run after a kill reuses every shard already written.
"""
from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import file_digest
from ..errors import VitlensError
from ..precision import resolve_precision
from . import ann as annlib
from . import store
from .model_ref import ModelRef, describe, record as model_record
from .sources import EmbedSettings, Failure, Source, check_modality, embed_sources, expand

_OWN_NAMES = {store.INDEX_FILE, store.ANN_FILE, store.SHARD_DIR, ".lock"}


@dataclass
class BuildOptions:
    modalities: tuple[str, ...] = ()
    batch_size: int = 8
    workers: int = 1
    shard_files: int = 256
    ann: str = "auto"
    exact_max_rows: int = annlib.DEFAULT_EXACT_MAX_ROWS
    recall_target: float = annlib.DEFAULT_RECALL_TARGET
    seed: int = 0
    mesh_points: int = 10_000
    device: str = "auto"
    precision: str = "fp32"

    def check(self) -> None:
        for name, value in (("--batch-size", self.batch_size), ("--workers", self.workers),
                            ("--shard-files", self.shard_files), ("--mesh-points", self.mesh_points)):
            if value < 1:
                raise VitlensError(f"{name}: must be at least 1, got {value}")
        if self.exact_max_rows < 0:
            raise VitlensError(f"--exact-max-rows: must be at least 0, got {self.exact_max_rows}")
        if not 0 < self.recall_target <= 1:
            raise VitlensError(f"--recall-target: must be in (0, 1], got {self.recall_target}")
        annlib.choose_kind(self.ann, 0, 0)
        self.modalities = tuple(check_modality(m) for m in self.modalities)


@dataclass
class BuildReport:
    folder: str
    rows: int = 0
    embedded_rows: int = 0
    embedded_shards: int = 0
    reused_shards: int = 0
    unchanged_files: int = 0
    replaced_files: int = 0
    failures: list[Failure] = field(default_factory=list)
    ann: dict[str, Any] = field(default_factory=dict)
    model: str = ""
    is_main: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "failures": [asdict(f) for f in self.failures]}


@contextlib.contextmanager
def _locked(folder: Path, enabled: bool) -> Iterator[None]:
    """One writer per index folder: a second build or add at the same time is refused, not interleaved."""
    if not enabled:
        yield
        return
    import fcntl

    fh = open(folder / ".lock", "a+")
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise store.IndexStoreError(folder, "another vitlens index build/add is writing this index") from None
        yield
    finally:
        fh.close()


def _check_folder(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise store.IndexStoreError(out, "is a file; give a folder for the index")
    if out.is_dir():
        foreign = sorted(p.name for p in out.iterdir() if p.name not in _OWN_NAMES and not p.name.endswith(".tmp"))
        if foreign:
            raise store.IndexStoreError(out, f"holds files that are not an index ({foreign[0]}, …); "
                                             "give a new or empty folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / store.SHARD_DIR).mkdir(exist_ok=True)
    except OSError as exc:
        raise store.IndexStoreError(out, f"cannot create the index folder ({exc.strerror or exc})") from None
    if not os.access(out, os.W_OK) or not os.access(out / store.SHARD_DIR, os.W_OK):
        raise store.IndexStoreError(out, "index folder is not writable")


def _existing(out: Path, add: bool) -> store.IndexRecord | None:
    if add:
        return store.read_record(out)
    if not (out / store.INDEX_FILE).exists():
        return None
    try:
        return store.read_record(out)
    except store.IndexStoreError:
        return None  # a damaged index is rebuilt from the inputs; its intact shards are reused below


def _hash_sources(sources: list[Source], failures: list[Failure]) -> list[tuple[Source, str]]:
    hashed = []
    for src in sources:
        try:
            hashed.append((src, file_digest(src.path)[0]))
        except OSError as exc:
            failures.append(Failure(str(src.path), (exc.strerror or str(exc)).lower()))
    return hashed


def _chunk_key(fingerprint: str, settings: EmbedSettings, chunk: Sequence[tuple[Source, str]]) -> str:
    return store.json_key({"model": fingerprint, "settings": settings.to_dict(),
                           "files": [[str(s.path), sha, s.modality] for s, sha in chunk]})


def _shard_ok(out: Path, name: str, key: str, existing: store.IndexRecord | None) -> bool:
    path = out / name
    if not path.is_file():
        return False
    meta = store.shard_meta(path)
    if meta is None or meta.get("key") != key:
        return False
    listed = {s["file"]: s for s in existing.shards} if existing is not None else {}
    if name in listed:
        return store.file_sha256(path) == listed[name]["sha256"]
    return True


def _embed_chunk(model, chunk: Sequence[tuple[Source, str]], key: str, path: Path, settings: EmbedSettings,
                 batch_size: int, on_file: Callable[[str], None] | None) -> None:
    rows, emb, failures = embed_sources(model, [s for s, _ in chunk], settings, batch_size, on_file)
    store.write_shard(path, store.ShardRows(store.manifest_columns(rows), emb, key,
                                            [asdict(f) for f in failures]), model.embed_dim)


_WORKER: dict[str, Any] = {}


def _exit_with_parent(parent: int) -> None:
    """End this worker once the build process that spawned it is gone (killed, or ended by a signal that
    skipped the pool's shutdown): an orphan would otherwise finish its chunk and wait for work forever."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _worker_init(ref: ModelRef, threads: int, parent: int) -> None:
    _exit_with_parent(parent)
    import torch

    torch.set_num_threads(threads)
    _WORKER["model"] = ref.load("cpu")


def _worker_job(chunk, key, path, settings, batch_size) -> str:
    _embed_chunk(_WORKER["model"], chunk, key, Path(path), settings, batch_size, None)
    return str(path)


def _sync(info, error: BaseException | None) -> None:
    """Every rank learns whether any rank failed, so none waits forever at a barrier."""
    if not info.enabled:
        if error is not None:
            raise error
        return
    import torch.distributed as dist

    status = None if error is None else (isinstance(error, VitlensError), str(error))
    statuses: list[Any] = [None] * info.world_size
    dist.all_gather_object(statuses, status)
    if error is not None:
        raise error
    for st in statuses:
        if st is not None:
            raise VitlensError(st[1]) if st[0] else RuntimeError(f"another rank failed: {st[1]}")


def build_index(inputs: Sequence[str | Path], out: str | Path, ref: ModelRef | None = None,
                options: BuildOptions | None = None, *, add: bool = False,
                on_file: Callable[[str], None] | None = None, on_plan: Callable[[int], None] | None = None
                ) -> BuildReport:
    """Embed ``inputs`` into the index folder ``out`` (``add``: extend an existing one). See the module doc."""
    from ..distributed import barrier, cleanup, init_distributed

    options = options or BuildOptions()
    options.check()
    out = Path(out)
    info = init_distributed(options.device)
    try:
        return _build(inputs, out, ref, options, add, on_file, on_plan, info)
    finally:
        barrier(info)
        cleanup(info)


def _build(inputs, out: Path, ref, options: BuildOptions, add: bool, on_file, on_plan, info) -> BuildReport:
    from ..distributed import barrier

    error: BaseException | None = None
    state: dict[str, Any] = {}
    try:
        existing = _existing(out, add)
        if add and existing is not None and ref is None:
            ref = ModelRef(**{k: existing.model.get(k) for k in ("name", "checkpoint", "config")})
        ref = ref or ModelRef("tiny")
        if info.is_main:
            _check_folder(out)
        state.update(existing=existing, ref=ref)
    except BaseException as exc:  # noqa: BLE001 - handed to every rank by _sync
        error = exc
    _sync(info, error)
    barrier(info)
    with _locked(out, info.is_main):
        return _run(inputs, out, options, add, on_file, on_plan, info, **state)


def _run(inputs, out: Path, options: BuildOptions, add: bool, on_file, on_plan, info,
         existing: store.IndexRecord | None, ref: ModelRef) -> BuildReport:
    from ..distributed import barrier

    device = str(info.device) if options.device == "auto" else options.device
    report = BuildReport(str(out), is_main=info.is_main)
    error: BaseException | None = None
    plan: list[tuple[str, str, list[tuple[Source, str]]]] = []
    try:
        model = ref.load(device)
        rec = model_record(ref, model)
        report.model = describe(rec)
        if existing is not None and existing.model.get("fingerprint") != rec["fingerprint"]:
            raise store.IndexStoreError(out, f"was built with model {describe(existing.model)!r}, not "
                                             f"{describe(rec)!r} (the weights differ); use a new folder")
        if add and existing is not None:
            settings = EmbedSettings(**existing.settings["embed"])
        else:
            settings = EmbedSettings(seed=options.seed, mesh_points=options.mesh_points,
                                     precision=resolve_precision(options.precision, device).name)
        sources, failures = expand(inputs, options.modalities)
        hashed = _hash_sources(sources, failures)
        start = 0
        replaced: set[str] = set()
        if add and existing is not None:
            old_pairs: set[tuple[str, str]] = set()
            old_paths: set[str] = set()
            for shard in existing.shards:
                cols = store.read_shard(out / shard["file"], existing.dim, embeddings=False).columns
                old_pairs.update(zip(cols["path"], cols["sha256"]))
                old_paths.update(cols["path"])
            new = [(s, sha) for s, sha in hashed if (str(s.path), sha) not in old_pairs]
            report.unchanged_files = len(hashed) - len(new)
            replaced = {str(s.path) for s, _ in new if str(s.path) in old_paths}
            report.replaced_files = len(replaced)
            hashed = new
            start = 1 + max((store.shard_position(s["file"]) for s in existing.shards), default=-1)
        for j in range(0, len(hashed), options.shard_files):
            chunk = hashed[j:j + options.shard_files]
            key = _chunk_key(rec["fingerprint"], settings, chunk)
            plan.append((store.shard_name(start + j // options.shard_files, key), key, chunk))
        if on_plan is not None:
            on_plan(sum(len(c) for _, _, c in plan))
        done = {name for name, key, _ in plan if _shard_ok(out, name, key, existing)}
        report.reused_shards = len(done)
        report.embedded_shards = len(plan) - len(done)
        todo = [p for j, p in enumerate(plan) if j % info.world_size == info.rank and p[0] not in done]
        if on_file is not None:
            for name, _, chunk in plan:
                if name in done:
                    for src, _sha in chunk:
                        on_file(str(src.path))
        _embed_all(model, ref, todo, out, settings, options, on_file)
    except BaseException as exc:  # noqa: BLE001 - handed to every rank by _sync
        error = exc
    _sync(info, error)
    barrier(info)
    if not info.is_main:
        return report
    return _merge(out, existing if add else None, rec, settings, options, plan, replaced, failures, report)


def _embed_all(model, ref: ModelRef, todo, out: Path, settings: EmbedSettings, options: BuildOptions,
               on_file) -> None:
    if options.workers <= 1 or len(todo) <= 1:
        for name, key, chunk in todo:
            _embed_chunk(model, chunk, key, out / name, settings, options.batch_size, on_file)
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    workers = min(options.workers, len(todo))
    threads = max(1, (os.cpu_count() or 1) // workers)
    # Spawned, not forked: torch's and numba's thread pools are not fork-safe once they have run.
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_worker_init,
                             initargs=(ref, threads, os.getpid())) as pool:
        futures = {pool.submit(_worker_job, chunk, key, out / name, settings, options.batch_size): chunk
                   for name, key, chunk in todo}
        for future in futures:
            future.result()
            if on_file is not None:
                for src, _sha in futures[future]:
                    on_file(str(src.path))


def _merge(out: Path, existing: store.IndexRecord | None, rec: dict[str, Any], settings: EmbedSettings,
           options: BuildOptions, plan, replaced: set[str], failures: list[Failure], report: BuildReport
           ) -> BuildReport:
    dim = rec["dim"]
    shards: list[dict[str, Any]] = []
    blocks: list[np.ndarray] = []
    if existing is not None:
        for entry in existing.shards:
            rows = store.read_shard(out / entry["file"], dim)
            name = entry["file"]
            if replaced & set(rows.columns["path"]):
                keep = [i for i, p in enumerate(rows.columns["path"]) if p not in replaced]
                kept = store.ShardRows({c: [v[i] for i in keep] for c, v in rows.columns.items()},
                                       rows.embeddings[keep], store.json_key([rows.key, sorted(replaced)]), [])
                name = store.shard_name(store.shard_position(entry["file"]), kept.key)
                store.write_shard(out / name, kept, dim)
                rows = kept
            shards.append(store.file_entry(out, name, rows=len(rows)))
            blocks.append(rows.embeddings)
    for name, _, _ in plan:
        rows = store.read_shard(out / name, dim)
        failures.extend(Failure(f["path"], f["reason"]) for f in rows.failures)
        shards.append(store.file_entry(out, name, rows=len(rows)))
        blocks.append(rows.embeddings)
        report.embedded_rows += len(rows)
    vectors = np.concatenate(blocks) if blocks else np.zeros((0, dim), np.float32)
    index, ann_rec = annlib.build(vectors, options.ann, exact_max_rows=options.exact_max_rows,
                               recall_target=options.recall_target, seed=options.seed)
    annlib.save(index, out / store.ANN_FILE)
    ann_rec = {**store.file_entry(out, store.ANN_FILE), **ann_rec}
    model = {k: rec[k] for k in ("name", "checkpoint", "config", "card", "dim", "modalities", "fingerprint")}
    record = store.IndexRecord(model=model, dim=dim, settings={"embed": settings.to_dict()}, shards=shards,
                               ann=ann_rec, failures=[asdict(f) for f in failures])
    store.write_record(out, record)
    store.remove_unreferenced(out, [s["file"] for s in shards] + [store.INDEX_FILE, store.ANN_FILE])
    report.rows = record.rows
    report.failures = failures
    report.ann = ann_rec
    return report
