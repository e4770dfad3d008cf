"""Training-step throughput (samples/s) with frozen-tower feature caching on and off, in one run.

Two lens towers: the tiny recipe (nano CLIP, random) and a ViT-B/16-sized one (the `vitlens-b16` spec on
open_clip's ViT-B-16 architecture, randomly initialised: no download). Synthetic captioned shapes;
each configuration runs a few steps and the median step after the first is kept.

    python benchmarks/bench_train.py [--steps 4]
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
from pathlib import Path

import torch

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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "train.json"))
    args = ap.parse_args()
    result = {"benchmark": "train_step", "steps": args.steps,
              "machine": {"processor": platform.processor() or platform.machine(), "torch": torch.__version__,
                          "threads": torch.get_num_threads()}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in CONFIGS:
            on = run(name, True, args.steps, Path(tmp) / f"{name}-on")
            off = run(name, False, args.steps, Path(tmp) / f"{name}-off")
            result[name] = {"samples_per_s_cache_on": on, "samples_per_s_cache_off": off, "speedup": on / off}
            print(f"{name}: cache on {on:.2f} samples/s, off {off:.2f} samples/s, ×{on / off:.2f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
