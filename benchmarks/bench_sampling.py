"""Exact FPS and kNN speed against their baselines, measured in one process, interleaved.

    .venv/bin/python benchmarks/bench_sampling.py [--repeats 7] [--out benchmarks/results/sampling.json]

FPS (B=32, N=8192 → 512 and N=10000 → 512): ours vs the AVX2/OpenMP floor probe in
``../shared/perf/fps_floor.py`` (the target: within 2×), a plain batched torch loop and
``fpsample`` when installed. kNN (k=32 around 512 FPS centres of 8192 points, B=32): ours vs
pykdtree with one cloud per thread in a 2-thread pool (the target: within 1.2×). Every
contender's indices are checked equal (FPS) or equal as neighbour sets (kNN) before timing counts.
Each repeat runs every contender once, in turn, so background load hits them alike; medians are
reported.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
PERF = REPO.parent / "shared" / "perf"
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from vitlens_cli.atomic import write_text_atomic  # noqa: E402
from vitlens_cli.points.sampling import farthest_point_sample, knn_query  # noqa: E402
from machine import cpu_info  # noqa: E402
from reference_lens import fps_loop  # noqa: E402

FPS_TARGET = 2.0
KNN_TARGET = 1.2


def _torch_loop_fps(xyz: np.ndarray, m: int) -> np.ndarray:
    """The plain batched torch loop (start 0, first index of the max), shared with the lens baseline."""
    return fps_loop(torch.from_numpy(xyz), m).numpy()


def _pykdtree_knn(pts: np.ndarray, centers: np.ndarray, k: int, pool: ThreadPoolExecutor) -> np.ndarray:
    from pykdtree.kdtree import KDTree

    def one(b: int) -> np.ndarray:
        return KDTree(pts[b]).query(centers[b], k=k)[1].astype(np.int64)

    return np.stack(list(pool.map(one, range(len(pts)))))


def _median_ms(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t) * 1e3)
    return {name: statistics.median(v) for name, v in times.items()}


def _machine() -> dict[str, object]:
    import llvmlite.binding
    import numba

    # The CPU numba generates code for (NUMBA_CPU_NAME, e.g. haswell, overrides the host's): the kernel's speed
    # must not hinge on it.
    target = numba.config.CPU_NAME or llvmlite.binding.get_host_cpu_name()
    return {**cpu_info(), "numba_target_cpu": target, "numba_threads": numba.config.NUMBA_NUM_THREADS,
            "numpy": np.__version__,
            "numba": numba.__version__, "platform": platform.platform()}


def bench_fps(b: int, n: int, m: int, repeats: int, floor_fps: Callable, slow_repeats: int) -> dict:
    xyz = np.random.default_rng(n).standard_normal((b, n, 3)).astype(np.float32)
    ours = lambda: farthest_point_sample(xyz, m).numpy()  # noqa: E731
    floor = lambda: floor_fps(xyz, m, threads=2)  # noqa: E731
    want = floor()
    got = ours()
    assert np.array_equal(got, want), "FPS indices differ from the floor probe"
    fast = {"ours": ours, "floor": floor}
    ms = _median_ms(fast, repeats)
    extra: dict[str, float] = {}
    slow: dict[str, Callable[[], object]] = {}
    assert np.array_equal(_torch_loop_fps(xyz[:2], m), want[:2]), "torch loop FPS differs"
    slow["torch_loop"] = lambda: _torch_loop_fps(xyz, m)
    try:
        import fpsample

        def fps_lib() -> np.ndarray:
            return np.stack([fpsample.fps_sampling(xyz[i], m, start_idx=0) for i in range(b)]).astype(np.int64)

        lib = fps_lib()
        if np.array_equal(lib, want):
            slow["fpsample"] = fps_lib
        else:
            extra["fpsample_indices_differ"] = 1.0
    except ImportError:
        pass
    # The slow contenders are timed in the same interleaved rounds, with ours and the floor again.
    ms_slow = _median_ms({"ours": ours, "floor": floor, **slow}, slow_repeats)
    result = {"B": b, "N": n, "M": m, "ms": {**ms, **{k: v for k, v in ms_slow.items() if k in slow}},
              "ratio_ours_vs_floor": ms["ours"] / ms["floor"],
              "target_ratio": FPS_TARGET, "indices_identical": True}
    for name in slow:
        result[f"ratio_{name}_vs_floor"] = ms_slow[name] / ms_slow["floor"]
    result["met"] = result["ratio_ours_vs_floor"] <= FPS_TARGET
    result.update(extra)
    return result


def bench_knn(b: int, n: int, g: int, k: int, repeats: int) -> dict:
    pts = np.random.default_rng(1).standard_normal((b, n, 3)).astype(np.float32)
    idx = farthest_point_sample(pts, g).numpy()
    centers = np.ascontiguousarray(pts[np.arange(b)[:, None], idx])
    with ThreadPoolExecutor(2) as pool:
        ours = lambda: knn_query(pts, centers, k).numpy()  # noqa: E731
        base = lambda: _pykdtree_knn(pts, centers, k, pool)  # noqa: E731
        assert np.array_equal(np.sort(ours(), -1), np.sort(base(), -1)), "kNN neighbour sets differ"
        ms = _median_ms({"ours": ours, "pykdtree_2threads": base}, repeats)
    ratio = ms["ours"] / ms["pykdtree_2threads"]
    return {"B": b, "N": n, "G": g, "k": k, "ms": ms, "ratio_ours_vs_pykdtree": ratio,
            "target_ratio": KNN_TARGET, "met": ratio <= KNN_TARGET, "neighbour_sets_identical": True}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--slow-repeats", type=int, default=1,
                        help="rounds that also time the torch loop and fpsample (seconds each)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "sampling.json")
    args = parser.parse_args()
    if not (PERF / "fps_floor.py").is_file():
        print(f"skip: the FPS floor probe {PERF / 'fps_floor.py'} is absent; nothing to compare against")
        return 0
    sys.path.insert(0, str(PERF))
    from fps_floor import floor_fps  # type: ignore[import-not-found]

    warm = np.random.default_rng(0).standard_normal((2, 64, 3)).astype(np.float32)
    farthest_point_sample(warm, 8), floor_fps(warm, 8), knn_query(warm, warm[:, :4], 4)  # compile/load
    results = {
        "machine": _machine(),
        "repeats": args.repeats,
        "fps": [bench_fps(32, 8192, 512, args.repeats, floor_fps, args.slow_repeats),
                bench_fps(32, 10000, 512, args.repeats, floor_fps, args.slow_repeats)],
        "knn": [bench_knn(32, 8192, 512, 32, args.repeats)],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out, json.dumps(results, indent=2) + "\n")

    print(f"{'case':<28}{'ours ms':>9}{'baseline':>18}{'base ms':>9}{'ratio':>7}{'target':>8}  met")
    for r in results["fps"]:
        case = f"FPS B={r['B']} N={r['N']}→{r['M']}"
        print(f"{case:<28}{r['ms']['ours']:>9.1f}{'floor probe':>18}{r['ms']['floor']:>9.1f}"
              f"{r['ratio_ours_vs_floor']:>7.2f}{r['target_ratio']:>7.1f}×  {'yes' if r['met'] else 'NO'}")
        for name in ("torch_loop", "fpsample"):
            if name in r["ms"]:
                print(f"{'':<28}{'':>9}{name:>18}{r['ms'][name]:>9.1f}"
                      f"{r['ms']['ours'] / r['ms'][name]:>7.2f}")
    for r in results["knn"]:
        case = f"kNN k={r['k']} B={r['B']} N={r['N']} G={r['G']}"
        print(f"{case:<28}{r['ms']['ours']:>9.1f}{'pykdtree 2 thr':>18}{r['ms']['pykdtree_2threads']:>9.1f}"
              f"{r['ratio_ours_vs_pykdtree']:>7.2f}{r['target_ratio']:>7.1f}×  {'yes' if r['met'] else 'NO'}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
