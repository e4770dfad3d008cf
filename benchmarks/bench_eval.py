"""Eval throughput (shapes/s) and the share of time spent outside the model, workers 0 vs 2.

Builds a synthetic prepared cache (ModelNet40-sized clouds: 8192 points) in a temp folder and runs the
real `evaluate` with the tiny model, so the numbers are about the loading pipeline, not accuracy.

    python benchmarks/bench_eval.py [--shapes 512] [--batch-size 32]
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from machine import cpu_info
from vitlens_cli.atomic import write_text_atomic
from vitlens_cli.data.benchmarks import EvalSource
from vitlens_cli.data.cache import CacheIndex, CachedPoints, Sample, build_cache
from vitlens_cli.data.meta import classnames, templates
from vitlens_cli.evaluation.runner import evaluate
from vitlens_cli.models import load_model


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "eval.json"))
    args = ap.parse_args()
    classes = classnames("modelnet40")
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        index = CacheIndex("synthetic", None, classes, 8192, 3, "y", "synthetic Gaussian clouds")
        names = [f"s{i}" for i in range(args.shapes)]
        build_cache(Path(tmp) / "cache", index, names,
                    lambda i: Sample(rng.normal(size=(8192, 3)).astype(np.float32), i % 40, names[i]))
        source = EvalSource(CachedPoints(Path(tmp) / "cache"), classes, "y", "synthetic", None, "synthetic")
        model = load_model(args.model)
        runs = {}
        evaluate(model, source, templates(), batch_size=args.batch_size, limit=args.batch_size,
                 cache_dir=Path(tmp) / "clf")  # warm-up: numba compile, classifier cache
        for workers in (0, 2, 0, 2):  # interleaved; the second of each pair is kept
            r = evaluate(model, source, templates(), batch_size=args.batch_size, workers=workers,
                         cache_dir=Path(tmp) / "clf")
            runs[workers] = {"shapes_per_s": r.shapes_per_second, "share_outside_model": r.share_outside_model,
                             "seconds": r.seconds_total}
    result = {"benchmark": "eval_throughput", "model": args.model, "shapes": args.shapes,
              "batch_size": args.batch_size, "workers_0": runs[0], "workers_2": runs[2],
              "speedup_2_workers": runs[2]["shapes_per_s"] / runs[0]["shapes_per_s"],
              "machine": cpu_info()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out, json.dumps(result, indent=2) + "\n")
    for w in (0, 2):
        print(f"workers={w}: {runs[w]['shapes_per_s']:.1f} shapes/s, "
              f"{100 * runs[w]['share_outside_model']:.0f}% of the time outside the model")
    print(f"2 workers vs 0: ×{result['speedup_2_workers']:.2f}")


if __name__ == "__main__":
    main()
