"""The training loop: lens ↔ text (+ image) contrastive alignment on a frozen CLIP ViT."""
from __future__ import annotations

import contextlib
import csv
import fnmatch
import io
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..atomic import write_atomic, write_text_atomic
from ..distributed import DistInfo, barrier, cleanup, gather_no_grad, gather_with_grad, init_distributed
from ..errors import CheckpointError, ConfigError
from ..models.checkpoints import save_model
from ..models.identity import tower_identity
from ..precision import autocast, resolve_precision
from . import checkpoint as ckpt
from .data import Schedule, TrainExamples, make_loader, make_source
from .features import FeatureCache, ImageFeatures, image_view, load_image
from .losses import TriClipLoss, clip_loss
from .model_init import build_training_model
from .recipe import SYNTHETIC_HELDOUT, OptimSection, Recipe, model_config, recipe_data, save_recipe
from .schedule import lr_factor


@dataclass
class StepLog:
    step: int
    total: int
    epoch: int
    loss: float
    lr: float
    logit_scale: float
    samples_per_s: float
    seconds: float
    val_top1: float | None = None


@dataclass
class TrainResult:
    output_dir: Path
    final_dir: Path | None
    steps: int
    last_loss: float
    features_encoded: int
    val_top1: float | None = None           # the last validation's zero-shot top-1


def optimizer_groups(model: torch.nn.Module, optim: OptimSection) -> list[dict]:
    """Optimizer groups: the recipe's ``param_groups`` (first matching pattern wins) and the rest, each split
    into decayed and exempt parameters: no decay on norms, biases, gains, embeddings' offsets and the logit
    scale (the published rule)."""
    buckets: dict[tuple[str | None, float], list] = {}
    matched: set[str] = set()
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        group = next((g for g, spec in optim.param_groups.items()
                      if any(fnmatch.fnmatchcase(name, pat) for pat in spec.params)), None)
        spec = optim.param_groups.get(group) if group is not None else None
        matched.update([group] if group is not None else [])
        exempt = p.ndim < 2 or "logit_scale" in name or name.endswith(("class_embedding", "positional_embedding"))
        decay = optim.weight_decay if spec is None or spec.weight_decay is None else spec.weight_decay
        buckets.setdefault((group, 0.0 if exempt else decay), []).append(p)
    for group, spec in optim.param_groups.items():
        if group not in matched:
            raise ConfigError(f"optim.param_groups.{group}.params: {', '.join(spec.params)} match no trainable "
                              "parameter (see trainable.json of a run)")
    return [{"params": params, "weight_decay": decay, "group": group or "default",
             "lr_scale": optim.param_groups[group].lr_scale if group is not None else 1.0}
            for (group, decay), params in buckets.items()]


def _optimizer(model: torch.nn.Module, optim: OptimSection) -> torch.optim.Optimizer:
    groups = optimizer_groups(model, optim)
    if optim.name == "sgd":
        return torch.optim.SGD(groups, lr=optim.lr, momentum=optim.momentum)
    return torch.optim.AdamW(groups, lr=optim.lr, betas=tuple(optim.betas), eps=optim.eps)


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _check_resumable(state: dict, path: Path, recipe: Recipe, cfg, tm, model) -> None:
    """Refuse a checkpoint this recipe cannot continue: another model, lens, trainable set or optimizer."""
    saved = state.get("recipe") if isinstance(state.get("recipe"), dict) else {}
    saved_model = saved.get("model") if isinstance(saved.get("model"), dict) else {}
    hint = "resume with the recipe it was trained with"
    if saved_model.get("spec", recipe.model.spec) != recipe.model.spec:
        raise CheckpointError(f"{path}: trained with model.spec {saved_model.get('spec')!r}, the recipe says "
                              f"{recipe.model.spec!r}; {hint}")
    if saved_model.get("modality", "3d") != recipe.model.modality:
        raise CheckpointError(f"{path}: trained a {saved_model.get('modality', '3d')} lens, the recipe's "
                              f"model.modality is {recipe.model.modality!r}; {hint}")
    if isinstance(state.get("lens"), dict):
        before, now = _flat(state["lens"]), _flat(cfg.tower(recipe.model.modality).to_dict())
        diff = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))
        if diff:
            k = diff[0]
            section = "model.lens" if recipe.model.modality == "3d" else "model.tower"
            raise CheckpointError(f"{path}: trained with another lens ({section}.{k}: {before.get(k)!r} in the "
                                  f"checkpoint, {now.get(k)!r} in the recipe); {hint}")
    if state.get("trainable") != tm.trainable:
        raise CheckpointError(f"{path}: trained with a different trainable set (model.unlock); {hint}")
    saved_optim = saved.get("optim") if isinstance(saved.get("optim"), dict) else {}
    if saved_optim.get("name", "adamw") != recipe.optim.name:
        raise CheckpointError(f"{path}: trained with optim.name {saved_optim.get('name', 'adamw')!r}, the recipe says "
                              f"{recipe.optim.name!r}; {hint}")
    expected = ckpt.model_state(model, tm.trainable)
    weights = state.get("model") if isinstance(state.get("model"), dict) else {}
    for key in sorted(expected.keys() | weights.keys()):
        a, b = expected.get(key), weights.get(key)
        if a is None or not isinstance(b, torch.Tensor) or a.shape != b.shape:
            shape = tuple(b.shape) if isinstance(b, torch.Tensor) else "missing"
            raise CheckpointError(f"{path}: weight {key} is {shape} in the checkpoint, "
                                  f"{tuple(a.shape) if a is not None else 'not in the model'} here; {hint}")


