"""Lens forward throughput at the real vitlensL configuration on CPU (random weights, fp32).

Compares ``LensTower`` against the plain spec implementation in ``reference_lens.py`` run on
the same weights and inputs in the same process, interleaved; checks the outputs agree.

    python benchmarks/bench_lens.py [--batch 2] [--repeats 3] [--config vitlens-l14-shapenet]
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from reference_lens import reference_forward  # noqa: E402

from vitlens_cli.models import LensTower, get_spec  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="vitlens-l14-shapenet")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "lens.json"))
    args = ap.parse_args()

    cfg = get_spec(args.config).lens
    torch.manual_seed(0)
    tower = LensTower(cfg).eval()
    sd = {k: v.detach() for k, v in tower.state_dict().items()}
    pts = torch.randn(args.batch, cfg.npoints, 3)
    pts = pts / pts.norm(dim=-1).max()

    with torch.inference_mode():
        ours_out = tower(pts)  # warm-up (numba compile, allocator)
    ref_out = reference_forward(sd, cfg, pts)
    max_diff = (ours_out - ref_out).abs().max().item()

    ours_t, ref_t = [], []
    for _ in range(args.repeats):
        t = time.perf_counter()
        with torch.inference_mode():
            tower(pts)
        ours_t.append(time.perf_counter() - t)
        t = time.perf_counter()
        reference_forward(sd, cfg, pts)
        ref_t.append(time.perf_counter() - t)
    ours, ref = statistics.median(ours_t), statistics.median(ref_t)
    result = {
        "benchmark": "lens_forward", "config": args.config, "batch": args.batch, "npoints": cfg.npoints,
        "threads": torch.get_num_threads(), "repeats": args.repeats,
        "ours_s_per_cloud": ours / args.batch, "reference_s_per_cloud": ref / args.batch,
        "speedup_clouds_per_s": ref / ours, "max_abs_diff": max_diff,
        "machine": {"processor": platform.processor() or platform.machine(), "torch": torch.__version__},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"{args.config}: ours {ours / args.batch:.2f} s/cloud, reference {ref / args.batch:.2f} s/cloud, "
          f"speed-up ×{ref / ours:.2f}, max |diff| {max_diff:.2e}")


if __name__ == "__main__":
    main()
