"""Exact farthest point sampling, kNN and ball query.

The CPU paths are numba kernels (compiled at first use, nothing to build at install time) plus
pykdtree for kNN; tensors on another device use plain torch. All three are *exact*: they select
what exact arithmetic on the float32 inputs selects, with the tie rules stated per function.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Union

import numba
import numpy as np
import torch
from pykdtree.kdtree import KDTree

ArrayLike = Union[np.ndarray, torch.Tensor]

# numba tries TBB first and warns on every run when the TBB it finds is too old; OpenMP (or numba's own
# workqueue) serves these kernels equally well. A user's NUMBA_THREADING_LAYER* setting still wins.
if not any(k.startswith("NUMBA_THREADING_LAYER") for k in os.environ):
    numba.config.THREADING_LAYER_PRIORITY = ["omp", "workqueue", "tbb"]

# 'contract' is left out on purpose: fusing a*a+b into an FMA changes the rounding of the squared
# distance, and with it the chosen index on near-ties, versus the float32 reference.
_FAST = {"nnan", "ninf", "nsz"}


_FPS_BLOCK = 256


@numba.njit(cache=True, fastmath=_FAST, nogil=True, boundscheck=False)
def _fps_soa(x: np.ndarray, y: np.ndarray, z: np.ndarray, m: int, start: int, out: np.ndarray) -> None:
    n = x.shape[0]
    nb = (n + _FPS_BLOCK - 1) // _FPS_BLOCK
    # Two distance buffers used in turn: LLVM vectorises "read one, write the other" but not an
    # in-place float min. Squared distances are >= 0, so their int32 bit patterns order exactly
    # like the floats, and integer max reductions vectorise where float ones do not. The buffers
    # are padded to whole blocks with 0.0: a constant trip count per block is what keeps the
    # block-maximum loop vectorised on every CPU (with a variable one, LLVM's runtime checks sent
    # Zen 4 down a path 3-4x slower). Padding never wins: a real point of the same block, or
    # index 0 (distance 0 once chosen), comes first at equal value.
    da = np.zeros(nb * _FPS_BLOCK, dtype=np.float32)
    da[:n] = np.float32(1e10)
    db = np.zeros(nb * _FPS_BLOCK, dtype=np.float32)
    dai = da.view(np.int32)
    dbi = db.view(np.int32)
    # Per-block maxima: the scalar "first index holding the maximum" scan then reads one block
    # instead of (on average) half the cloud.
    bmax = np.empty(nb, dtype=np.int32)
    far = start
    for s in range(m):
        out[s] = far
        cx = x[far]
        cy = y[far]
        cz = z[far]
        if s % 2 == 0:
            src, dst, dsti = da, db, dbi
        else:
            src, dst, dsti = db, da, dai
        for i in range(n):
            dx = x[i] - cx
            dy = y[i] - cy
            dz = z[i] - cz
            d = dx * dx + dy * dy + dz * dz
            o = src[i]
            dst[i] = d if d < o else o
        top = np.int32(-1)
        for blk in range(nb):
            lo = blk * _FPS_BLOCK
            best = np.int32(-1)
            for j in range(_FPS_BLOCK):
                v = dsti[lo + j]
                best = v if v > best else best
            bmax[blk] = best
            top = best if best > top else top
        for blk in range(nb):  # first block, then first index, holding the maximum: the reference's tie rule
            if bmax[blk] == top:
                lo = blk * _FPS_BLOCK
                for i in range(lo, lo + _FPS_BLOCK):
                    if dsti[i] == top:
                        far = i
                        break
                break


@numba.njit(cache=True, parallel=True, nogil=True)
def _fps_batch(soa: np.ndarray, m: int, start: int, out: np.ndarray) -> None:
    for b in numba.prange(soa.shape[0]):
        _fps_soa(soa[b, 0], soa[b, 1], soa[b, 2], m, start, out[b])


def _fps_torch(xyz: torch.Tensor, m: int, start: int) -> torch.Tensor:
    b, n, _ = xyz.shape
    # Separate x, y, z rows avoid a size-3 reduction per step, which dominates a naive loop.
    x, y, z = (xyz[..., i].contiguous() for i in range(3))
    dist = torch.full((b, n), 1e10, dtype=xyz.dtype, device=xyz.device)
    out = torch.empty((b, m), dtype=torch.long, device=xyz.device)
    far = torch.full((b,), start, dtype=torch.long, device=xyz.device)
    rows = torch.arange(b, device=xyz.device)
    for s in range(m):
        out[:, s] = far
        cx, cy, cz = x[rows, far, None], y[rows, far, None], z[rows, far, None]
        d = (x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2
        dist = torch.minimum(dist, d)
        far = dist.argmax(dim=1)
    return out


def _as_batch(xyz: ArrayLike) -> tuple[ArrayLike, bool]:
    if xyz.ndim == 2:
        return xyz[None], True
    if xyz.ndim != 3 or xyz.shape[-1] < 3:
        raise ValueError(f"expected points of shape (B, N, 3+) or (N, 3+), got {tuple(xyz.shape)}")
    return xyz, False


def farthest_point_sample(xyz: ArrayLike, m: int, start: int = 0) -> torch.Tensor:
    """Indices ``(B, m)`` of exact farthest point sampling over the first three channels.

    ``idx[:, 0] = start``; each next index maximises the distance to the chosen set, the first
    index winning ties. ``xyz`` may be ``(B, N, C)`` or ``(N, C)`` (then the result is ``(m,)``),
    a numpy array or a tensor; the result lives on the tensor's device.
    """
    batch, squeeze = _as_batch(xyz)
    n = batch.shape[1]
    if not 0 < m <= n:
        raise ValueError(f"cannot sample {m} of {n} points")
    if not 0 <= start < n:
        raise ValueError(f"start index {start} out of range for {n} points")
    if isinstance(batch, torch.Tensor) and batch.device.type != "cpu":
        idx = _fps_torch(batch[..., :3].float(), m, start)
    else:
        arr = batch.detach().numpy() if isinstance(batch, torch.Tensor) else batch
        soa = np.ascontiguousarray(np.asarray(arr[..., :3], dtype=np.float32).transpose(0, 2, 1))
        out = np.empty((soa.shape[0], m), dtype=np.int64)
        if len(soa) == 1:
            # One cloud gains nothing from the thread pool, and staying off it keeps forked
            # DataLoader workers (which resample one cloud at a time) clear of OpenMP after fork.
            _fps_soa(soa[0, 0], soa[0, 1], soa[0, 2], m, start, out[0])
        else:
            _fps_batch(soa, m, start, out)
        idx = torch.from_numpy(out)
    return idx[0] if squeeze else idx


def _knn_one(points: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    n = points.shape[0]
    kq = min(k + 1, n)
    dist, idx = KDTree(points).query(queries, k=kq)
    idx = idx.reshape(len(queries), kq).astype(np.int64)
    if kq == k:
        return idx
    dist = dist.reshape(len(queries), kq)
    # The (k+1)-th neighbour tells us whether the k-th is tied; only tied rows need the slow,
    # fully ordered rule (smaller index wins at equal distance).
    for row in np.flatnonzero(dist[:, k - 1] >= dist[:, k]):
        d = ((points - queries[row]) ** 2).sum(axis=1)
        idx[row, :k] = np.argsort(d, kind="stable")[:k]
    return idx[:, :k]


def _pool_size() -> int:
    return max(1, min(torch.get_num_threads(), os.cpu_count() or 1))


def knn_query(xyz: ArrayLike, centers: ArrayLike, k: int) -> torch.Tensor:
    """Indices ``(B, G, k)`` of the ``k`` nearest points of ``xyz`` to each centre, nearest first.

    Exact in float32 squared distance; at equal distance the smaller index comes first, so the
    neighbour *set* is unique. ``xyz``: ``(B, N, 3+)``; ``centers``: ``(B, G, 3)``; or ``(N, 3+)``
    with ``(G, 3)``, giving ``(G, k)``.
    """
    if xyz.ndim == 2:
        return knn_query(xyz[None], centers[None], k)[0]
    if isinstance(xyz, torch.Tensor) and xyz.device.type != "cpu":
        if k > xyz.shape[1]:
            raise ValueError(f"cannot take {k} neighbours of {xyz.shape[1]} points")
        return _knn_torch(xyz[..., :3].float(), torch.as_tensor(centers, device=xyz.device)[..., :3].float(), k)
    pts = _to_numpy(xyz)[..., :3]
    ctr = _to_numpy(centers)[..., :3]
    if k > pts.shape[1]:
        raise ValueError(f"cannot take {k} neighbours of {pts.shape[1]} points")
    work = [(np.ascontiguousarray(pts[b]), np.ascontiguousarray(ctr[b])) for b in range(len(pts))]
    if len(work) == 1:
        out = [_knn_one(*work[0], k)]
    else:
        with ThreadPoolExecutor(_pool_size()) as pool:
            out = list(pool.map(lambda w: _knn_one(w[0], w[1], k), work))
    return torch.from_numpy(np.stack(out))


@numba.njit(cache=True, parallel=True, nogil=True)
def _ball_query(pts: np.ndarray, ctr: np.ndarray, r2: float, k: int, out: np.ndarray) -> None:
    b_, g_ = ctr.shape[0], ctr.shape[1]
    n = pts.shape[1]
    for job in numba.prange(b_ * g_):
        b = job // g_
        g = job % g_
        cx, cy, cz = ctr[b, g, 0], ctr[b, g, 1], ctr[b, g, 2]
        found = 0
        for j in range(n):
            dx = pts[b, j, 0] - cx
            dy = pts[b, j, 1] - cy
            dz = pts[b, j, 2] - cz
            if dx * dx + dy * dy + dz * dz <= r2:
                out[b, g, found] = j
                found += 1
                if found == k:
                    break
        first = out[b, g, 0] if found > 0 else 0
        for s in range(found, k):
            out[b, g, s] = first


def ball_query(xyz: ArrayLike, centers: ArrayLike, radius: float, k: int) -> torch.Tensor:
    """PointNet++ ball query: per centre, the first ``k`` indices (in index order) within ``radius``.

    Slots left empty repeat the first index found. This is not a nearest-neighbour query: the
    result depends on the input order. A centre drawn from ``xyz`` always finds itself.
    ``xyz (B, N, 3+)`` with ``centers (B, G, 3)`` gives ``(B, G, k)``; ``(N, 3+)`` with ``(G, 3)`` gives ``(G, k)``.
    """
    if xyz.ndim == 2:
        return ball_query(xyz[None], centers[None], radius, k)[0]
    r2 = np.float32(radius) * np.float32(radius)
    if isinstance(xyz, torch.Tensor) and xyz.device.type != "cpu":
        c = torch.as_tensor(centers, device=xyz.device)[..., :3].float()
        return _ball_torch(xyz[..., :3].float(), c, float(r2), k)
    pts = np.ascontiguousarray(_to_numpy(xyz)[..., :3])
    ctr = np.ascontiguousarray(_to_numpy(centers)[..., :3])
    out = np.zeros(ctr.shape[:2] + (k,), dtype=np.int64)
    _ball_query(pts, ctr, r2, k, out)
    return torch.from_numpy(out)


def _sq_dist_torch(p: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """``(B, G, N)`` squared distances as the float32 reference computes them: dx*dx + dy*dy + dz*dz.

    Written per coordinate on purpose: ``torch.cdist`` switches to the |a|²+|b|²−2ab matmul form
    (not exact on near-ties) and a ``sum(-1)`` may add the three terms in another order.
    """
    d = None
    for i in range(3):
        t = p[:, None, :, i] - c[:, :, None, i]
        t = t * t
        d = t if d is None else d + t
    return d


def _chunks(b: int, g: int, n: int, budget: int = 1 << 26) -> int:
    return max(1, min(g, budget // max(1, b * n)))


def _knn_torch(p: torch.Tensor, c: torch.Tensor, k: int) -> torch.Tensor:
    """Exact kNN for any device: stable sort of the reference distances (smaller index wins ties)."""
    step = _chunks(p.shape[0], c.shape[1], p.shape[1])
    parts = []
    for g0 in range(0, c.shape[1], step):
        d = _sq_dist_torch(p, c[:, g0:g0 + step])
        parts.append(torch.sort(d, dim=-1, stable=True).indices[..., :k])
    return torch.cat(parts, dim=1)


def _ball_torch(p: torch.Tensor, c: torch.Tensor, r2: float, k: int) -> torch.Tensor:
    """Ball query for any device, slot for slot equal to the numba kernel."""
    n = p.shape[1]
    step = _chunks(p.shape[0], c.shape[1], n)
    parts = []
    for g0 in range(0, c.shape[1], step):
        d = _sq_dist_torch(p, c[:, g0:g0 + step])
        order = torch.arange(n, device=p.device).expand_as(d)
        key = torch.where(d <= torch.tensor(r2, dtype=torch.float32, device=p.device), order, n)
        if k <= n:
            idx = key.topk(k, dim=-1, largest=False, sorted=True).values
        else:
            idx = torch.cat([key.sort(dim=-1).values, key.new_full(key.shape[:-1] + (k - n,), n)], dim=-1)
        first = torch.where(idx[..., :1] == n, 0, idx[..., :1])
        parts.append(torch.where(idx == n, first, idx))
    return torch.cat(parts, dim=1)


def gather_points(points: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``points[b, idx[b, ...]]`` for ``points (B, N, C)`` and ``idx (B, ...)`` → ``(B, ..., C)``."""
    b = points.shape[0]
    flat = idx.reshape(b, -1)
    out = torch.gather(points, 1, flat[..., None].expand(-1, -1, points.shape[-1]))
    return out.reshape(*idx.shape, points.shape[-1])


def _to_numpy(a: ArrayLike) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=np.float32)