def _write_metrics(out: Path, rows: list[dict]) -> None:
    if not rows:
        return
    write_text_atomic(out / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(out / "metrics.csv", buf.getvalue())


def _loss_curve(out: Path, rows: list[dict], title: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot([r["step"] for r in rows], [r["loss"] for r in rows])
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    fig.tight_layout()
    write_atomic(out / "loss.png", lambda p: fig.savefig(p, format="png"))


def _read_rows(out: Path, upto: int) -> list[dict]:
    """Rows logged up to and including step ``upto`` (where a resumed run picks up)."""
    path = out / "metrics.jsonl"
    if not path.is_file():
        return []
    return [r for r in map(json.loads, path.read_text().splitlines()) if r["step"] <= upto]


def train(recipe: Recipe, *, resume: str | Path | None = None, device: str = "auto",
          on_step: Callable[[StepLog], None] | None = None,
          on_warning: Callable[[str], None] | None = None) -> TrainResult:
    """Run a recipe (under torchrun for several processes). Rank 0 writes all files.

    ``on_step`` is called on rank 0 after each optimiser step, once that step's checkpoint is written;
    ``on_warning`` on rank 0 with one line per problem the run works around (a damaged checkpoint passed over).
    """
    info = init_distributed(device)
    try:
        return _train(recipe, info, resume, on_step, on_warning)
    finally:
        cleanup(info)


def _train(recipe: Recipe, info: DistInfo, resume, on_step, on_warning) -> TrainResult:
    out = Path(recipe.output_dir)
    ckpt_dir = out / "checkpoints"
    torch.manual_seed(recipe.seed)
    cfg = model_config(recipe)
    modality = recipe.model.modality
    source = make_source(recipe.data, recipe.seed, modality)  # before the model: a wrong data root fails at once
    tm = build_training_model(recipe, cfg)
    model = tm.model.to(info.device)
    image_tower = tm.image_tower.to(info.device) if tm.image_tower is not None else None
    schedule = Schedule(len(source), recipe.batch_size, info.world_size, recipe.grad_accum, recipe.seed)
    if schedule.steps_per_epoch < 1:
        raise ConfigError(f"{len(source)} training items cannot fill one step of {schedule.per_step}")
    total = recipe.max_steps if recipe.max_steps is not None else recipe.epochs * schedule.steps_per_epoch

    optimizer = _optimizer(model, recipe.optim)
    chosen = resolve_precision(recipe.precision, info.device)  # fp16 off CUDA is refused before any step
    scaler = torch.amp.GradScaler("cuda") if recipe.precision == "fp16" else None
    start = 0
    if resume is not None:
        state, path, passed_over = ckpt.load_resume(resume, ckpt_dir)
        if on_warning is not None and info.is_main:
            for line in passed_over:
                on_warning(f"{line}; resuming from {path.name}")
        _check_resumable(state, path, recipe, cfg, tm, model)
        # The recipe's hyper-parameters (lr scales, decay, betas) win over the ones saved with the state.
        settings = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
        try:
            model.load_state_dict(state["model"], strict=False)
            optimizer.load_state_dict(state["optimizer"])
            if scaler is not None and state.get("scaler"):
                scaler.load_state_dict(state["scaler"])
            ckpt.restore_rng(state["rng"])
            start = int(state["step"])
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise CheckpointError(f"{path}: cannot continue this recipe from it ({type(exc).__name__}: "
                                  f"{str(exc).splitlines()[0] if str(exc) else 'incomplete'}); optim.param_groups "
                                  "or the optimizer changed?") from None
        for group, setting in zip(optimizer.param_groups, settings):
            group.update(setting)
        if start > total:
            raise ConfigError(f"max_steps: the checkpoint {path.name} is at step {start}; "
                              f"set max_steps above it to train on, got {total}")
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        save_recipe(recipe, out / "recipe.yaml")
        write_text_atomic(out / "trainable.json", json.dumps(tm.trainable, indent=1))

    tower = model.tower(modality)
    if info.enabled:
        tower = torch.nn.parallel.DistributedDataParallel(tower, device_ids=None if info.device.type == "cpu"
                                                          else [info.device.index])
    bound = dict(enabled=recipe.cache_features, chunk=recipe.batch_size,
                 identity=tower_identity(recipe.model.clip_model, recipe.model.clip_pretrained, recipe.model.spec,
                                         recipe.seed),
                 max_bytes=None if recipe.feature_cache_mb is None else recipe.feature_cache_mb << 20)

    def frozen(encode):
        # The frozen towers run at the recipe's precision too: on ULIP-2-like data nearly every image is new,
        # so their forward is a large share of the step. The caches cast the features to fp32.
        def run(items: list) -> torch.Tensor:
            with autocast(chosen, info.device):
                return encode(items)
        return run

    text_cache = FeatureCache(frozen(model.encode_text), **bound)
    images = None
    if image_tower is not None:
        def encode_images(paths: list) -> torch.Tensor:
            return image_tower(torch.stack([tm.image_transform(load_image(im)) for im in paths]).to(info.device))

        images = ImageFeatures(FeatureCache(frozen(encode_images), **bound),
                               frozen(lambda views: image_tower(torch.stack(views).to(info.device))))
    triclip = TriClipLoss()
    examples = TrainExamples(source, cfg, recipe,
                             image_view=image_view(tm.image_transform) if image_tower is not None else None)
    loader = make_loader(examples, schedule, info.rank, start, total, recipe.data.workers)
    batches = iter(loader)
    rows = _read_rows(out, start) if info.is_main else []
    writer = None
    if recipe.tensorboard and info.is_main:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise ConfigError("tensorboard: true needs the tensorboard package (pip install 'vitlens[tensorboard]')") from exc
        writer = SummaryWriter(str(out / "tensorboard"))
    max_log_scale = math.log(recipe.logit_scale_max)
    last_loss = float("nan")
    last_val = None
    for step in range(start, total):
        t0 = time.perf_counter()
        lr = recipe.optim.lr * lr_factor(step, recipe.optim.warmup_steps, total, recipe.optim.schedule)
        for group in optimizer.param_groups:
            group["lr"] = lr * group["lr_scale"]
        optimizer.zero_grad(set_to_none=True)
        step_loss = 0.0
        for micro in range(recipe.grad_accum):
            batch = next(batches)
            with torch.no_grad():
                text = _text_features(batch, text_cache, info)
                image = _image_features(batch, images, info)
            sync = micro == recipe.grad_accum - 1 or not info.enabled
            with (contextlib.nullcontext() if sync else tower.no_sync()):
                with autocast(chosen, info.device):
                    lens = tower(batch["input"].to(info.device))
                lens = F.normalize(lens.float(), dim=-1)
                lens_all = gather_with_grad(lens, info)
                text_all = gather_no_grad(text, info)
                scale = model.logit_scale.exp()
                if image is not None:
                    loss = triclip(gather_no_grad(image, info), text_all, lens_all, scale)
                else:
                    loss = clip_loss(text_all, lens_all, scale)
                loss = loss / recipe.grad_accum
                (scaler.scale(loss) if scaler is not None else loss).backward()
            step_loss += float(loss.detach())
        if scaler is not None:
            scaler.unscale_(optimizer)
        if recipe.optim.grad_clip:
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], recipe.optim.grad_clip)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, max_log_scale)
        last_loss = step_loss
        seconds = time.perf_counter() - t0
        done = step + 1
        log = StepLog(done, total, step // schedule.steps_per_epoch, step_loss, lr, float(model.logit_scale.detach().exp()),
                      schedule.per_step / seconds, seconds)
        if recipe.validation.every and done % recipe.validation.every == 0 and info.is_main:
            log.val_top1 = last_val = _validate(model, recipe, cfg)
        if info.is_main:
            rows.append({"step": log.step, "epoch": log.epoch, "loss": log.loss, "lr": log.lr,
                         "logit_scale": log.logit_scale, "samples_per_s": log.samples_per_s,
                         "val_top1": log.val_top1})
            if writer is not None:
                writer.add_scalar("loss", log.loss, done)
                writer.add_scalar("lr", lr, done)
            if done % recipe.log_every == 0 or done == total:
                _write_metrics(out, rows)
            if done % recipe.save_every == 0 or done == total:
                ckpt.save(ckpt_dir, done, {
                    "model": ckpt.model_state(model, tm.trainable), "trainable": tm.trainable,
                    "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict() if scaler else None,
                    "scheduler": {"kind": recipe.optim.schedule, "warmup": recipe.optim.warmup_steps,
                                  "total": total, "step": done},
                    "rng": ckpt.rng_state(), "recipe": recipe_data(recipe), "lens": cfg.tower(modality).to_dict()})
        if on_step is not None and info.is_main:
            on_step(log)
    barrier(info)
    final = None
    if info.is_main:
        model.eval()
        final = save_model(_with_card(model, recipe), out / "final")
        _write_metrics(out, rows)
        if rows:
            _loss_curve(out, rows, recipe.name)
        if writer is not None:
            writer.close()
    return TrainResult(out, final, total, last_loss, text_cache.encoded + (images.encoded if images else 0),
                       last_val)


