"""Retrieval metrics from a similarity matrix and a relevance matrix: R@k, AP / mAP, median and mean rank.

One query per row of ``scores`` ``(Q, G)`` (higher = more similar) over a gallery of ``G`` entries, and a
boolean ``relevance`` ``(Q, G)`` marking the gallery entries that count as correct for each query. Every
direction and benchmark is this one shape:

- text→audio on Clotho: a query per caption, relevant = the one clip it describes;
- audio→text: a query per clip, relevant = its 5 captions (a hit at k when ANY of them is in the top k);
- AudioSet macro mAP: a query per class over the clips, relevant = the clips labelled with it; the official
  number is :func:`multilabel_map`, whose AP merges tied scores as sklearn does (below).

Conventions (the ones published retrieval numbers use):

- ranks are 1-based; ``R@k`` is the fraction of queries whose best-ranked relevant entry has rank ≤ k;
- ``AP`` of a query averages, over its relevant entries, the precision at each one's rank
  (``mean_j j / rank_j`` with the relevant ranks sorted); ``mAP`` is the unweighted mean over queries;
- median / mean rank are taken over the rank of each query's best-ranked relevant entry;
- ties: equal scores rank in gallery order (the smaller index first), the rule :func:`metrics.topk` uses, so
  results never depend on the sort implementation; NaN scores rank last. ``sklearn.metrics.average_precision_score``
  instead merges tied scores into one threshold, so the two agree exactly only without ties;
- a query without any relevant entry has no rank and no AP: it is an error here, and callers drop such queries
  (a class absent from the evaluation set, a caption whose files were all skipped) and record how many.

Numpy only; torch tensors on the CPU are accepted as they are (``np.asarray``).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .metrics import MetricsInputError

DEFAULT_KS = (1, 5, 10)
# Queries are ranked in blocks of about this many cells, so a 527 × 20,000 AudioSet matrix needs no 10 GB.
_BLOCK_CELLS = 1 << 22


@dataclass(eq=False)
class RetrievalMetrics:
    """The summary of one direction and its per-query values (arrays of length ``n_queries``)."""

    n_queries: int
    n_gallery: int
    recall: dict[int, float]
    mean_ap: float
    median_rank: float
    mean_rank: float
    first_rank: np.ndarray = field(repr=False)
    average_precision: np.ndarray = field(repr=False)
    relevant_ranks: list[np.ndarray] = field(repr=False)

    def summary(self) -> dict[str, Any]:
        """JSON-ready scalars: ``n_queries``, ``n_gallery``, ``R@k`` per k, ``mAP``, ``median_rank``, ``mean_rank``."""
        return {"n_queries": self.n_queries, "n_gallery": self.n_gallery,
                **{f"R@{k}": v for k, v in self.recall.items()},
                "mAP": self.mean_ap, "median_rank": self.median_rank, "mean_rank": self.mean_rank}


def _score_matrix(scores: Any, labels: Any, name: str, rows: str, cols: str) -> tuple[np.ndarray, np.ndarray]:
    """Numeric ``scores`` and boolean ``labels`` (``name``) of one non-empty 2-D shape ``(rows, cols)``."""
    scores = np.asarray(scores)
    labels = np.asarray(labels)
    if scores.ndim != 2:
        raise MetricsInputError(f"scores must be 2-D ({rows}, {cols}), got shape {scores.shape}")
    if labels.shape != scores.shape:
        raise MetricsInputError(f"{name} shape {labels.shape} != scores shape {scores.shape}")
    if not np.issubdtype(scores.dtype, np.number):
        raise MetricsInputError(f"scores must be numeric, got dtype {scores.dtype}")
    if labels.dtype != np.bool_:
        if not np.issubdtype(labels.dtype, np.number) or not np.isin(labels, (0, 1)).all():
            raise MetricsInputError(f"{name} must be boolean (or 0/1)")
        labels = labels.astype(np.bool_)
    q, g = scores.shape
    if q == 0 or g == 0:
        raise MetricsInputError(f"nothing to rank: {q} {rows} over {g} {cols}")
    return scores, labels


def _check(scores: Any, relevance: Any) -> tuple[np.ndarray, np.ndarray]:
    scores, relevance = _score_matrix(scores, relevance, "relevance", "queries", "gallery entries")
    counts = relevance.sum(axis=1)
    if (counts == 0).any():
        first = int(np.flatnonzero(counts == 0)[0])
        raise MetricsInputError(f"query {first} has no relevant gallery entry ({int((counts == 0).sum())} such "
                                "queries); drop them before ranking")
    return scores, relevance


def rank_order(scores: Any) -> np.ndarray:
    """``(Q, G)`` gallery indices per query, best first: ties in gallery order, NaN last."""
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise MetricsInputError(f"scores must be 2-D (queries, gallery), got shape {scores.shape}")
    # float64 negation is exact for every input dtype (unsigned too); a stable sort keeps equal scores in
    # gallery order, and numpy sorts NaN after every number.
    return np.argsort(-scores.astype(np.float64, copy=False), axis=1, kind="stable")


def relevant_ranks(scores: Any, relevance: Any) -> list[np.ndarray]:
    """Per query, the sorted 1-based ranks of its relevant gallery entries."""
    return _ranks(*_check(scores, relevance))


def _ranks(scores: np.ndarray, relevance: np.ndarray) -> list[np.ndarray]:
    ranks: list[np.ndarray] = []
    g = scores.shape[1]
    step = max(1, _BLOCK_CELLS // g)
    for start in range(0, scores.shape[0], step):
        order = rank_order(scores[start:start + step])
        hit = np.take_along_axis(relevance[start:start + step], order, axis=1)
        ranks.extend(np.flatnonzero(row).astype(np.int64) + 1 for row in hit)
    return ranks


def average_precision_from_ranks(ranks: np.ndarray) -> float:
    """AP of one query from the sorted 1-based ranks of its relevant entries: ``mean_j (j / ranks[j-1])``."""
    ranks = np.asarray(ranks, dtype=np.int64)
    if ranks.ndim != 1 or ranks.size == 0:
        raise MetricsInputError(f"ranks must be a non-empty 1-D array, got shape {ranks.shape}")
    if ranks[0] < 1 or (np.diff(ranks) <= 0).any():
        raise MetricsInputError("ranks must be 1-based, strictly increasing")
    return float(np.mean(np.arange(1, ranks.size + 1) / ranks))


def retrieval_metrics(scores: Any, relevance: Any, ks: Sequence[int] = DEFAULT_KS) -> RetrievalMetrics:
    """R@k for each ``k`` in ``ks``, mAP and median / mean rank of ``scores`` ``(Q, G)`` against ``relevance``.

    ``k`` larger than the gallery is allowed (R@k is then 1.0): the keys of a report stay the same for any
    gallery size.
    """
    ks = tuple(int(k) for k in ks)
    if not ks or min(ks) < 1:
        raise MetricsInputError(f"ks must be positive integers, got {ks}")
    scores, relevance = _check(scores, relevance)
    ranks = _ranks(scores, relevance)
    first = np.fromiter((r[0] for r in ranks), dtype=np.int64, count=len(ranks))
    ap = np.fromiter((average_precision_from_ranks(r) for r in ranks), dtype=np.float64, count=len(ranks))
    q, g = scores.shape
    return RetrievalMetrics(
        n_queries=q, n_gallery=g,
        recall={k: int(np.count_nonzero(first <= k)) / q for k in ks},
        mean_ap=float(ap.mean()), median_rank=float(np.median(first)), mean_rank=float(first.mean()),
        first_rank=first, average_precision=ap, relevant_ranks=ranks)


# --- AP as sklearn computes it (AudioSet's published mAP) -------------------------------------------------

def binary_average_precision(scores: np.ndarray, targets: np.ndarray) -> float:
    """AP of one class over ``N`` samples, exactly as ``sklearn.metrics.average_precision_score`` computes it.

    ``sum_n (R_n - R_{n-1}) P_n`` over the distinct score thresholds, best first: samples with equal scores
    enter together (one threshold), so ties never depend on the order of the samples. NaN if no sample is
    positive (sklearn returns 0 there, with a warning).
    """
    scores = np.asarray(scores, dtype=np.float64)
    targets = np.asarray(targets).astype(bool)
    positives = int(targets.sum())
    if positives == 0:
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    s, t = scores[order], targets[order]
    # the last sample of each run of equal scores closes a threshold
    last = np.r_[np.flatnonzero(np.diff(s) != 0), s.size - 1]
    tp = np.cumsum(t)[last]
    precision = tp / (last + 1)
    recall_step = np.diff(np.r_[0, tp]) / positives
    return float(np.sum(recall_step * precision))


@dataclass(eq=False)
class MultiLabelMetrics:
    """Macro mAP of a multi-label evaluation and the AP of every class (NaN for a class without positives)."""

    n: int
    mean_ap: float
    mean_ap_absent_as_zero: float
    classes_scored: int
    per_class_ap: np.ndarray = field(repr=False)
    per_class_positives: np.ndarray = field(repr=False)

    def summary(self) -> dict[str, Any]:
        return {"n": self.n, "mAP": self.mean_ap, "mAP_absent_as_zero": self.mean_ap_absent_as_zero,
                "classes_scored": self.classes_scored, "classes": int(self.per_class_ap.size)}


def multilabel_map(scores: Any, targets: Any) -> MultiLabelMetrics:
    """AudioSet's macro mAP from ``scores`` ``(N, C)`` and 0/1 ``targets`` ``(N, C)``.

    The official eval (``open_clip/metrics/map.py``) takes ``np.mean(average_precision_score(targets,
    sigmoid(logits), average=None))``: per class AP over the clips, then the unweighted mean over classes.
    The sigmoid is monotonic and left out (in float32 it can merge nearby scores into ties). ``mean_ap``
    averages the classes with at least one positive clip; ``mean_ap_absent_as_zero`` counts the others as 0,
    which is what the official formula gives with current sklearn on a partial copy of the clip list.
    """
    scores, targets = _score_matrix(scores, targets, "targets", "samples", "classes")
    ap = np.array([binary_average_precision(scores[:, c], targets[:, c]) for c in range(scores.shape[1])])
    scored = ~np.isnan(ap)
    if not scored.any():
        raise MetricsInputError("no class has a positive sample")
    return MultiLabelMetrics(
        n=int(scores.shape[0]), mean_ap=float(ap[scored].mean()),
        mean_ap_absent_as_zero=float(np.where(scored, ap, 0.0).mean()), classes_scored=int(scored.sum()),
        per_class_ap=ap, per_class_positives=targets.sum(axis=0).astype(np.int64))
