"""Classification metrics (numpy only, so reports never need torch).

Single-label metrics are computed from the top-k class *indices* alone, never from raw scores, so the same
numbers can be recomputed later from a saved ``predictions.parquet``. Ranking metrics (R@k, AP, mAP, AudioSet's
multi-label mAP too) are in :mod:`.retrieval`.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vitlens_cli.errors import VitlensError

# The widest "top-K" the metrics report; predictions must keep at least this many columns (or all classes).
MAX_K = 5


class MetricsInputError(VitlensError, ValueError):
    """Predictions or labels have the wrong shape, type or range.

    A ``ValueError`` for callers that catch the builtin, and a ``VitlensError`` so the CLI turns it into
    one line instead of a traceback.
    """


def topk(scores: np.ndarray, k: int = MAX_K) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best classes per row of ``scores`` ``(N, C)``, best first.

    Returns ``(indices (N, k) int64, scores (N, k) float32)``. Ties go to the smaller class index, so
    results do not depend on the sort implementation; ``k`` is clipped to ``C``. NaN scores rank last.
    """
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise MetricsInputError(f"scores must be 2-D (N, C), got shape {scores.shape}")
    n, c = scores.shape
    if c == 0:
        raise MetricsInputError("scores has no classes (C == 0)")
    if k < 1:
        raise MetricsInputError(f"k must be >= 1, got {k}")
    k = min(int(k), c)
    # float64 so that negation is exact and safe for unsigned/integer inputs; a stable sort of the negated
    # scores keeps equal scores in ascending class order, which is the documented tie rule.
    order = np.argsort(-scores.astype(np.float64, copy=False), axis=1, kind="stable")[:, :k]
    idx = order.astype(np.int64, copy=False)
    vals = np.take_along_axis(scores, idx, axis=1).astype(np.float32) if n else np.zeros((0, k), np.float32)
    return idx, vals


PER_CLASS_FIELDS = ("class", "index", "n", "correct", "top1")


@dataclass(eq=False)
class Metrics:
    """Top-K accuracy, per-class accuracy and the top-1 confusion matrix of one evaluation."""

    n: int
    top1: float
    top3: float
    top5: float
    mean_class_acc: float
    per_class: list[dict[str, Any]] = field(default_factory=list)
    confusion: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.int64))
    # A benchmark's named groups scored apart (ESC-50's folds): name → group → {n, correct, top1}.
    groups: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """JSON-ready scalars, the per-class list and one ``per_<group name>`` table per grouping (the
        confusion matrix is left out: it can be large)."""
        return {
            "n": self.n,
            "top1": self.top1,
            "top3": self.top3,
            "top5": self.top5,
            "mean_class_acc": self.mean_class_acc,
            "per_class": [dict(row) for row in self.per_class],
            **{f"per_{name}": {g: dict(row) for g, row in table.items()} for name, table in self.groups.items()},
        }

    def per_class_frame(self) -> Any:
        """``per_class`` as a pandas DataFrame: class, index, n, correct, top1 (NaN for a class without samples)."""
        import pandas as pd  # lazy: keeps `import vitlens_cli` fast

        frame = pd.DataFrame(self.per_class, columns=list(PER_CLASS_FIELDS))
        return frame.astype({"index": "int64", "n": "int64", "correct": "int64", "top1": "float64"})

    def __eq__(self, other: object) -> bool:
        # Dataclass equality would compare the ndarray with ``==`` and fail on truthiness; compare exactly.
        if not isinstance(other, Metrics):
            return NotImplemented
        return self.summary() == other.summary() and np.array_equal(self.confusion, other.confusion)


def _as_int_array(a: Any, name: str, ndim: int) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim != ndim:
        raise MetricsInputError(f"{name} must be {ndim}-D, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise MetricsInputError(f"{name} must hold integer class indices, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def group_top1(labels: np.ndarray, top1: np.ndarray, groups: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Top-1 accuracy within each group: ``{group: {"n", "correct", "top1"}}``, groups in sorted order.

    ``labels``, ``top1`` (the best predicted class) and ``groups`` are per sample.
    """
    labels = _as_int_array(labels, "labels", 1)
    top1 = _as_int_array(top1, "top1", 1)
    if not len(labels) == len(top1) == len(groups):
        raise MetricsInputError(f"labels, top1 and groups have {len(labels)}, {len(top1)} and {len(groups)} rows")
    keys = np.asarray([str(g) for g in groups], dtype=object)
    out: dict[str, dict[str, Any]] = {}
    for g in sorted(set(keys.tolist())):
        rows = keys == g
        n, correct = int(rows.sum()), int(np.count_nonzero(labels[rows] == top1[rows]))
        out[g] = {"n": n, "correct": correct, "top1": correct / n}
    return out


def compute_metrics(labels: np.ndarray, topk_idx: np.ndarray, classnames: Sequence[str]) -> Metrics:
    """Metrics from true ``labels`` ``(N,)`` and predicted ``topk_idx`` ``(N, k)`` (best first).

    ``topK`` counts a sample as correct when its label is among its first K predictions. ``k`` must be at
    least ``min(5, C)``: with fewer columns top-3/top-5 cannot be known, and guessing would misreport them.
    ``mean_class_acc`` averages per-class top-1 over the classes that have at least one sample; classes
    without samples get ``top1 = None`` in ``per_class``.
    """
    c = len(classnames)
    if c == 0:
        raise MetricsInputError("classnames is empty")
    labels = _as_int_array(labels, "labels", 1)
    topk_idx = _as_int_array(topk_idx, "topk_idx", 2)
    n = labels.shape[0]
    if n == 0:
        raise MetricsInputError("no samples to evaluate (N == 0)")
    if topk_idx.shape[0] != n:
        raise MetricsInputError(f"labels has {n} rows but topk_idx has {topk_idx.shape[0]}")
    k = topk_idx.shape[1]
    if k < min(MAX_K, c):
        raise MetricsInputError(
            f"topk_idx has {k} columns; need at least min({MAX_K}, C={c}) = {min(MAX_K, c)} for top-{MAX_K}"
        )
    for name, arr in (("labels", labels), ("topk_idx", topk_idx)):
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi >= c:
            raise MetricsInputError(f"{name} holds class index {lo if lo < 0 else hi}, outside [0, {c})")

    # Rank of the true label among the predictions (k when absent); every top-K is then one comparison.
    match = topk_idx == labels[:, None]
    rank = np.where(match.any(axis=1), match.argmax(axis=1), k)

    def frac(kk: int) -> float:
        return int(np.count_nonzero(rank < kk)) / n

    confusion = np.bincount(labels * c + topk_idx[:, 0], minlength=c * c).reshape(c, c).astype(np.int64)
    counts = confusion.sum(axis=1)
    correct = np.diag(confusion)
    per_class: list[dict[str, Any]] = []
    accs: list[float] = []
    for i, name in enumerate(classnames):
        ni, ci = int(counts[i]), int(correct[i])
        acc = ci / ni if ni else None
        if acc is not None:
            accs.append(acc)
        per_class.append({"class": str(name), "index": i, "n": ni, "correct": ci, "top1": acc})

    return Metrics(
        n=n,
        top1=frac(1),
        top3=frac(3),
        top5=frac(5),
        # Classes without samples are left out: counting them as 0 (or 1) would skew the mean.
        mean_class_acc=float(np.mean(accs)),
        per_class=per_class,
        confusion=confusion,
    )
