"""Training-step throughput (samples/s) with frozen-tower feature caching on and off, in one run.

Two lens towers: the tiny recipe (nano CLIP, random) and a ViT-B/16-sized one (the `vitlens-b16` spec on
open_clip's ViT-B-16 architecture, randomly initialised: no download). Synthetic captioned shapes;
each configuration runs a few steps and the median step after the first is kept.

A second part times the feature cache alone on ViT-B/16-sized frozen towers (open_clip ViT-B-16,
random weights) where every input is new, as on ULIP-2-like data: one sample per call in fp32 (the cache
before this work) against misses in one fixed chunk, in fp32 and at the precision a recipe would pick
here, same inputs, interleaved.

A third (``--fold``) runs the ViT-B/16-sized step with ``precision.fold_attention_inputs`` on and off.

    python benchmarks/bench_train.py [--steps 4] [--cache-only] [--cache-batch 8] [--fold]
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
# The ViT-B/16-sized run once more in bf16 (lens step and frozen towers under autocast), where the CPU has it.
CONFIGS["b16-bf16"] = CONFIGS["b16"] + ["precision=bf16"]


def run(name: str, cache: bool, steps: int, out: Path) -> float:
    recipe = load_recipe(REPO / "vitlens_cli" / "recipes" / "tiny-cpu.yaml",
                         CONFIGS[name] + [f"max_steps={steps}", f"save_every={steps}", f"log_every={steps}",
                                          f"cache_features={str(cache).lower()}", f"output_dir={out}"])
    times: list[float] = []
    train(recipe, device="cpu", on_step=lambda log: times.append(log.samples_per_s))
    return statistics.median(times[1:])


def feature_cache(batch: int, repeats: int) -> dict:
    """Seconds to encode ``batch`` new inputs through ViT-B/16 image and text towers, three ways, interleaved.

    ``before``: one sample per call in fp32 on open_clip's towers as they come (the cache as it was);
    ``chunked_fp32``: the cache's fixed chunk, fp32, attention inputs folded (what training runs in fp32);
    ``chunked_<p>``: the same at the precision a recipe would pick here (bf16 where the CPU has it), under
    autocast as the training loop runs the frozen towers; ``chunked_<p>_unfolded`` that on open_clip's towers as
    they come. Towers frozen and under ``no_grad``, as in training.
    """
    import copy

    import open_clip

    from vitlens_cli.precision import autocast, fold_attention_inputs, resolve_precision

    low = resolve_precision("auto", "cpu")
    torch.manual_seed(0)
    clip = open_clip.create_model("ViT-B-16", pretrained=None).eval().requires_grad_(False)
    folded = fold_attention_inputs(copy.deepcopy(clip))
    tok = open_clip.get_tokenizer("ViT-B-16")
    inputs = {"image": lambda r: [torch.randn(3, 224, 224, generator=torch.Generator().manual_seed(r * batch + i))
                                for i in range(batch)],
            "text": lambda r: [f"a 3d model of object {r}-{i}, seen from the side" for i in range(batch)]}

    def encoder(model, tower: str, precision):
        def encode(xs):
            with autocast(precision, "cpu"):
                return model.encode_image(torch.stack(xs)) if tower == "image" else model.encode_text(tok(xs))
        return encode

    fp32 = resolve_precision("fp32", "cpu")
    ways = {"before": (clip, fp32, 1), "chunked_fp32": (folded, fp32, batch),
            f"chunked_{low.name}": (folded, low, batch)}
    if low.dtype is not None:  # the same without precision.fold_attention_inputs
        ways[f"chunked_{low.name}_unfolded"] = (clip, low, batch)
    out: dict = {"batch": batch, "precision": low.to_dict()}
    with torch.no_grad():
        for tower in ("image", "text"):
            for model, precision, _ in ways.values():
                encoder(model, tower, precision)(inputs[tower](-1)[:2])  # warm-up
            times: dict[str, list[float]] = {w: [] for w in ways}
            got: dict[str, torch.Tensor] = {}
            for r in range(repeats):
                items = inputs[tower](r)
                keys = [f"{tower}-{r}-{i}" for i in range(batch)]
                for way, (model, precision, chunk) in ways.items():
                    cache = FeatureCache(encoder(model, tower, precision), chunk=chunk)  # empty: all misses
                    t = time.perf_counter()
                    got[way] = cache(keys, items)
                    times[way].append(time.perf_counter() - t)
            med = {w: statistics.median(v) for w, v in times.items()}
            row = {f"{w}_s": med[w] for w in ways}
            row.update({f"speedup_{w}": med["before"] / med[w] for w in ways if w != "before"})
            row["max_abs_diff_chunked_fp32"] = (got["chunked_fp32"] - got["before"]).abs().max().item()
            row[f"min_cosine_chunked_{low.name}"] = torch.nn.functional.cosine_similarity(
                got[f"chunked_{low.name}"], got["before"], dim=-1).min().item()
            out[tower] = row
            print(f"feature cache, {tower} ViT-B/16 tower, {batch} new inputs: "
                  + ", ".join(f"{w} {med[w]:.3f} s" for w in ways)
                  + "; " + ", ".join(f"{w} x{row[f'speedup_{w}']:.2f}" for w in ways if w != "before"))
        both = {w: out["image"][f"{w}_s"] + out["text"][f"{w}_s"] for w in ways}
        out["cache_path"] = {**{f"{w}_s": v for w, v in both.items()},
                             **{f"speedup_{w}": both["before"] / v for w, v in both.items() if w != "before"}}
        print("cache path (image + text features of one batch of new items): "
              + ", ".join(f"{w} x{out['cache_path'][f'speedup_{w}']:.2f}" for w in ways if w != "before"))
    return out


def fold_ab(steps: int, bf16: bool, rounds: int = 2) -> dict:
    """The ViT-B/16-sized step, fp32 and bf16, with ``precision.fold_attention_inputs`` on and off (the models
    then built without it, as before it existed), interleaved; median samples/s over the rounds."""
    import vitlens_cli.models.vitlens as vitlens_module
    import vitlens_cli.training.model_init as model_init

    folding = vitlens_module.fold_attention_inputs
    names = ["b16", "b16-bf16"] if bf16 else ["b16"]
    got: dict[str, list[float]] = {f"{n} {w}": [] for n in names for w in ("unfolded", "folded")}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            for r in range(rounds):
                for way in ("unfolded", "folded"):
                    hook = folding if way == "folded" else (lambda model: model)
                    vitlens_module.fold_attention_inputs = model_init.fold_attention_inputs = hook
                    for n in names:
                        got[f"{n} {way}"].append(run(n, True, steps, Path(tmp) / f"{n}-{way}-{r}"))
        finally:
            vitlens_module.fold_attention_inputs = model_init.fold_attention_inputs = folding
    out = {k: statistics.median(v) for k, v in got.items()}
    for n in names:
        out[f"{n} speedup"] = out[f"{n} folded"] / out[f"{n} unfolded"]
        print(f"{n}: folded {out[f'{n} folded']:.2f} samples/s, unfolded {out[f'{n} unfolded']:.2f}, "
              f"x{out[f'{n} speedup']:.2f}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--cache-only", action="store_true", help="only the feature-cache part")
    ap.add_argument("--fold", action="store_true", help="also the step with attention folding on and off")
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
            if name.endswith("bf16") and result["feature_cache_b16"]["precision"]["precision"] != "bf16":
                print(f"{name}: skipped, this CPU has no native bf16")
                continue
            on = run(name, True, args.steps, Path(tmp) / f"{name}-on")
            off = run(name, False, args.steps, Path(tmp) / f"{name}-off")
            result[name] = {"samples_per_s_cache_on": on, "samples_per_s_cache_off": off, "speedup": on / off}
            print(f"{name}: cache on {on:.2f} samples/s, off {off:.2f} samples/s, ×{on / off:.2f}")
    if args.fold:
        result["fold"] = fold_ab(args.steps, result["feature_cache_b16"]["precision"]["precision"] == "bf16")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
