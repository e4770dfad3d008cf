"""FAISS indexes over L2-normalised rows (inner product = cosine): exact below a size, IVF above.

An IVF index is calibrated when it is built: a seeded sample of its own rows, held out of k-means
training, is searched exactly and approximately (each row's own hit left out), and ``nprobe`` is set to
the smallest value whose recall@10, less two standard errors, reaches the target. A row is filed under
its nearest centroid, as a query is searched from its nearest ones, so the sample stands for unseen
queries from the same distribution. (That does not hold for a graph index such as HNSW, where a row is its own entry into the
graph: self-queries overstate its recall, which is why HNSW is not offered.) The chosen ``nprobe``, the
measured recall and every build parameter are recorded in ``index.json``.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import write_atomic
from ..errors import VitlensError

KINDS = ("auto", "flat", "ivf")
# Past this many rows one exact query costs more than a few ms on a laptop core (rows × dim multiply-adds).
DEFAULT_EXACT_MAX_ROWS = 100_000
DEFAULT_RECALL_TARGET = 0.95
CALIBRATION_QUERIES = 512
RECALL_K = 10


def _faiss():
    import faiss

    return faiss


def choose_kind(kind: str, rows: int, exact_max_rows: int) -> str:
    if kind not in KINDS:
        raise VitlensError(f"--ann: unknown index kind {kind!r} (one of {', '.join(KINDS)})")
    if kind == "auto":
        return "flat" if rows <= exact_max_rows else "ivf"
    return kind


def build(vectors: np.ndarray, kind: str = "auto", *, exact_max_rows: int = DEFAULT_EXACT_MAX_ROWS,
          recall_target: float = DEFAULT_RECALL_TARGET, seed: int = 0) -> tuple[Any, dict[str, Any]]:
    """A FAISS index over ``vectors`` (float32, rows L2-normalised) and the record of how it was built."""
    faiss = _faiss()
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = vectors.shape
    kind = choose_kind(kind, n, exact_max_rows)
    params: dict[str, Any] = {"exact_max_rows": exact_max_rows}
    if kind == "flat" or n == 0:
        index = faiss.IndexFlatIP(dim)
        index.add(vectors)
        return index, {"kind": "flat", "metric": "inner_product", "params": params}
    # IVF, the only approximate kind: sqrt(n) lists (the low end of FAISS's guidance, which keeps k-means
    # affordable on a laptop: 1M rows train in about a minute), at least 39 training rows each as FAISS asks.
    nlist = max(1, min(int(round(math.sqrt(n))), n // 39))
    held_out = _calibration_ids(n, seed)
    # k-means never sees the calibration rows, so to the centroids they are as new as a user's query.
    pool = np.setdiff1d(np.arange(n), held_out) if n - len(held_out) >= 39 * nlist else np.arange(n)
    train_n = min(len(pool), 64 * nlist)
    rng = np.random.default_rng(seed)
    sample = vectors[np.sort(rng.choice(pool, train_n, replace=False))]
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = seed
    index.train(sample)
    index.add(vectors)
    nprobe, recall, queries = _calibrate(index, vectors, nlist, recall_target, seed)
    set_nprobe(index, nprobe)
    params.update(nlist=nlist, train_rows=train_n, kmeans_seed=seed, nprobe=nprobe, recall_target=recall_target,
                  calibrated_recall_at_10=recall, calibration_queries=queries)
    return index, {"kind": kind, "metric": "inner_product", "params": params}


def set_nprobe(index: Any, value: int) -> None:
    _faiss().extract_index_ivf(index).nprobe = int(value)


def _calibrate(index: Any, vectors: np.ndarray, limit: int, target: float,
               seed: int) -> tuple[int, float, int]:
    n = len(vectors)
    ids = _calibration_ids(n, seed)
    q = len(ids)
    queries = vectors[ids]
    k = min(RECALL_K, n - 1)
    if k < 1:
        return limit, 1.0, q
    exact = _exact_topk(vectors, queries, ids, k)

    def measure(value: int) -> tuple[bool, float]:
        set_nprobe(index, value)
        _, got = index.search(queries, k + 1)
        recall = _recall(exact, _drop_self(got, ids, k))
        # Lower end of a 2-standard-error interval: nprobe is then high enough for unseen queries too.
        low = recall - 2 * math.sqrt(max(recall * (1 - recall), 1e-12) / (q * k))
        return low >= target, recall

    # Grow nprobe geometrically until it is enough, then bisect back to the smallest value that is.
    below, value = 0, 1
    ok, recall = measure(value)
    while not ok and value < limit:
        below, value = value, min(limit, max(value + 1, int(math.ceil(value * 1.5))))
        ok, recall = measure(value)
    if not ok:
        return value, float(recall), q
    while value - below > 1:
        mid = (below + value) // 2
        mid_ok, mid_recall = measure(mid)
        if mid_ok:
            value, recall = mid, mid_recall
        else:
            below = mid
    return value, float(recall), q


def _calibration_ids(n: int, seed: int) -> np.ndarray:
    return np.sort(np.random.default_rng(seed + 1).choice(n, min(CALIBRATION_QUERIES, n), replace=False))


def _exact_topk(vectors: np.ndarray, queries: np.ndarray, ids: np.ndarray, k: int) -> np.ndarray:
    faiss = _faiss()
    flat = faiss.IndexFlatIP(vectors.shape[1])
    flat.add(vectors)
    _, got = flat.search(queries, k + 1)
    return _drop_self(got, ids, k)


def _drop_self(got: np.ndarray, ids: np.ndarray, k: int) -> np.ndarray:
    out = np.full((len(got), k), -1, dtype=np.int64)
    for i, (row, own) in enumerate(zip(got, ids)):
        kept = [j for j in row if j != own and j >= 0][:k]
        out[i, :len(kept)] = kept
    return out


def _recall(exact: np.ndarray, got: np.ndarray) -> float:
    hits = sum(len(set(a[a >= 0]) & set(b[b >= 0])) for a, b in zip(exact, got))
    return hits / max(1, int((exact >= 0).sum()))


def recall_at_k(exact: np.ndarray, got: np.ndarray) -> float:
    """Fraction of the exact top-k ids that ``got`` also returns (per row, averaged over all rows)."""
    return _recall(np.asarray(exact), np.asarray(got))


def search(index: Any, record: dict[str, Any], queries: np.ndarray, k: int,
           allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(scores, ids)`` of the ``k`` best rows per query; ``allowed`` restricts the candidate rows."""
    faiss = _faiss()
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    kind = record["kind"]
    params = None
    if allowed is not None:
        selector = faiss.IDSelectorBatch(np.ascontiguousarray(allowed, dtype=np.int64))
        if kind == "ivf":
            params = faiss.SearchParametersIVF(sel=selector, nprobe=int(record["params"]["nprobe"]))
        else:
            params = faiss.SearchParameters(sel=selector)
    scores, ids = index.search(queries, k, params=params)
    return scores, ids


def save(index: Any, path: Path) -> None:
    faiss = _faiss()
    write_atomic(path, lambda p: faiss.write_index(index, str(p)))


def load(path: Path, record: dict[str, Any], rows: int, dim: int) -> Any:
    faiss = _faiss()
    from .store import IndexStoreError

    try:
        index = faiss.read_index(str(path))
    except RuntimeError:
        raise IndexStoreError(path, "corrupted FAISS index; rebuild with `vitlens index build`") from None
    if index.ntotal != rows or index.d != dim:
        raise IndexStoreError(path, f"FAISS index holds {index.ntotal} × {index.d}, the shards {rows} × {dim}; "
                                    "rebuild with `vitlens index build`")
    if record["kind"] == "ivf":
        set_nprobe(index, record["params"]["nprobe"])
    return index
