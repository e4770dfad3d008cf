"""Zero-shot classification of any modality: prepare items in DataLoader workers (3D clouds as the model card
asks, other files through their modality plug-in; prepared caches as stored), encode with the model's tower
of that modality, rank the classes."""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..data.benchmarks import EvalSource
from ..data.cache import PER_ITEM
from ..errors import ConfigError, VitlensError
from ..modalities import get_modality
from ..modalities.base import first_line
from ..models import ViTLens, prepare_points
from ..models.config import Preprocess
from ..points import PointCloud
from ..precision import autocast, low_precision_weights, resolve_precision
from .metrics import Metrics, compute_metrics, group_top1, topk
from .zeroshot import cached_classifier, check_templates

POINTS = "3d"


class PreparedDataset(Dataset):
    """Items of a source turned into what the model card asks for; unreadable items become failures.

    3D items are sampled under ``pre`` (seeded per item); raw items of another modality go through
    ``modality``'s plug-in under ``contract``; ``prepared`` items are lens inputs already.
    """

    def __init__(self, source, pre: Preprocess | None, source_up_axis: str | None, seed: int, limit: int | None,
                 modality: str = POINTS, contract: Any = None, prepared: bool = False) -> None:
        self.source = source
        self.pre = pre
        self.source_up_axis = source_up_axis
        self.seed = seed
        self.modality = modality
        self.contract = contract
        self.prepared = prepared
        self.n = len(source) if limit is None else min(limit, len(source))

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        try:
            item, label, name = self.source[i]
            if self.prepared:
                return torch.from_numpy(np.ascontiguousarray(item, dtype=np.float32)), label, name, None
            if self.modality != POINTS:
                return get_modality(self.modality).preprocess(item, self.contract), label, name, None
        except VitlensError as exc:
            where = getattr(exc, "path", None)
            return None, -1, str(where if where is not None else self._name(i)), str(getattr(exc, "reason", exc))
        except (OSError, ValueError) as exc:
            if self.modality == POINTS:
                raise
            # decoders of other modalities raise their own errors for damaged files: one skipped item each
            return None, -1, self._name(i), first_line(exc)
        rgb = item[:, 3:6] if item.shape[1] >= 6 else None
        arr = prepare_points(PointCloud(item[:, :3], rgb=rgb), self.pre, source_up_axis=self.source_up_axis,
                             seed=self.seed + i)
        return torch.from_numpy(arr), label, name, None

    def _name(self, i: int) -> str:
        names = getattr(self.source, "names", None)
        return names[i] if names is not None else str(i)


def collate_items(batch: list[tuple]) -> tuple[torch.Tensor | None, list, list, list[tuple[str, str]]]:
    """Stack the prepared items of a batch; items that failed to prepare come back as (name, reason)."""
    good = [b for b in batch if b[0] is not None]
    bad = [(b[2], b[3]) for b in batch if b[0] is None]
    points = torch.stack([b[0] for b in good]) if good else None
    return points, [b[1] for b in good], [b[2] for b in good], bad


@dataclass
class EvalResult:
    names: list[str]
    labels: np.ndarray
    topk_idx: np.ndarray
    topk_scores: np.ndarray
    metrics: Metrics
    classes: list[str]
    prompts_encoded: int
    failures: list[tuple[str, str]] = field(default_factory=list)
    seconds_total: float = 0.0
    seconds_model: float = 0.0
    precision: str = "fp32"

    @property
    def shapes_per_second(self) -> float:
        return len(self.names) / self.seconds_total if self.seconds_total else 0.0

    @property
    def share_outside_model(self) -> float:
        return 1.0 - self.seconds_model / self.seconds_total if self.seconds_total else 0.0

    def predictions(self) -> Any:
        """One row per shape as a pandas DataFrame: path, label, label_index, top5_labels/indices/scores
        (the rows of ``predictions.parquet``)."""
        from .report import predictions_table

        return predictions_table(self.names, self.labels, self.topk_idx, self.topk_scores, self.classes).to_pandas()


def model_contract(model: ViTLens, modality: str) -> Any:
    """The preprocessing contract the model card records for ``modality`` (the plug-in's default if none)."""
    if modality == POINTS:
        return model.cfg.preprocess
    return get_modality(modality).contract_from_dict(model.cfg.contracts.get(modality, {}))


