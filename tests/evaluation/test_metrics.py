"""topk ordering and tie rule, and metrics on small hand-computed cases."""
from __future__ import annotations

import numpy as np
import pytest

from vitlens_cli.errors import VitlensError
from vitlens_cli.evaluation.metrics import (
    Metrics,
    MetricsInputError,
    compute_metrics,
    topk,
)

SIX = [f"c{i}" for i in range(6)]


def test_topk_sorted_descending_with_scores():
    scores = np.array([[0.1, 0.9, 0.5, 0.3], [4.0, 1.0, 2.0, 3.0]], dtype=np.float64)
    idx, vals = topk(scores, k=3)
    assert idx.dtype == np.int64 and vals.dtype == np.float32
    np.testing.assert_array_equal(idx, [[1, 2, 3], [0, 3, 2]])
    np.testing.assert_array_equal(vals, np.array([[0.9, 0.5, 0.3], [4.0, 3.0, 2.0]], np.float32))


def test_topk_ties_go_to_smaller_index():
    scores = np.array([[1.0, 3.0, 3.0, 2.0], [0.0, 0.0, 0.0, 0.0], [2.0, 5.0, 2.0, 5.0]])
    idx, _ = topk(scores, k=3)
    np.testing.assert_array_equal(idx, [[1, 2, 3], [0, 1, 2], [1, 3, 0]])


def test_topk_clips_k_to_classes_and_accepts_ints():
    idx, vals = topk(np.array([[1, 5, 5]], dtype=np.uint8), k=10)
    np.testing.assert_array_equal(idx, [[1, 2, 0]])
    np.testing.assert_array_equal(vals, [[5, 5, 1]])


def test_topk_nan_ranks_last():
    idx, _ = topk(np.array([[np.nan, 0.2, 0.7]]), k=3)
    np.testing.assert_array_equal(idx, [[2, 1, 0]])


def test_topk_empty_rows():
    idx, vals = topk(np.zeros((0, 4)), k=5)
    assert idx.shape == (0, 4) and vals.shape == (0, 4)


@pytest.mark.parametrize("scores,k", [(np.zeros(4), 1), (np.zeros((2, 0)), 1), (np.zeros((2, 3)), 0)])
def test_topk_rejects_bad_input(scores, k):
    with pytest.raises(ValueError):
        topk(scores, k=k)


def _case() -> tuple[np.ndarray, np.ndarray]:
    # Ranks of the true label per row: 0, 1, 3, absent, 0. Classes c4 and c5 have no samples.
    labels = np.array([0, 0, 1, 2, 3])
    idx = np.array(
        [
            [0, 1, 2, 3, 4],
            [1, 0, 2, 3, 4],
            [2, 3, 4, 1, 0],
            [0, 1, 3, 4, 5],
            [3, 4, 5, 2, 1],
        ]
    )
    return labels, idx


def test_metrics_hand_computed():
    labels, idx = _case()
    m = compute_metrics(labels, idx, SIX)
    assert m.n == 5
    assert m.top1 == pytest.approx(2 / 5)
    assert m.top3 == pytest.approx(3 / 5)
    assert m.top5 == pytest.approx(4 / 5)
    # Mean over c0..c3 only: (1/2 + 0 + 0 + 1) / 4; counting empty c4, c5 would give 0.25.
    assert m.mean_class_acc == pytest.approx(0.375)
    assert [r["n"] for r in m.per_class] == [2, 1, 1, 1, 0, 0]
    assert [r["correct"] for r in m.per_class] == [1, 0, 0, 1, 0, 0]
    assert [r["top1"] for r in m.per_class] == [0.5, 0.0, 0.0, 1.0, None, None]
    assert m.per_class[3] == {"class": "c3", "index": 3, "n": 1, "correct": 1, "top1": 1.0}
    expected = np.zeros((6, 6), np.int64)
    for t, p in [(0, 0), (0, 1), (1, 2), (2, 0), (3, 3)]:
        expected[t, p] += 1
    assert m.confusion.dtype == np.int64
    np.testing.assert_array_equal(m.confusion, expected)


def test_metrics_fewer_than_five_classes():
    labels = np.array([0, 1, 2, 2])
    idx = np.array([[1, 0, 2], [1, 2, 0], [0, 1, 2], [2, 0, 1]])
    m = compute_metrics(labels, idx, ["a", "b", "c"])
    assert (m.top1, m.top3, m.top5) == (pytest.approx(0.5), 1.0, 1.0)
    assert m.mean_class_acc == pytest.approx((0 + 1 + 0.5) / 3)


def test_metrics_extra_columns_are_ignored_beyond_top5():
    labels, idx = _case()
    wide = np.concatenate([idx, np.full((5, 1), 5)], axis=1)
    assert compute_metrics(labels, wide, SIX) == compute_metrics(labels, idx, SIX)


def test_metrics_equality_compares_confusion():
    labels, idx = _case()
    a = compute_metrics(labels, idx, SIX)
    b = compute_metrics(labels, idx, SIX)
    assert a == b
    b.confusion[0, 0] += 1
    assert a != b
    assert isinstance(a, Metrics)


@pytest.mark.parametrize(
    "labels,idx,names,match",
    [
        (np.zeros((0,), int), np.zeros((0, 5), int), SIX, "N == 0"),
        (np.array([0, 1]), np.zeros((3, 5), int), SIX, "rows"),
        (np.array([[0]]), np.zeros((1, 5), int), SIX, "1-D"),
        (np.array([0]), np.zeros(5, int), SIX, "2-D"),
        (np.array([0.0]), np.zeros((1, 5), int), SIX, "integer"),
        (np.array([6]), np.zeros((1, 5), int), SIX, "outside"),
        (np.array([-1]), np.zeros((1, 5), int), SIX, "outside"),
        (np.array([0]), np.array([[0, 1, 2, 3, 6]]), SIX, "outside"),
        (np.array([0]), np.zeros((1, 2), int), SIX, "columns"),
        (np.array([0]), np.zeros((1, 5), int), [], "empty"),
    ],
)
def test_metrics_rejects_bad_input(labels, idx, names, match):
    with pytest.raises(ValueError, match=match) as info:
        compute_metrics(labels, idx, names)
    # Also a VitlensError, so the CLI reports it as one line rather than a traceback.
    assert isinstance(info.value, VitlensError) and isinstance(info.value, MetricsInputError)
