"""Retrieval metrics from a similarity matrix and a relevance matrix: R@k, AP / mAP, median and mean rank.

One query per row of ``scores`` ``(Q, G)`` (higher = more similar) over a gallery of ``G`` entries, and a
boolean ``relevance`` ``(Q, G)`` marking the gallery entries that count as correct for each query. Every
direction and benchmark is this one shape:

- text→audio on Clotho: a query per caption, relevant = the one clip it describes;
- audio→text: a query per clip, relevant = its 5 captions (a hit at k when ANY of them is in the top k);
- AudioSet macro mAP: a query per class over the clips, relevant = the clips labelled with it:
  ``retrieval_metrics(logits.T, labels.T).mean_ap``.

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


def _check(scores: Any, relevance: Any) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores)
    relevance = np.asarray(relevance)
    if scores.ndim != 2:
        raise MetricsInputError(f"scores must be 2-D (queries, gallery), got shape {scores.shape}")
    if relevance.shape != scores.shape:
        raise MetricsInputError(f"relevance shape {relevance.shape} != scores shape {scores.shape}")
    if not np.issubdtype(scores.dtype, np.number):
        raise MetricsInputError(f"scores must be numeric, got dtype {scores.dtype}")
    if relevance.dtype != np.bool_:
        if not np.issubdtype(relevance.dtype, np.number) or not np.isin(relevance, (0, 1)).all():
            raise MetricsInputError("relevance must be boolean (or 0/1)")
        relevance = relevance.astype(np.bool_)
    q, g = scores.shape
    if q == 0 or g == 0:
        raise MetricsInputError(f"nothing to rank: {q} queries over {g} gallery entries")
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

