"""Feeding the loop: which items each rank sees at each step, prepared and augmented in workers.

The order is a function of (seed, epoch) alone and every item's randomness of (seed, epoch, index),
so K processes with batch b see exactly what one process with batch K·b sees, and a resumed run
continues with the very items the interrupted one would have used.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..data.augment import augment_points
from ..errors import ConfigError
from ..models.config import Preprocess
from ..models.preprocess import prepare_points
from ..points import PointCloud
from .recipe import DataSection, Recipe


def make_source(data: DataSection, seed: int):
    """The dataset a recipe names, built with its checked ``data.options`` (see ``recipe.DATA_OPTIONS``)."""
    from ..data import synthetic, triplets

    kind = data.kind
    opts = data.options
    if kind == "synthetic":
        return synthetic.SyntheticTriplets(opts.size, seed=seed if opts.seed is None else opts.seed,
                                           classes=tuple(opts.classes), caption_templates=opts.templates)
    if not data.root:
        raise ConfigError(f"data.root: data.kind '{kind}' needs a data root")
    root = Path(data.root)
    want_file = kind == "captions"
    if not (root.is_file() if want_file else root.is_dir()):
        what = "CSV file" if want_file else "folder"
        raise ConfigError(f"data.root: {root}: {'not a ' if root.exists() else 'no such '}{what}")
    if kind == "ulip-shapenet":
        return triplets.ULIPShapeNetTriplets(root, split=data.split, seed=seed, image_dir=opts.image_dir,
                                             whole=opts.whole, use_templates=opts.use_templates)
    if kind == "ulip2-objaverse":
        return triplets.ULIP2ObjaverseTriplets(root, seed=seed)
    if kind == "openshape":
        split_json = opts.split_json or f"meta_data/split/{data.split}.json"
        return triplets.OpenShapeTriplets(root, split_json, seed=seed, text_source=tuple(opts.text_source),
                                          use_prompt_engineering=opts.use_prompt_engineering,
                                          gpt4_filtering=opts.gpt4_filtering)
    return triplets.CaptionedShapes(root, seed=seed)


class TrainExamples(Dataset):
    """``ds[(epoch, i)]`` → one prepared, augmented example as a dict of arrays/strings."""

    def __init__(self, source, pre: Preprocess, recipe: Recipe, source_up_axis: str | None = None) -> None:
        self.source = source
        self.pre = pre
        self.augment = recipe.data.augment
        self.seed = recipe.seed
        self.source_up_axis = source_up_axis

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        epoch, i = key
        if getattr(self.source, "epoch", None) != epoch:
            self.source.set_epoch(epoch)
        t = self.source[i]
        rng = np.random.default_rng([self.seed, epoch, i, 7])
        rgb = t.points[:, 3:6] if t.points.shape[1] >= 6 else None
        pts = prepare_points(PointCloud(t.points[:, :3], rgb=rgb), self.pre, source_up_axis=self.source_up_axis,
                             seed=int(rng.integers(2**31)))
        pts = augment_points(pts, self.augment, self.pre.up_axis, rng).astype(np.float32)
        return {"points": pts, "text": t.text, "image": t.image, "text_feat": t.text_feat,
                "image_feat": t.image_feat, "key": t.key}


def collate(items: list[dict]) -> dict:
    out = {"points": torch.from_numpy(np.stack([it["points"] for it in items])),
           "key": [it["key"] for it in items], "text": [it["text"] for it in items],
           "image": [it["image"] for it in items]}
    for name in ("text_feat", "image_feat"):
        feats = [it[name] for it in items]
        out[name] = None if any(f is None for f in feats) else \
            torch.from_numpy(np.stack([np.asarray(f, np.float32).reshape(-1) for f in feats]))
    return out


@dataclass(frozen=True)
class Schedule:
    """How many items make one optimiser step and where step ``s`` reads them."""

    size: int
    batch: int          # per rank, per micro-batch
    world: int
    accum: int
    seed: int

    @property
    def per_step(self) -> int:
        return self.batch * self.world * self.accum

    @property
    def steps_per_epoch(self) -> int:
        return self.size // self.per_step

    def indices(self, step: int, micro: int, rank: int) -> list[tuple[int, int]]:
        epoch, within = divmod(step, self.steps_per_epoch)
        order = np.random.default_rng([self.seed, epoch]).permutation(self.size)
        start = within * self.per_step + (micro * self.world + rank) * self.batch
        return [(epoch, int(i)) for i in order[start:start + self.batch]]


class StepBatches(Sampler):
    def __init__(self, schedule: Schedule, rank: int, start_step: int, total_steps: int) -> None:
        self.schedule, self.rank, self.start, self.total = schedule, rank, start_step, total_steps

    def __len__(self) -> int:
        return (self.total - self.start) * self.schedule.accum

    def __iter__(self):
        for step in range(self.start, self.total):
            for micro in range(self.schedule.accum):
                yield self.schedule.indices(step, micro, self.rank)


def make_loader(examples: TrainExamples, schedule: Schedule, rank: int, start_step: int, total_steps: int,
                workers: int) -> DataLoader:
    return DataLoader(examples, batch_sampler=StepBatches(schedule, rank, start_step, total_steps),
                      num_workers=workers, collate_fn=collate)
