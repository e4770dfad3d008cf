"""Zero-shot evaluation: prepare clouds in DataLoader workers, encode, rank the classes."""
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
from ..errors import VitlensError
from ..models import ViTLens, prepare_points
from ..models.config import Preprocess
from ..points import PointCloud
from ..precision import autocast, resolve_precision
from .metrics import Metrics, compute_metrics, topk
from .zeroshot import cached_classifier, check_templates


class PreparedDataset(Dataset):
    """Items of a source turned into what the model card asks for; unreadable items become failures."""

    def __init__(self, source, pre: Preprocess, source_up_axis: str | None, seed: int, limit: int | None) -> None:
        self.source = source
        self.pre = pre
        self.source_up_axis = source_up_axis
        self.seed = seed
        self.n = len(source) if limit is None else min(limit, len(source))

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        try:
            pts, label, name = self.source[i]
        except VitlensError as exc:
            return None, -1, str(getattr(exc, "path", i)), str(getattr(exc, "reason", exc))
        rgb = pts[:, 3:6] if pts.shape[1] >= 6 else None
        arr = prepare_points(PointCloud(pts[:, :3], rgb=rgb), self.pre, source_up_axis=self.source_up_axis,
                             seed=self.seed + i)
        return torch.from_numpy(arr), label, name, None


def _collate(batch):
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


def evaluate(model: ViTLens, source: EvalSource, templates: Sequence[str], *, batch_size: int = 32,
             workers: int = 0, limit: int | None = None, seed: int = 0, cache_dir: Path | None = None,
             precision: str = "fp32", on_batch: Callable[[int, int], None] | None = None) -> EvalResult:
    """Run zero-shot classification over ``source``; ``on_batch(done, total)`` reports progress.

    ``precision`` is the autocast of the point tower's forward (:mod:`vitlens_cli.precision`); the
    classifier stays float32, so its cache entries do not depend on it.
    """
    templates = check_templates(templates)
    if model.text is None:
        raise VitlensError(f"model '{model.cfg.card.name}' has no text tower for zero-shot classification")
    device = model.logit_scale.device
    chosen = resolve_precision(precision, device)
    classifier, encoded = cached_classifier(model, source.classes, templates, cache_dir)
    classifier = classifier.to(device)
    data = PreparedDataset(source.dataset, model.cfg.preprocess, source.up_axis, seed, limit)
    # Workers are forked: they only read and resample single clouds, which never enters numba's
    # OpenMP pool (not fork-safe), and forking skips re-importing torch in every worker.
    loader = DataLoader(data, batch_size=batch_size, num_workers=workers, collate_fn=_collate)
    names: list[str] = []
    labels: list[int] = []
    idx_rows, score_rows = [], []
    failures = list(source.failures)  # found while listing the source; not items of ``data``
    listed = len(failures)
    model_time = 0.0
    start = time.perf_counter()
    with torch.inference_mode():
        for points, batch_labels, batch_names, bad in loader:
            failures.extend(bad)
            if points is not None:
                t = time.perf_counter()
                with autocast(chosen, device):
                    emb = model.encode_points(points.to(device))
                emb = torch.nn.functional.normalize(emb.float(), dim=-1)
                scores = (emb @ classifier.T).float().cpu().numpy()
                model_time += time.perf_counter() - t
                i, s = topk(scores, 5)
                idx_rows.append(i)
                score_rows.append(s)
                names.extend(batch_names)
                labels.extend(batch_labels)
            if on_batch is not None:
                on_batch(len(names) + len(failures) - listed, len(data))
    total = time.perf_counter() - start
    if not names:
        raise VitlensError("no shape could be evaluated" + (f" ({len(failures)} failed)" if failures else ""))
    label_arr = np.asarray(labels, dtype=np.int64)
    topk_idx = np.concatenate(idx_rows)
    return EvalResult(names, label_arr, topk_idx, np.concatenate(score_rows),
                      compute_metrics(label_arr, topk_idx, source.classes), list(source.classes), encoded,
                      failures, total, model_time, chosen.name)
