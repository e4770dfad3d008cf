"""Training-step throughput (samples/s) with frozen-tower feature caching on and off, in one run.

Two lens towers: the tiny recipe (nano CLIP, random) and a ViT-B/16-sized one (the `vitlens-b16` spec on
open_clip's ViT-B-16 architecture, randomly initialised: no download). Synthetic captioned shapes;
each configuration runs a few steps and the median step after the first is kept.

A second part times the feature cache alone on ViT-B/16-sized frozen towers (open_clip ViT-B-16,
random weights) where every input is new, as on ULIP-2-like data: misses encoded in one fixed chunk
against one sample per call (the cache before it batched), same inputs, interleaved.

    python benchmarks/bench_train.py [--steps 4] [--cache-only] [--cache-batch 8]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from machine import cpu_info  # noqa: E402

from vitlens_cli.atomic import write_text_atomic
from vitlens_cli.training.features import FeatureCache
from vitlens_cli.training.loop import train
from vitlens_cli.training.recipe import load_recipe

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {
    "tiny": ["data.options.size=256", "batch_size=32"],
    "b16": ["model.spec=vitlens-b16", "model.clip_model=ViT-B-16", "model.lens={npoints: 2048, num_group: 256}",
            "data.options.size=64", "batch_size=4",
            # 64 templates: many distinct captions, as in real training, so caching has work to save
            "data.options.templates=null"],
}


def run(name: str, cache: bool, steps: int, out: Path) -> float:
    recipe = load_recipe(REPO / "vitlens_cli" / "recipes" / "tiny-cpu.yaml",
                         CONFIGS[name] + [f"max_steps={steps}", f"save_every={steps}", f"log_every={steps}",
                                          f"cache_features={str(cache).lower()}", f"output_dir={out}"])
    times: list[float] = []
    train(recipe, device="cpu", on_step=lambda log: times.append(log.samples_per_s))
    return statistics.median(times[1:])


def feature_cache(batch: int, repeats: int) -> dict:
    """Seconds per batch of ``batch`` new inputs through a ViT-B/16 image and text tower, chunked vs per sample."""
    import open_clip

    torch.manual_seed(0)
    clip = open_clip.create_model("ViT-B-16", pretrained=None).eval()
    tok = open_clip.get_tokenizer("ViT-B-16")
    towers = {
        "image": (lambda xs: clip.encode_image(torch.stack(xs)), lambda r: [torch.randn(3, 224, 224) for _ in range(batch)]),
        "text": (lambda xs: clip.encode_text(tok(xs)), lambda r: [f"a 3d model of object {r}-{i}" for i in range(batch)]),
    }
    out = {}
    with torch.inference_mode():
        for name, (encode, make) in towers.items():
            encode(make(-1)[:1])  # warm-up
            times: dict[str, list[float]] = {"chunked": [], "per_sample": []}
            diff = 0.0
            for r in range(repeats):
                items = make(r)
                keys = [f"{name}-{r}-{i}" for i in range(batch)]
                got = {}
                for mode, chunk in (("chunked", batch), ("per_sample", 1)):
                    cache = FeatureCache(encode, chunk=chunk)  # empty: every input is a miss
                    t = time.perf_counter()
                    got[mode] = cache(keys, items)
                    times[mode].append(time.perf_counter() - t)
                diff = max(diff, (got["chunked"] - got["per_sample"]).abs().max().item())
            med = {k: statistics.median(v) for k, v in times.items()}
            out[name] = {"batch": batch, "chunked_s": med["chunked"], "per_sample_s": med["per_sample"],
                         "speedup": med["per_sample"] / med["chunked"], "max_abs_diff": diff}
            print(f"feature cache, {name} ViT-B/16 tower, {batch} new inputs: chunked {med['chunked']:.2f} s, "
                  f"per sample {med['per_sample']:.2f} s, x{out[name]['speedup']:.2f}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--cache-only", action="store_true", help="only the feature-cache part")
    ap.add_argument("--cache-batch", type=int, default=8)
    ap.add_argument("--cache-repeats", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "train.json"))
    args = ap.parse_args()
    out = Path(args.out)
    if args.cache_only:  # the step results already recorded stay, with their own machine entry
        result = json.loads(out.read_text()) if out.is_file() else {"benchmark": "train_step"}
        result["feature_cache_machine"] = cpu_info()
    else:
        result = {"benchmark": "train_step", "steps": args.steps, "machine": cpu_info()}
    result["feature_cache_b16"] = feature_cache(args.cache_batch, args.cache_repeats)
    with tempfile.TemporaryDirectory() as tmp:
        for name in () if args.cache_only else CONFIGS:
            on = run(name, True, args.steps, Path(tmp) / f"{name}-on")
            off = run(name, False, args.steps, Path(tmp) / f"{name}-off")
            result[name] = {"samples_per_s_cache_on": on, "samples_per_s_cache_off": off, "speedup": on / off}
            print(f"{name}: cache on {on:.2f} samples/s, off {off:.2f} samples/s, ×{on / off:.2f}")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
