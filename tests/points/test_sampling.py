"""Exact FPS, kNN and ball query against plain float32 reference loops written here.

Reference rules (DESIGN.md, parity README §3): FPS starts at ``start`` and takes the first index
holding the maximum; kNN is a stable argsort of squared distances (smaller index wins ties);
ball query takes the first ``k`` indices in index order with ``d² <= r²`` and pads with the first.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vitlens_cli.points.sampling import (
    _ball_torch,
    _fps_torch,
    _knn_torch,
    ball_query,
    farthest_point_sample,
    gather_points,
    knn_query,
)


# --------------------------------------------------------------------------- references

def _sqdist(pts: np.ndarray, c: np.ndarray) -> np.ndarray:
    """float32 dx*dx + dy*dy + dz*dz, left to right."""
    pts = pts.astype(np.float32)
    c = c.astype(np.float32)
    dx, dy, dz = pts[:, 0] - c[0], pts[:, 1] - c[1], pts[:, 2] - c[2]
    return dx * dx + dy * dy + dz * dz


def ref_fps(pts: np.ndarray, m: int, start: int = 0) -> np.ndarray:
    dist = np.full(len(pts), 1e10, dtype=np.float32)
    out = np.empty(m, dtype=np.int64)
    far = start
    for s in range(m):
        out[s] = far
        dist = np.minimum(dist, _sqdist(pts, pts[far]))
        far = int(np.argmax(dist))  # first index of the maximum
    return out


def ref_knn(pts: np.ndarray, centers: np.ndarray, k: int) -> np.ndarray:
    return np.stack([np.argsort(_sqdist(pts, c), kind="stable")[:k] for c in centers])


def ref_ball(pts: np.ndarray, centers: np.ndarray, radius: float, k: int) -> np.ndarray:
    r2 = np.float32(radius) * np.float32(radius)
    out = np.zeros((len(centers), k), dtype=np.int64)
    for g, c in enumerate(centers):
        inside = np.flatnonzero(_sqdist(pts, c) <= r2)[:k]
        first = inside[0] if len(inside) else 0
        out[g] = first
        out[g, :len(inside)] = inside
    return out


def _sets_equal(a: np.ndarray, b: np.ndarray) -> bool:
    return np.array_equal(np.sort(np.asarray(a), axis=-1), np.sort(np.asarray(b), axis=-1))


# --------------------------------------------------------------------------- clouds

def _random(b: int, n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((b, n, 3)).astype(np.float32)


def _duplicated(n: int, seed: int) -> np.ndarray:
    """Every point twice (and a few thrice), shuffled: exact distance ties everywhere."""
    base = np.random.default_rng(seed).uniform(-1, 1, (n // 2, 3)).astype(np.float32)
    pts = np.concatenate([base, base, base[:5]])
    return pts[np.random.default_rng(seed + 1).permutation(len(pts))]


def _grid(side: int = 7) -> np.ndarray:
    """Integer grid (exact float32 arithmetic): many equal distances and an exact ball boundary."""
    g = np.arange(side, dtype=np.float32) - side // 2
    return np.stack(np.meshgrid(g, g, g, indexing="ij"), axis=-1).reshape(-1, 3).copy()


CLOUDS = {
    "random": lambda: _random(1, 1500, 0)[0],
    "duplicated": lambda: _duplicated(1200, 3),
    "grid": _grid,
    "grid_shuffled": lambda: _grid()[np.random.default_rng(4).permutation(7 ** 3)],
    "flat_grid_scaled": lambda: (_grid(9)[np.abs(_grid(9)[:, 2]) < 0.5] * np.float32(0.25)).copy(),
}


# --------------------------------------------------------------------------- FPS

@pytest.mark.parametrize("name", list(CLOUDS))
def test_fps_matches_reference(name: str) -> None:
    pts = CLOUDS[name]()
    m = min(200, len(pts))
    idx = farthest_point_sample(pts, m)
    assert idx.dtype == torch.int64 and idx.shape == (m,)
    np.testing.assert_array_equal(idx.numpy(), ref_fps(pts, m))


def test_fps_more_samples_than_distinct_points_follows_the_tie_rule() -> None:
    pts = np.repeat(np.eye(3, dtype=np.float32), 4, axis=0)  # 3 distinct points, 12 rows
    idx = farthest_point_sample(pts, 8).numpy()
    np.testing.assert_array_equal(idx, ref_fps(pts, 8))
    assert idx[0] == 0 and (idx[3:] == 0).all()  # once all distances are 0, index 0 (first max) repeats


@pytest.mark.parametrize("n", [1, 2, 255, 256, 257, 511, 513])
def test_fps_cloud_sizes_around_the_kernel_block_follow_the_reference(n: int) -> None:
    # The kernel pads its distance buffers to whole blocks of 256; sizes on either side of a
    # block edge, and a cloud of one repeated point (every distance 0, like the padding), must
    # still pick what the reference picks.
    pts = _random(1, n, n)[0]
    m = min(n, 40)
    np.testing.assert_array_equal(farthest_point_sample(pts, m).numpy(), ref_fps(pts, m))
    same = np.repeat(pts[:1], n, axis=0)
    np.testing.assert_array_equal(farthest_point_sample(same, m).numpy(), ref_fps(same, m))


def test_fps_batched_equals_per_cloud_and_reference() -> None:
    pts = _random(4, 1000, 1)
    idx = farthest_point_sample(pts, 64)
    assert idx.shape == (4, 64)
    for b in range(4):
        np.testing.assert_array_equal(idx[b].numpy(), ref_fps(pts[b], 64))
        np.testing.assert_array_equal(farthest_point_sample(pts[b], 64).numpy(), idx[b].numpy())


def test_fps_numpy_tensor_float64_and_extra_channels_agree() -> None:
    pts = _random(2, 800, 2)
    want = farthest_point_sample(pts, 50)
    np.testing.assert_array_equal(farthest_point_sample(torch.from_numpy(pts), 50), want)
    feats = np.concatenate([pts, np.random.default_rng(0).uniform(size=(2, 800, 3)).astype(np.float32)], -1)
    np.testing.assert_array_equal(farthest_point_sample(feats, 50), want)  # only xyz counts
    grad = torch.from_numpy(pts).requires_grad_(True)
    np.testing.assert_array_equal(farthest_point_sample(grad, 50), want)
    np.testing.assert_array_equal(farthest_point_sample(pts[:, ::-1][:, ::-1], 50), want)  # non-contiguous


@pytest.mark.parametrize("start", [0, 1, 499, 999])
def test_fps_start_index(start: int) -> None:
    pts = _random(1, 1000, 5)[0]
    idx = farthest_point_sample(pts, 40, start=start).numpy()
    assert idx[0] == start
    np.testing.assert_array_equal(idx, ref_fps(pts, 40, start))
    np.testing.assert_array_equal(_fps_torch(torch.from_numpy(pts)[None], 40, start)[0].numpy(), idx)


def test_fps_errors() -> None:
    pts = _random(1, 10, 0)
    for m in (11, 0, -1):
        with pytest.raises(ValueError, match="cannot sample"):
            farthest_point_sample(pts, m)
    with pytest.raises(ValueError, match="start index"):
        farthest_point_sample(pts, 3, start=10)
    with pytest.raises(ValueError, match="shape"):
        farthest_point_sample(np.zeros((2, 3, 4, 3), np.float32), 1)
    with pytest.raises(ValueError, match="shape"):
        farthest_point_sample(np.zeros((2, 5, 2), np.float32), 1)
    np.testing.assert_array_equal(farthest_point_sample(pts, 10)[0].sort().values, torch.arange(10))


@pytest.mark.parametrize("name", list(CLOUDS))
def test_fps_torch_path_equals_numba_path(name: str) -> None:
    """The torch loop (the CUDA path) run on CPU picks exactly the numba kernel's indices."""
    pts = CLOUDS[name]()
    m = min(128, len(pts))
    got = _fps_torch(torch.from_numpy(pts)[None], m, 0)
    np.testing.assert_array_equal(got.numpy(), farthest_point_sample(pts[None], m).numpy())


