"""Lens forward throughput at a real configuration on CPU (random weights), with a per-stage breakdown.

Baselines, run on the same weights and inputs in the same process, interleaved:
- the **official tower** (``../shared/official``, built through the official config path; its few extra
  packages are pip-installed into ``--official-extra``), skipped with a message when absent;
- the plain spec implementation in ``reference_lens.py`` (Point-BERT configs);
- for the Perceiver alone, the hand-written einsum attention it used to be (``reference_lens.perceiver``)
  against our ``scaled_dot_product_attention`` one.
``--precision auto`` resolves per machine (fp32 on a CPU without native bf16: the result records why);
the low-precision forward runs as embed/eval/index run it: linear and convolution weights cast once for
the run (``precision.low_precision_weights``, outside the timed call), the forward under autocast.

    python benchmarks/bench_lens.py [--config vitlens-l14-objaverse] [--batch 1 8] [--repeats 2] [--reference]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
import reference_lens  # noqa: E402
from machine import cpu_info  # noqa: E402

from vitlens_cli.atomic import write_text_atomic  # noqa: E402
from vitlens_cli.models import LensTower, get_spec  # noqa: E402
from vitlens_cli.models.checkpoints import load_tower_state  # noqa: E402
from vitlens_cli.models.vitlens import prepend_class  # noqa: E402
from vitlens_cli.precision import autocast, low_precision_weights, resolve_precision  # noqa: E402

OFFICIAL = Path(__file__).resolve().parents[2] / "shared" / "official"
PRESETS = {"vitlens-l14-objaverse": "vitlensL-objaverse", "vitlens-l14-shapenet": "vitlensL-shapenet",
           "vitlens-bigg14-openshape": "vitlensG-openshape-all",
           "vitlens-bigg14-openshape-nolvis": "vitlensG-openshape-nolvis"}


def official_tower(config: str, extra: str):
    if not OFFICIAL.is_dir():
        return None, f"{OFFICIAL} is absent: no official baseline"
    if config not in PRESETS:
        return None, f"no official preset for {config}"
    sys.path.insert(0, str(OFFICIAL))
    import official_tower as ot

    return ot.point_tower(PRESETS[config], ot.install_extras(extra), seed=0), None


def stages(tower: LensTower, pts: torch.Tensor) -> dict[str, float]:
    """Seconds per stage, composed exactly as ``LensTower.forward``."""
    t = {}
    s = time.perf_counter()
    tok = tower.lens(pts)
    t["tokenizer"] = time.perf_counter() - s
    s = time.perf_counter()
    z = tower.perceiver(tok)
    t["perceiver"] = time.perf_counter() - s
    s = time.perf_counter()
    x = tower.transformer(tower.ln_pre(prepend_class(z, tower.class_embedding, tower.positional_embedding)))
    tower.ln_post(x[:, 0]) @ tower.proj
    t["vit"] = time.perf_counter() - s
    return t


def gemm_floor(tower, pts, repeats: int = 5) -> dict:
    """The fp32 time the forward's matrix products alone need at this machine's matmul rate.

    FLOPs are torch.profiler's count of the forward's mm/addmm/bmm/convolutions; the rate is the best of
    ``repeats`` float32 products of the ViT MLP's shape (tokens × 1024 → 4096) on the same threads. An fp32
    forward cannot run faster than this without doing less arithmetic.
    """
    from torch.profiler import profile

    with profile(with_flops=True) as prof:
        tower(pts)
    flops = sum(e.flops for e in prof.key_averages())
    a, b = torch.randn(257 * pts.shape[0], 1024), torch.randn(1024, 4096)
    a @ b
    rate = 2 * a.shape[0] * 1024 * 4096 / min(timed(lambda: a @ b) for _ in range(repeats))
    return {"gflop_per_cloud": flops / pts.shape[0] / 1e9, "fp32_matmul_gflops": rate / 1e9,
            "fp32_gemm_floor_s_per_cloud": flops / rate / pts.shape[0]}


def timed(fn) -> float:
    s = time.perf_counter()
    fn()
    return time.perf_counter() - s


def bench_batch(tower, official, sd, cfg, batch: int, repeats: int, precision, reference: bool) -> dict:
    torch.manual_seed(batch)
    xyz = torch.randn(batch, cfg.npoints, 3)
    xyz = xyz / xyz.norm(dim=-1).max()
    pts = torch.cat([xyz, torch.rand(batch, cfg.npoints, cfg.in_channels - 3)], -1) if cfg.in_channels > 3 else xyz
    pointbert = cfg.tokenizer == "pointbert"
    with torch.inference_mode():
        ours = tower(pts)  # warm-up (numba compile, allocator)
        row: dict = {"batch": batch}
        runs = {"ours_fp32": lambda: tower(pts)}
        if official is not None:
            # The official pnsa tower takes xyz apart from the xyz+rgb features (OpenShape's convention).
            call = (lambda: official(pts)) if pointbert else (lambda: official(pts, xyz=pts[..., :3].contiguous()))
            off = call()
            row["official_max_abs_diff"] = (ours - off).abs().max().item()
            runs["official_fp32"] = call
        if pointbert and (reference or official is None):
            row["reference_max_abs_diff"] = (ours - reference_lens.reference_forward(sd, cfg, pts)).abs().max().item()
            runs["reference_fp32"] = lambda: reference_lens.reference_forward(sd, cfg, pts)
        if precision.dtype is not None:
            with low_precision_weights(tower, precision), autocast(precision, "cpu"):
                low = tower(pts).float()
            row["precision_cosine_to_fp32"] = F.cosine_similarity(low, ours, dim=-1).min().item()
            runs[f"ours_{precision.name}"] = lambda: _under(precision, tower, pts)
        times = {k: [] for k in runs}
        per_stage, low_stage = [], []
        for _ in range(repeats):  # interleaved, so a neighbour's load hits every contender alike
            for k, fn in runs.items():
                # As embed/eval/index run it: the weights cast once for the run, outside the timed forward.
                with low_precision_weights(tower, precision) if k.startswith("ours_") and k != "ours_fp32" \
                        else nullcontext():
                    times[k].append(timed(fn))
            per_stage.append(stages(tower, pts))
            if precision.dtype is not None:
                with low_precision_weights(tower, precision), autocast(precision, "cpu"):
                    low_stage.append(stages(tower, pts))
        # Perceiver alone: SDPA (ours) against the einsum attention it replaced, same tokens and weights.
        tok = tower.lens(pts)
        p = cfg.perceiver
        old = lambda: reference_lens.perceiver(sd, tok, p.depth, p.self_per_cross_attn, p.cross_heads,  # noqa: E731
                                               p.latent_heads)
        row["perceiver_max_abs_diff"] = (tower.perceiver(tok) - old()).abs().max().item()
        sdpa_t, old_t = [], []
        for _ in range(repeats):
            sdpa_t.append(timed(lambda: tower.perceiver(tok)))
            old_t.append(timed(old))
    # Speed-ups from the fastest repeat of each: on a shared machine a neighbour's load only ever adds time.
    med = {k: min(v) for k, v in times.items()}
    row.update({f"{k}_s_per_cloud": v / batch for k, v in med.items()})
    row.update({f"{k}_median_s_per_cloud": statistics.median(v) / batch for k, v in times.items()})
    row["ours_fp32_stages_s_per_cloud"] = {k: min(s[k] for s in per_stage) / batch for k in per_stage[0]}
    if low_stage:
        row[f"ours_{precision.name}_stages_s_per_cloud"] = {k: min(s[k] for s in low_stage) / batch
                                                         for k in low_stage[0]}
    row["perceiver_sdpa_s"], row["perceiver_einsum_s"] = min(sdpa_t), min(old_t)
    row["perceiver_sdpa_speedup"] = row["perceiver_einsum_s"] / row["perceiver_sdpa_s"]
    with torch.inference_mode():
        row.update(gemm_floor(tower, pts))
    row["ours_fp32_vs_gemm_floor"] = med["ours_fp32"] / batch / row["fp32_gemm_floor_s_per_cloud"]
    if "official_fp32" in med:
        # the most any fp32 implementation could gain on the official one here
        row["fp32_ceiling_vs_official"] = med["official_fp32"] / batch / row["fp32_gemm_floor_s_per_cloud"]
    for base in ("official_fp32", "reference_fp32"):
        if base in med:
            row[f"speedup_fp32_vs_{base}"] = med[base] / med["ours_fp32"]
            low = med.get(f"ours_{precision.name}", med["ours_fp32"])
            row[f"speedup_{precision.name}_vs_{base}"] = med[base] / low
    return row


def _under(precision, tower, pts):
    with autocast(precision, "cpu"):
        return tower(pts)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="vitlens-l14-objaverse")
    ap.add_argument("--batch", type=int, nargs="+", default=[1])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--reference", action="store_true", help="also time reference_lens.py when the official "
                    "tower is there (it always runs without it)")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--official-extra", default=os.path.join(tempfile.gettempdir(), "vitlens-official-extra"))
    ap.add_argument("--no-official", action="store_true")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "lens.json"))
    args = ap.parse_args()

    cfg = get_spec(args.config).lens
    precision = resolve_precision(args.precision, "cpu")
    official, why = (None, "--no-official") if args.no_official else official_tower(args.config, args.official_extra)
    if why:
        print(f"official baseline skipped: {why}")
    torch.manual_seed(0)
    tower = LensTower(cfg).eval()
    if official is not None:  # the very same weights in both towers
        load_tower_state(tower, official.state_dict(), "official tower")
    sd = {k: v.detach() for k, v in tower.state_dict().items()}
    rows = [bench_batch(tower, official, sd, cfg, b, args.repeats, precision, args.reference) for b in args.batch]
    result = {
        "benchmark": "lens_forward", "config": args.config, "npoints": cfg.npoints, "repeats": args.repeats,
        "precision": {"requested": args.precision, **precision.to_dict()},
        "official": why or f"official tower {PRESETS[args.config]} from {OFFICIAL}",
        "batches": rows, "machine": cpu_info(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out, json.dumps(result, indent=2) + "\n")
    print(f"precision {args.precision} -> {precision.name} ({precision.reason})")
    for r in rows:
        parts = [f"batch {r['batch']}: ours {r['ours_fp32_s_per_cloud']:.2f} s/cloud"]
        for base in ("official", "reference"):
            if f"{base}_fp32_s_per_cloud" in r:
                parts.append(f"{base} {r[f'{base}_fp32_s_per_cloud']:.2f} (x{r[f'speedup_fp32_vs_{base}_fp32']:.2f}, "
                             f"max |diff| {r[f'{base}_max_abs_diff']:.1e})")
        st = r["ours_fp32_stages_s_per_cloud"]
        parts.append("stages " + ", ".join(f"{k} {v:.2f}" for k, v in st.items()))
        parts.append(f"perceiver SDPA x{r['perceiver_sdpa_speedup']:.2f} vs einsum")
        parts.append(f"fp32 matmul floor {r['fp32_gemm_floor_s_per_cloud']:.2f} s/cloud "
                     f"(ours x{r['ours_fp32_vs_gemm_floor']:.2f} of it)")
        print("; ".join(parts))


if __name__ == "__main__":
    main()
