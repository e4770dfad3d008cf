"""Retrieval metrics against independent computations: R@k and ranks by brute-force counting, AP by the textbook
loop over the ranked list and by sklearn when it is installed, and small cases worked by hand."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

from vitlens_cli.errors import VitlensError
from vitlens_cli.evaluation import retrieval
from vitlens_cli.evaluation.metrics import MetricsInputError
from vitlens_cli.evaluation.retrieval import (
    average_precision_from_ranks,
    binary_average_precision,
    multilabel_map,
    relevant_ranks,
    retrieval_metrics,
)


def _random_case(seed: int, q: int = 23, g: int = 31, ties: bool = False) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=(q, g))
    if ties:  # few distinct values: many exact ties, across relevant and irrelevant entries
        scores = np.round(scores, 0)
    relevance = rng.random((q, g)) < 0.15
    relevance[np.arange(q), rng.integers(0, g, q)] = True  # every query has at least one relevant entry
    return scores, relevance


def _brute_rank(s: np.ndarray, j: int) -> int:
    """1-based rank of entry ``j``: one plus those scored higher, plus the tied ones before it (the tie rule)."""
    return 1 + sum(1 for i in range(len(s)) if s[i] > s[j] or (s[i] == s[j] and i < j))


def _textbook_ap(s: np.ndarray, rel: np.ndarray) -> float:
    """Walk the ranked list; at each relevant entry add the precision so far; divide by the relevant count."""
    ranked = sorted(range(len(s)), key=lambda j: _brute_rank(s, j))
    hits, total = 0, 0.0
    for position, j in enumerate(ranked, start=1):
        if rel[j]:
            hits += 1
            total += hits / position
    return total / rel.sum()


@pytest.mark.parametrize("ties", [False, True])
def test_recall_and_ranks_match_a_brute_force_count(ties):
    scores, relevance = _random_case(1, ties=ties)
    m = retrieval_metrics(scores, relevance, ks=(1, 3, 5, 10, 50))
    first = np.array([min(_brute_rank(s, j) for j in np.flatnonzero(r)) for s, r in zip(scores, relevance)])
    for k in (1, 3, 5, 10, 50):
        assert m.recall[k] == np.count_nonzero(first <= k) / len(first), k
    np.testing.assert_array_equal(m.first_rank, first)
    assert m.median_rank == float(np.median(first)) and m.mean_rank == float(first.mean())
    for s, r, got in zip(scores, relevance, m.relevant_ranks):
        assert got.tolist() == sorted(_brute_rank(s, j) for j in np.flatnonzero(r))
    assert m.recall[50] == 1.0 and m.n_queries == 23 and m.n_gallery == 31


@pytest.mark.parametrize("ties", [False, True])
def test_average_precision_matches_the_textbook_loop(ties):
    scores, relevance = _random_case(2, ties=ties)
    m = retrieval_metrics(scores, relevance)
    expected = [_textbook_ap(s, r) for s, r in zip(scores, relevance)]
    np.testing.assert_allclose(m.average_precision, expected, rtol=1e-12)
    assert m.mean_ap == pytest.approx(np.mean(expected), rel=1e-12)


def test_average_precision_matches_sklearn_without_ties():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    scores, relevance = _random_case(3, q=40, g=57)  # continuous scores: no ties, where sklearn's rule differs
    m = retrieval_metrics(scores, relevance)
    expected = [sklearn_metrics.average_precision_score(r, s) for s, r in zip(scores, relevance)]
    np.testing.assert_allclose(m.average_precision, expected, rtol=1e-12)


def test_macro_map_over_classes_matches_sklearn_macro_average():
    """AudioSet's mAP: classes are the queries over the clips (``logits.T``), as sklearn's macro average."""
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(6)
    logits = rng.normal(size=(80, 12))
    labels = rng.random((80, 12)) < 0.2
    labels[rng.integers(0, 80, 12), np.arange(12)] = True  # every class has a positive clip
    expected = sklearn_metrics.average_precision_score(labels, logits, average="macro")
    assert retrieval_metrics(logits.T, labels.T).mean_ap == pytest.approx(expected, rel=1e-12)


def test_hand_worked_ap_and_ranks():
    # Ranked list: r n r n r → relevant at ranks 1, 3, 5: AP = (1/1 + 2/3 + 3/5) / 3 = 34/45.
    scores = np.array([[0.9, 0.8, 0.7, 0.6, 0.5]])
    relevance = np.array([[True, False, True, False, True]])
    m = retrieval_metrics(scores, relevance, ks=(1, 2))
    assert m.relevant_ranks[0].tolist() == [1, 3, 5]
    assert Fraction(m.mean_ap).limit_denominator(1000) == Fraction(34, 45)
    assert average_precision_from_ranks(np.array([1, 3, 5])) == pytest.approx(34 / 45, rel=1e-15)
    assert m.recall == {1: 1.0, 2: 1.0} and m.first_rank.tolist() == [1]
    # Relevant at ranks 2 and 3 of 4: AP = (1/2 + 2/3) / 2 = 7/12, first rank 2.
    m = retrieval_metrics(np.array([[0.1, 0.9, 0.4, 0.5]]), np.array([[False, False, True, True]]))
    assert m.mean_ap == pytest.approx(7 / 12, rel=1e-15) and m.recall[1] == 0.0 and m.recall[5] == 1.0


def test_ties_rank_in_gallery_order_and_nan_last():
    # All equal: gallery order. Entry 2 ties with entry 0 and follows it.
    assert relevant_ranks(np.zeros((1, 4)), np.array([[0, 0, 1, 0]], bool))[0].tolist() == [3]
    assert relevant_ranks(np.array([[0.5, 0.9, 0.5]]), np.array([[0, 0, 1]], bool))[0].tolist() == [3]
    assert relevant_ranks(np.array([[0.5, 0.9, 0.5]]), np.array([[1, 0, 0]], bool))[0].tolist() == [2]
    assert relevant_ranks(np.array([[np.nan, -5.0, 0.0]]), np.array([[1, 0, 0]], bool))[0].tolist() == [3]


def test_several_relevant_entries_any_counts_for_recall():
    # One item with three captions (entries 0, 7, 5) among 8. Ranked: 0.95(4) 0.9(1) 0.8(7) 0.6(3) 0.5(0) 0.3(5)
    # 0.2(6) 0.1(2), so its captions are at ranks 3, 5, 6: a hit at k >= 3, AP over all three.
    scores = np.array([[0.5, 0.9, 0.1, 0.6, 0.95, 0.3, 0.2, 0.8]])
    relevance = np.zeros_like(scores, dtype=bool)
    relevance[0, [0, 7, 5]] = True
    m = retrieval_metrics(scores, relevance, ks=(1, 2, 3))
    assert m.relevant_ranks[0].tolist() == [3, 5, 6]
    assert m.recall == {1: 0.0, 2: 0.0, 3: 1.0}
    assert m.mean_ap == pytest.approx((1 / 3 + 2 / 5 + 3 / 6) / 3, rel=1e-15)


def test_both_directions_of_one_similarity_matrix():
    # 2 captions per item for items A, B; caption 'shared' describes both.
    #              A     B
    scores = np.array([[0.9, 0.1],   # a1
                       [0.2, 0.3],   # a2 → ranks B first
                       [0.4, 0.8],   # b1
                       [0.6, 0.5]])  # shared
    relevance = np.array([[1, 0], [1, 0], [0, 1], [1, 1]], bool)
    t2i = retrieval_metrics(scores, relevance, ks=(1,))
    assert t2i.first_rank.tolist() == [1, 2, 1, 1] and t2i.recall[1] == 0.75
    assert t2i.average_precision.tolist() == [1.0, 0.5, 1.0, 1.0]
    i2t = retrieval_metrics(scores.T, relevance.T, ks=(1, 2))
    # A's column sorted: a1 .9, shared .6, b1 .4, a2 .2 → relevant ranks 1, 2, 4
    # B's column sorted: b1 .8, shared .5, a2 .3, a1 .1 → relevant ranks 1, 2
    assert [r.tolist() for r in i2t.relevant_ranks] == [[1, 2, 4], [1, 2]]
    assert i2t.average_precision.tolist() == pytest.approx([(1 + 1 + 3 / 4) / 3, 1.0], rel=1e-15)


def test_blocked_ranking_equals_one_block(monkeypatch):
    scores, relevance = _random_case(4, q=50, g=20)
    whole = retrieval_metrics(scores, relevance)
    monkeypatch.setattr(retrieval, "_BLOCK_CELLS", 45)  # 2 queries per block, the last one short
    blocked = retrieval_metrics(scores, relevance)
    assert [r.tolist() for r in blocked.relevant_ranks] == [r.tolist() for r in whole.relevant_ranks]
    assert blocked.summary() == whole.summary()


def test_torch_tensors_and_integer_scores_are_accepted():
    scores, relevance = _random_case(5)
    ref = retrieval_metrics(scores, relevance).summary()
    assert retrieval_metrics(torch.from_numpy(scores), torch.from_numpy(relevance)).summary() == ref
    assert retrieval_metrics(scores, relevance.astype(np.int8)).summary() == ref
    m = retrieval_metrics(np.array([[3, 250, 7]], np.uint8), np.array([[0, 0, 1]]))
    assert m.first_rank.tolist() == [2]


def test_summary_keys():
    m = retrieval_metrics(np.array([[0.2, 0.1]]), np.array([[0, 1]], bool))
    assert m.summary() == {"n_queries": 1, "n_gallery": 2, "R@1": 0.0, "R@5": 1.0, "R@10": 1.0, "mAP": 0.5,
                           "median_rank": 2.0, "mean_rank": 2.0}


@pytest.mark.parametrize("scores,relevance,fragment", [
    (np.zeros(3), np.zeros(3, bool), "2-D"),
    (np.zeros((2, 3)), np.ones((3, 2), bool), "shape"),
    (np.zeros((0, 3)), np.zeros((0, 3), bool), "nothing to rank"),
    (np.zeros((2, 3)), np.array([[1, 0, 0], [0, 0, 0]], bool), "query 1 has no relevant"),
    (np.zeros((1, 2)), np.array([[0.5, 1.0]]), "boolean"),
    (np.array([["a", "b"]]), np.ones((1, 2), bool), "numeric"),
])
def test_bad_input_is_a_project_error(scores, relevance, fragment):
    with pytest.raises(MetricsInputError, match=fragment) as info:
        retrieval_metrics(scores, relevance)
    assert isinstance(info.value, VitlensError)


@pytest.mark.parametrize("ranks", [np.array([], np.int64), np.array([0, 2]), np.array([3, 2]), np.array([2, 2])])
def test_ap_from_ranks_rejects_bad_ranks(ranks):
    with pytest.raises(MetricsInputError):
        average_precision_from_ranks(ranks)


def test_ks_must_be_positive():
    with pytest.raises(MetricsInputError, match="ks"):
        retrieval_metrics(np.zeros((1, 2)), np.ones((1, 2), bool), ks=(0, 5))


# --- multi-label mAP (AudioSet) ---------------------------------------------------------------------------

def _multilabel_case(seed: int, n: int = 60, c: int = 9, levels: int | None = None):
    rng = np.random.default_rng(seed)
    targets = rng.random((n, c)) < 0.3
    targets[0] = True  # every class has a positive
    scores = rng.normal(size=(n, c)) + targets
    if levels is not None:  # few distinct values: many ties
        scores = np.round(scores * levels) / levels
    return scores, targets


@pytest.mark.parametrize("levels", [None, 2])
def test_binary_average_precision_equals_sklearn_with_and_without_ties(levels):
    sk = pytest.importorskip("sklearn.metrics")
    scores, targets = _multilabel_case(1, levels=levels)
    for c in range(scores.shape[1]):
        assert binary_average_precision(scores[:, c], targets[:, c]) == pytest.approx(
            sk.average_precision_score(targets[:, c], scores[:, c]), abs=1e-12)


@pytest.mark.parametrize("levels", [None, 3])
def test_multilabel_map_is_the_official_macro_mean_of_sklearn_per_class_ap(levels):
    sk = pytest.importorskip("sklearn.metrics")
    scores, targets = _multilabel_case(2, levels=levels)
    # the official formula: np.mean(average_precision_score(targets, sigmoid(logits), average=None))
    official = np.mean(sk.average_precision_score(targets.astype(np.float32), 1 / (1 + np.exp(-scores)),
                                                  average=None))
    m = multilabel_map(scores, targets)
    assert m.mean_ap == pytest.approx(official, abs=1e-12)
    assert m.classes_scored == scores.shape[1]
    np.testing.assert_array_equal(m.per_class_positives, targets.sum(axis=0))


def test_multilabel_map_leaves_out_classes_without_positives_and_reports_both_means():
    scores = np.array([[0.9, 0.1, 0.5], [0.2, 0.8, 0.4], [0.6, 0.3, 0.7]])
    targets = np.array([[1, 0, 0], [0, 1, 0], [0, 1, 0]])
    m = multilabel_map(scores, targets)
    # class 0: positive ranked 1st → 1; class 1: positives at ranks 1 and 2 → 1; class 2: no positive
    assert np.isnan(m.per_class_ap[2]) and m.classes_scored == 2
    assert m.mean_ap == 1.0 and m.mean_ap_absent_as_zero == pytest.approx(2 / 3)


def test_binary_average_precision_hand_case_with_a_tie():
    # scores 0.9 (neg), 0.5 (pos), 0.5 (neg), 0.1 (pos): thresholds {0.9}: P=0; {0.5}: R=1/2, P=1/3; {0.1}: R=1, P=1/2
    ap = binary_average_precision(np.array([0.9, 0.5, 0.5, 0.1]), np.array([0, 1, 0, 1]))
    assert ap == pytest.approx(0.5 * (1 / 3) + 0.5 * 0.5)


@pytest.mark.parametrize("scores, targets, needle", [
    (np.zeros(3), np.zeros(3), "2-D"),
    (np.zeros((2, 3)), np.zeros((3, 2)), "shape"),
    (np.zeros((2, 3)), np.full((2, 3), 2), "0/1"),
    (np.zeros((2, 3)), np.zeros((2, 3)), "no class has a positive"),
])
def test_multilabel_map_rejects_bad_input(scores, targets, needle):
    with pytest.raises(MetricsInputError, match=needle):
        multilabel_map(scores, targets)