def check_prepared_contract(model: ViTLens, source: EvalSource) -> None:
    """A prepared cache's items fit the model only if they went through the contract its card records."""
    wanted = get_modality(source.modality).contract_to_dict(model_contract(model, source.modality))
    stored = dict(source.contract or {})
    differ = sorted(k for k in set(wanted) | set(stored)
                    if wanted.get(k) != stored.get(k) and stored.get(k) != PER_ITEM)
    if differ:
        shown = ", ".join(f"{k}={stored.get(k)!r} (model: {wanted.get(k)!r})" for k in differ[:4])
        raise ConfigError(source.benchmark, f"prepared with {source.modality} preprocessing that model "
                                            f"'{model.cfg.card.name}' does not use: {shown}")


def evaluate(model: ViTLens, source: EvalSource, templates: Sequence[str], *, batch_size: int = 32,
             workers: int = 0, limit: int | None = None, seed: int = 0, cache_dir: Path | None = None,
             precision: str = "fp32", on_batch: Callable[[int, int], None] | None = None) -> EvalResult:
    """Run zero-shot classification over ``source`` with the model's tower of ``source.modality``;
    ``on_batch(done, total)`` reports progress.

    ``precision`` is the autocast of the tower's forward (:mod:`vitlens_cli.precision`); the classifier
    stays float32, so its cache entries do not depend on it. The classifier is built from
    ``source.prompts`` (the classes unless the benchmark prompts others); predictions are mapped to
    ``source.classes`` through ``source.prompt_to_class`` before scoring, and ``source.groups`` are
    scored apart (``metrics.groups``).
    """
    templates = check_templates(templates)
    if model.text is None:
        raise VitlensError(f"model '{model.cfg.card.name}' has no text tower for zero-shot classification")
    modality = source.modality
    model.tower(modality)
    if source.prepared:
        check_prepared_contract(model, source)
    device = model.logit_scale.device
    chosen = resolve_precision(precision, device)
    prompts = source.prompts or source.classes
    to_class = np.asarray(source.prompt_to_class or range(len(prompts)), np.int64)
    classifier, encoded = cached_classifier(model, prompts, templates, cache_dir)
    classifier = classifier.to(device)
    data = PreparedDataset(source.dataset, model.cfg.preprocess, source.up_axis, seed, limit, modality,
                           None if modality == POINTS else model_contract(model, modality), source.prepared)
    # Workers are forked: they only read and prepare single items, which never enters numba's
    # OpenMP pool (not fork-safe), and forking skips re-importing torch in every worker.
    loader = DataLoader(data, batch_size=batch_size, num_workers=workers, collate_fn=collate_items)
    names: list[str] = []
    labels: list[int] = []
    idx_rows, score_rows = [], []
    failures = list(source.failures)  # found while listing the source; not items of ``data``
    listed = len(failures)
    model_time = 0.0
    start = time.perf_counter()
    with low_precision_weights(model.tower(modality), chosen), torch.inference_mode():
        for points, batch_labels, batch_names, bad in loader:
            failures.extend(bad)
            if points is not None:
                t = time.perf_counter()
                with autocast(chosen, device):
                    emb = model.encode(modality, points.to(device))
                emb = torch.nn.functional.normalize(emb.float(), dim=-1)
                scores = (emb @ classifier.T).float().cpu().numpy()
                model_time += time.perf_counter() - t
                i, s = topk(scores, 5)
                idx_rows.append(to_class[i])
                score_rows.append(s)
                names.extend(batch_names)
                labels.extend(batch_labels)
            if on_batch is not None:
                on_batch(len(names) + len(failures) - listed, len(data))
    total = time.perf_counter() - start
    if not names:
        raise VitlensError("no item could be evaluated" + (f" ({len(failures)} failed)" if failures else ""))
    label_arr = np.asarray(labels, dtype=np.int64)
    topk_idx = np.concatenate(idx_rows)
    metrics = compute_metrics(label_arr, topk_idx, source.classes)
    for group, of_item in source.groups.items():
        kept = [k for k, n in enumerate(names) if n in of_item]
        if kept:
            metrics.groups[group] = group_top1(label_arr[kept], topk_idx[kept, 0], [of_item[names[k]] for k in kept])
    return EvalResult(names, label_arr, topk_idx, np.concatenate(score_rows), metrics, list(source.classes),
                      encoded, failures, total, model_time, chosen.name)
