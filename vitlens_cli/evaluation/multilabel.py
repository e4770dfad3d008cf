"""Multi-label zero-shot evaluation (AudioSet): every class scored for every clip, macro mAP over classes.

As ``test_audio_single_map`` of the official ``training/zero_shot.py``: the class classifier is the averaged,
normalised prompt embeddings (the same one single-label eval caches), a clip's logits are the cosines of its
normalised embedding with every class, and the metric is :func:`.retrieval.multilabel_map`. Items are read and
prepared exactly as single-label eval does (:class:`.runner.PreparedDataset`).

``predictions.parquet`` keeps every class score of every clip (``scores``) next to its true classes
(``label_indices``), so the mAP can be recomputed from it (:func:`metrics_from_scores_parquet`).
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import VitlensError
from .metrics import topk
from .retrieval import MultiLabelMetrics, multilabel_map

PER_CLASS_FIELDS = ("class", "index", "positives", "ap")
MAP_PROTOCOL = ("macro mAP: per class, average precision over the evaluated clips (sklearn's rule, ties as one "
                "threshold), then the unweighted mean over the classes with at least one positive clip; "
                "mAP_absent_as_zero counts the others as 0, as the official np.mean(average_precision_score("
                "targets, sigmoid(logits), average=None)) does with current sklearn; the sigmoid is monotonic and "
                "left out")


@dataclass
class MultiLabelResult:
    names: list[str]
    targets: np.ndarray  # (N, C) bool
    scores: np.ndarray  # (N, C) float32 cosines
    metrics: MultiLabelMetrics
    classes: list[str]
    prompts_encoded: int
    failures: list[tuple[str, str]] = field(default_factory=list)
    seconds_total: float = 0.0
    precision: str = "fp32"


def evaluate_multilabel(model, source, templates: Sequence[str], *, batch_size: int = 32, workers: int = 0,
                        limit: int | None = None, seed: int = 0, cache_dir: Path | None = None,
                        precision: str = "fp32",
                        on_batch: Callable[[int, int], None] | None = None) -> MultiLabelResult:
    """Score every class for every item of ``source`` (an ``EvalSource`` whose dataset has ``labels``:
    the class indices of item ``i`` at ``labels[i]``, the item's label being ``i``)."""
    import torch
    from torch.utils.data import DataLoader

    from ..precision import autocast, low_precision_weights, resolve_precision
    from .runner import PreparedDataset, collate_items, model_contract
    from .zeroshot import cached_classifier, check_templates

    templates = check_templates(templates)
    if model.text is None:
        raise VitlensError(f"model '{model.cfg.card.name}' has no text tower for zero-shot classification")
    modality = source.modality
    model.tower(modality)
    device = model.logit_scale.device
    chosen = resolve_precision(precision, device)
    classifier, encoded = cached_classifier(model, source.classes, templates, cache_dir)
    classifier = classifier.to(device)
    data = PreparedDataset(source.dataset, model.cfg.preprocess, None, seed, limit, modality,
                           model_contract(model, modality), False)
    loader = DataLoader(data, batch_size=batch_size, num_workers=workers, collate_fn=collate_items)
    names: list[str] = []
    rows: list[int] = []
    score_rows = []
    failures = list(source.failures)
    start = time.perf_counter()
    with low_precision_weights(model.tower(modality), chosen), torch.inference_mode():
        for x, batch_rows, batch_names, bad in loader:
            failures.extend(bad)
            if x is not None:
                with autocast(chosen, device):
                    emb = model.encode(modality, x.to(device))
                emb = torch.nn.functional.normalize(emb.float(), dim=-1)
                score_rows.append((emb @ classifier.T).float().cpu().numpy())
                names.extend(batch_names)
                rows.extend(batch_rows)
            if on_batch is not None:
                on_batch(len(names) + len(failures) - len(source.failures), len(data))
    if not names:
        raise VitlensError("no item could be evaluated" + (f" ({len(failures)} failed)" if failures else ""))
    scores = np.concatenate(score_rows)
    targets = np.zeros(scores.shape, dtype=bool)
    for r, i in enumerate(rows):
        targets[r, source.dataset.labels[i]] = True
    return MultiLabelResult(names, targets, scores, multilabel_map(scores, targets), list(source.classes), encoded,
                            failures, time.perf_counter() - start, chosen.name)


def _predictions_table(result: MultiLabelResult) -> Any:
    import pyarrow as pa

    idx, vals = topk(result.scores, 5)
    return pa.table({
        "path": pa.array(result.names, pa.string()),
        "label_indices": pa.array([np.flatnonzero(t).tolist() for t in result.targets], pa.list_(pa.int64())),
        "labels": pa.array([[result.classes[j] for j in np.flatnonzero(t)] for t in result.targets],
                           pa.list_(pa.string())),
        "top5_indices": pa.array(idx.tolist(), pa.list_(pa.int64())),
        "top5_scores": pa.array(vals.tolist(), pa.list_(pa.float32())),
        "scores": pa.array(result.scores.tolist(), pa.list_(pa.float32())),
    })


def _per_class_csv(result: MultiLabelResult) -> str:
    import csv
    import io

    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(PER_CLASS_FIELDS)
    m = result.metrics
    for i, name in enumerate(result.classes):
        ap = m.per_class_ap[i]
        writer.writerow((name, i, int(m.per_class_positives[i]), "" if np.isnan(ap) else repr(float(ap))))
    return buf.getvalue()


def write_multilabel_report(out_dir: Path, result: MultiLabelResult, meta: dict[str, Any]) -> dict[str, Path]:
    """``predictions.parquet``, ``per_class.csv`` (AP per class, empty for a class without positives) and
    ``metrics.json`` (last) into ``out_dir``."""
    import pyarrow.parquet as pq

    from .report import METRICS_JSON, PER_CLASS_CSV, PREDICTIONS_PARQUET, json_default, write_all

    out_dir = Path(out_dir)
    summary = result.metrics.summary()
    clash = sorted(set(meta) & set(summary))
    if clash:
        raise VitlensError(f"meta keys {clash} collide with metric names")
    document = json.dumps({**meta, **summary}, indent=2, default=json_default) + "\n"
    table = _predictions_table(result)
    paths = {"predictions": out_dir / PREDICTIONS_PARQUET, "per_class": out_dir / PER_CLASS_CSV,
             "metrics": out_dir / METRICS_JSON}
    write_all(out_dir, [(paths["predictions"], lambda p: pq.write_table(table, p)),
                         (paths["per_class"], lambda p: p.write_text(_per_class_csv(result), encoding="utf-8")),
                         (paths["metrics"], lambda p: p.write_text(document, encoding="utf-8"))])
    return paths


def metrics_from_scores_parquet(parquet: Path, n_classes: int) -> MultiLabelMetrics:
    """The mAP recomputed from a multi-label ``predictions.parquet`` (its ``scores`` and ``label_indices``)."""
    import pyarrow.parquet as pq

    table = pq.read_table(parquet, columns=["scores", "label_indices"]).to_pydict()
    scores = np.asarray(table["scores"], dtype=np.float32)
    targets = np.zeros((len(scores), n_classes), dtype=bool)
    for r, labels in enumerate(table["label_indices"]):
        targets[r, labels] = True
    return multilabel_map(scores, targets)