def test_fps_torch_path_batched() -> None:
    pts = _random(3, 2000, 8)
    np.testing.assert_array_equal(_fps_torch(torch.from_numpy(pts), 100, 0), farthest_point_sample(pts, 100))


# --------------------------------------------------------------------------- kNN

@pytest.mark.parametrize("name", list(CLOUDS))
@pytest.mark.parametrize("k", [1, 8, 27])
def test_knn_neighbour_sets_match_reference(name: str, k: int) -> None:
    pts = CLOUDS[name]()
    centers = pts[ref_fps(pts, 48)]
    got = knn_query(pts[None], centers[None], k)
    assert got.shape == (1, 48, k) and got.dtype == torch.int64
    want = ref_knn(pts, centers, k)
    assert _sets_equal(got[0].numpy(), want)
    # nearest first: distances along each row never decrease
    d = np.stack([_sqdist(pts, c)[row] for c, row in zip(centers, got[0].numpy())])
    assert (np.diff(d, axis=1) >= 0).all()
    assert _sets_equal(_knn_torch(torch.from_numpy(pts)[None], torch.from_numpy(centers)[None], k)[0], want)


def test_knn_off_grid_centres_and_batches() -> None:
    pts = _random(3, 3000, 11)
    centers = np.random.default_rng(12).standard_normal((3, 100, 3)).astype(np.float32)
    got = knn_query(torch.from_numpy(pts), torch.from_numpy(centers), 16)
    for b in range(3):
        assert _sets_equal(got[b].numpy(), ref_knn(pts[b], centers[b], 16))
    np.testing.assert_array_equal(knn_query(pts[1], centers[1], 16), got[1])  # (N, 3) input
    assert _sets_equal(_knn_torch(torch.from_numpy(pts), torch.from_numpy(centers), 16), got)


def test_knn_grid_tie_breaks_to_smaller_index() -> None:
    pts = _grid(5)
    centre = np.zeros((1, 3), np.float32)  # 6 neighbours at distance 1, 12 at sqrt 2, 8 at sqrt 3
    for k in (1, 2, 5, 7, 10, 19, 26):
        got = knn_query(pts[None], centre[None], k)[0, 0].numpy()
        np.testing.assert_array_equal(np.sort(got), np.sort(ref_knn(pts, centre, k)[0]))


