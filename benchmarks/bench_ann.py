"""The index's approximate search (IVF, calibrated at build) against exact search, on random unit vectors.

Random vectors are the hard case for an ANN index (no clusters to exploit). Builds the exact FAISS
``IndexFlatIP`` (the brute-force baseline: one BLAS matrix product per query batch) and the index that
``vitlens index build`` makes past its exact-search threshold (``retrieval.ann.build(kind="ivf")``) on
the same vectors in the same run, then measures recall@10 of the IVF index against exact search on
fresh queries, build times and query latencies (batched and one query at a time), as ratios.

    python benchmarks/bench_ann.py [--rows 1000000] [--dim 768] [--queries 1000]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from machine import cpu_info  # noqa: E402
from vitlens_cli.atomic import write_text_atomic  # noqa: E402
from vitlens_cli.retrieval import ann  # noqa: E402


def unit_rows(n: int, dim: int, seed: int, chunk: int = 100_000) -> np.ndarray:
    """Gaussian rows scaled to unit length, generated in chunks so the peak is one float32 copy."""
    out = np.empty((n, dim), dtype=np.float32)
    rng = np.random.default_rng(seed)
    for start in range(0, n, chunk):
        block = rng.standard_normal((min(chunk, n - start), dim), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start:start + len(block)] = block
    return out


def single_query_latency(index, queries: np.ndarray, k: int) -> float:
    """Median seconds for one query searched alone."""
    times = []
    for q in queries:
        t0 = time.perf_counter()
        index.search(q[None], k)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main() -> None:
    import faiss

    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--single", type=int, default=50, help="queries timed one at a time")
    ap.add_argument("--recall-target", type=float, default=ann.DEFAULT_RECALL_TARGET)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "ann.json"))
    args = ap.parse_args()
    k = ann.RECALL_K

    t0 = time.perf_counter()
    data = unit_rows(args.rows, args.dim, seed=0)
    queries = unit_rows(args.queries, args.dim, seed=1)
    gen_s = time.perf_counter() - t0
    print(f"generated {args.rows} x {args.dim} in {gen_s:.1f} s", flush=True)

    t0 = time.perf_counter()
    flat = faiss.IndexFlatIP(args.dim)
    flat.add(data)
    flat_build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    _, exact = flat.search(queries, k)
    flat_batch_s = time.perf_counter() - t0
    flat_single_s = single_query_latency(flat, queries[:args.single], k)
    print(f"exact: build {flat_build_s:.2f} s, {args.queries} queries {flat_batch_s:.2f} s, "
          f"one query {flat_single_s * 1e3:.1f} ms", flush=True)
    del flat

    t0 = time.perf_counter()
    ivf, record = ann.build(data, "ivf", recall_target=args.recall_target)
    ivf_build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    _, got = ivf.search(queries, k)
    ivf_batch_s = time.perf_counter() - t0
    ivf_single_s = single_query_latency(ivf, queries[:args.single], k)
    recall = ann.recall_at_k(exact, got)
    print(f"ivf: build {ivf_build_s:.1f} s ({record['params']}), {args.queries} queries {ivf_batch_s:.2f} s, "
          f"one query {ivf_single_s * 1e3:.1f} ms, recall@10 {recall:.4f}", flush=True)

    result = {
        "benchmark": "ann", "rows": args.rows, "dim": args.dim, "queries": args.queries, "k": k,
        "data": "Gaussian rows scaled to unit length (seed 0); queries fresh ones (seed 1)",
        "recall_at_10": recall, "recall_target": args.recall_target, "meets_target": bool(recall >= 0.95),
        "index": record,
        "exact": {"kind": "faiss.IndexFlatIP", "build_s": flat_build_s, "batch_query_s": flat_batch_s,
                  "batch_ms_per_query": 1e3 * flat_batch_s / args.queries, "single_query_ms": 1e3 * flat_single_s},
        "ivf": {"build_s": ivf_build_s, "batch_query_s": ivf_batch_s,
                "batch_ms_per_query": 1e3 * ivf_batch_s / args.queries, "single_query_ms": 1e3 * ivf_single_s},
        "ratios": {"build_time_ivf_over_exact": ivf_build_s / flat_build_s,
                   "batch_latency_ivf_over_exact": ivf_batch_s / flat_batch_s,
                   "single_query_latency_ivf_over_exact": ivf_single_s / flat_single_s},
        "cpu": cpu_info(), "faiss": faiss.__version__, "faiss_threads": faiss.omp_get_max_threads(),
        "numpy": np.__version__,
    }
    out = write_text_atomic(args.out, json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["ratios"], indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