def _with_card(model, recipe: Recipe):
    card = replace(model.cfg.card, name=recipe.name, source=f"trained with recipe '{recipe.name}'",
                   description=recipe.description or model.cfg.card.description)
    model.cfg = replace(model.cfg, card=card, init_seed=None)
    return model


def _text_features(batch: dict, cache: FeatureCache, info: DistInfo) -> torch.Tensor:
    if batch["text_feat"] is not None:
        return F.normalize(batch["text_feat"].to(info.device), dim=-1)
    if any(t is None for t in batch["text"]):
        raise ConfigError("a training item has neither text nor a text feature")
    return cache(batch["text"], batch["text"]).to(info.device)


def _image_features(batch: dict, images: ImageFeatures | None, info: DistInfo) -> torch.Tensor | None:
    if batch["image_feat"] is not None:
        return F.normalize(batch["image_feat"].to(info.device), dim=-1)
    if images is None:
        return None
    feats = images(batch["image"], batch["view"])
    return None if feats is None else feats.to(info.device)


HELDOUT_SEED_OFFSET = 10_000
HELDOUT_SIZE = 300


@torch.no_grad()
def heldout_top1(model, recipe: Recipe, cfg, batch_size: int = 32) -> float:
    """Zero-shot top-1 on held-out synthetic items: the recipe's synthetic data drawn under its seed
    + ``HELDOUT_SEED_OFFSET`` (``validation.limit`` items, every class equally often), not augmented,
    ranked against the classes' prompts in the recipe's caption templates (default: the modality's own set)."""
    from ..data.meta import default_templates, templates
    from ..evaluation.zeroshot import zeroshot_classifier

    opts = recipe.data.options
    seed = (recipe.seed if opts.seed is None else opts.seed) + HELDOUT_SEED_OFFSET
    data = replace(recipe.data, options=replace(opts, size=recipe.validation.limit or HELDOUT_SIZE, seed=seed))
    source = make_source(data, seed, recipe.model.modality)
    classes = source.shapes.classes if hasattr(source, "shapes") else source.classes
    examples = TrainExamples(source, cfg, recipe, augment=False)
    tower = model.tower(recipe.model.modality)
    # a non-3D lens is ranked on its modality's prompt set (the official zero-shot code's), not 3D's
    prompts = opts.templates or templates(default_templates(recipe.model.modality))
    classifier = zeroshot_classifier(model, classes, prompts)
    correct = 0
    for start in range(0, len(examples), batch_size):
        idx = range(start, min(start + batch_size, len(examples)))
        batch = torch.from_numpy(np.stack([examples[(0, i)]["input"] for i in idx]))
        emb = F.normalize(tower(batch.to(classifier.device)), dim=-1)
        predicted = (emb @ classifier.T).argmax(dim=1).cpu().numpy()
        correct += int((predicted == np.arange(idx.start, idx.stop) % len(classes)).sum())
    return correct / len(examples)


def _validate(model, recipe: Recipe, cfg) -> float:
    from ..data.benchmarks import open_source
    from ..data.meta import templates
    from ..evaluation.runner import evaluate

    v = recipe.validation
    if v.benchmark is None:
        raise ConfigError("validation.every is set but validation.benchmark is not")
    model.eval()
    try:
        if v.benchmark == SYNTHETIC_HELDOUT:
            return heldout_top1(model, recipe, cfg)
        source = open_source(v.benchmark, Path(v.data_root) if v.data_root else None)
        result = evaluate(model, source, templates(), limit=v.limit, workers=0,
                          cache_dir=Path(recipe.output_dir) / "classifier-cache")
        return result.metrics.top1
    finally:
        model.train()