def test_knn_k_equals_n_and_errors() -> None:
    pts = _random(1, 20, 0)
    got = knn_query(pts, pts[:, :3], 20)
    assert (np.sort(got.numpy(), axis=-1) == np.arange(20)).all()
    with pytest.raises(ValueError, match="neighbours"):
        knn_query(pts, pts[:, :3], 21)


# --------------------------------------------------------------------------- ball query

@pytest.mark.parametrize("name", list(CLOUDS))
@pytest.mark.parametrize("radius, k", [(0.3, 16), (1.0, 8), (1.5, 32), (0.01, 4)])
def test_ball_query_slots_match_reference(name: str, radius: float, k: int) -> None:
    pts = CLOUDS[name]()
    centers = pts[ref_fps(pts, 40)]
    want = ref_ball(pts, centers, radius, k)
    got = ball_query(pts[None], centers[None], radius, k)
    assert got.shape == (1, 40, k) and got.dtype == torch.int64
    np.testing.assert_array_equal(got[0].numpy(), want)
    np.testing.assert_array_equal(ball_query(pts, centers, radius, k).numpy(), want)  # (N, 3) input
    np.testing.assert_array_equal(
        _ball_torch(torch.from_numpy(pts)[None], torch.from_numpy(centers)[None],
                    float(np.float32(radius) * np.float32(radius)), k)[0].numpy(), want)


def test_ball_query_exact_boundary_and_empty_balls() -> None:
    pts = _grid(5)
    centers = np.array([[0, 0, 0], [0.5, 0.5, 0.5], [100, 100, 100]], np.float32)
    got = ball_query(torch.from_numpy(pts)[None], torch.from_numpy(centers)[None], 1.0, 10)[0].numpy()
    np.testing.assert_array_equal(got, ref_ball(pts, centers, 1.0, 10))
    assert len(set(got[0])) == 7  # the centre and its 6 neighbours at exactly r, then padding
    assert (got[2] == 0).all()  # nothing inside: every slot is 0


def test_ball_query_batched_tensor_input() -> None:
    pts = _random(2, 2048, 21)
    centers = pts[np.arange(2)[:, None], farthest_point_sample(pts, 64).numpy()]
    got = ball_query(torch.from_numpy(pts), torch.from_numpy(centers), 0.5, 32)
    for b in range(2):
        np.testing.assert_array_equal(got[b].numpy(), ref_ball(pts[b], centers[b], 0.5, 32))
    small = ball_query(pts[:1, :10], centers[:1, :3], 10.0, 16)  # k larger than N pads with the first
    np.testing.assert_array_equal(small[0].numpy(), ref_ball(pts[0, :10], centers[0, :3], 10.0, 16))
    np.testing.assert_array_equal(
        _ball_torch(torch.from_numpy(pts[:1, :10]), torch.from_numpy(centers[:1, :3]), 100.0, 16), small)


def test_gather_points() -> None:
    pts = torch.from_numpy(_random(2, 50, 3))
    idx = torch.tensor([[[0, 1], [49, 2]], [[5, 5], [7, 0]]])
    out = gather_points(pts, idx)
    assert out.shape == (2, 2, 2, 3)
    assert torch.equal(out[1, 1, 0], pts[1, 7]) and torch.equal(out[0, 1, 0], pts[0, 49])


# --------------------------------------------------------------------------- official parity

def _load(parity: Path, case: str) -> tuple[dict[str, torch.Tensor], dict]:
    from safetensors.torch import load_file

    folder = parity / case
    return load_file(str(folder / "io.safetensors")), json.loads((folder / "config.json").read_text())


@pytest.mark.parametrize("case", ["pointbert_untied", "pointbert_tied", "pnsa_rgb"])
def test_parity_fps(parity: Path, case: str) -> None:
    io, cfg = _load(parity, case)
    pts = io["points"]
    assert cfg["fps_start_index"] == 0
    idx = farthest_point_sample(pts, cfg["num_group"])
    assert torch.equal(idx, io["fps_idx"])
    assert torch.equal(gather_points(pts[..., :3], idx), io["centers"])


@pytest.mark.parametrize("case", ["pointbert_untied", "pointbert_tied"])
def test_parity_pointbert_knn_groups(parity: Path, case: str) -> None:
    io, cfg = _load(parity, case)
    got = knn_query(io["points"], io["centers"], cfg["group_size"])
    assert torch.equal(got.sort(dim=-1).values, io["group_idx"].sort(dim=-1).values)


def test_parity_pnsa_ball_query_slots(parity: Path) -> None:
    io, cfg = _load(parity, "pnsa_rgb")
    got = ball_query(io["points"], io["centers"], cfg["radius"], cfg["group_size"])
    assert torch.equal(got, io["group_idx"])  # exact slots, padding included
    padded = (got == got[..., :1]).sum(-1) > 1
    assert int(padded.sum()) == cfg["selection_robustness"]["ball_groups_padded"]
