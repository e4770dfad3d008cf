"""FAISS indexes: exact search is a matrix product; approximate ones reach their calibrated recall."""
from __future__ import annotations

import numpy as np
import pytest

from vitlens_cli.errors import VitlensError
from vitlens_cli.retrieval import ann


def _unit(n: int, dim: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_exact_search_ranks_as_a_matrix_product():
    data, queries = _unit(2000, 64, 0), _unit(50, 64, 1)
    index, record = ann.build(data)
    assert record["kind"] == "flat"
    scores, ids = ann.search(index, record, queries, 20)
    brute = queries @ data.T
    order = np.argsort(-brute, axis=1, kind="stable")[:, :20]
    # Ties aside: random float scores have none, so the orders must agree exactly.
    np.testing.assert_array_equal(ids, order)
    # FAISS sums in another order than numpy: allow a few float32 roundings of a sum of 64 unit-scale terms.
    np.testing.assert_allclose(scores, np.take_along_axis(brute, order, 1), atol=64 * np.finfo(np.float32).eps)


def test_allowed_rows_restrict_every_kind():
    data, queries = _unit(3000, 32, 2), _unit(10, 32, 3)
    allowed = np.arange(0, 3000, 7)
    for kind in ("flat", "ivf"):
        index, record = ann.build(data, kind)
        _, ids = ann.search(index, record, queries, 5, allowed)
        assert set(ids[ids >= 0].tolist()) <= set(allowed.tolist()), kind
        assert (ids >= 0).sum() > 0, kind


def test_ivf_meets_its_calibrated_recall_on_unseen_queries():
    data, queries = _unit(20_000, 48, 4), _unit(300, 48, 5)
    index, record = ann.build(data, "ivf", recall_target=0.9)
    params = record["params"]
    assert params["calibrated_recall_at_10"] >= 0.9
    _, got = ann.search(index, record, queries, 10)
    exact = np.argsort(-(queries @ data.T), axis=1)[:, :10]
    recall = ann.recall_at_k(exact, got)
    # Unseen queries from the same distribution: within 4 standard errors of 300·10 trials of the target.
    assert recall >= 0.9 - 4 * np.sqrt(0.9 * 0.1 / 3000), recall
    # Random vectors have no clusters: reaching 0.9 must take more than one list, and fewer than all.
    assert 1 < params["nprobe"] < params["nlist"]


def test_auto_switches_to_ivf_past_the_threshold():
    data = _unit(5000, 16, 6)
    assert ann.build(data, exact_max_rows=5000)[1]["kind"] == "flat"
    index, record = ann.build(data, exact_max_rows=4999)
    assert record["kind"] == "ivf"
    assert record["params"]["nlist"] == round(np.sqrt(5000))
    # 1000 rows would give 32 lists of fewer than the 39 training rows each that FAISS asks for.
    assert ann.build(data[:1000], "ivf")[1]["params"]["nlist"] == 1000 // 39


def test_saved_index_reloads_with_its_search_knob(tmp_path):
    data = _unit(4000, 16, 7)
    index, record = ann.build(data, "ivf")
    ann.save(index, tmp_path / "a.faiss")
    again = ann.load(tmp_path / "a.faiss", record, 4000, 16)
    q = _unit(5, 16, 8)
    np.testing.assert_array_equal(ann.search(index, record, q, 10)[1], ann.search(again, record, q, 10)[1])
    with pytest.raises(VitlensError, match="holds 4000"):
        ann.load(tmp_path / "a.faiss", record, 4001, 16)


def test_unknown_kind_is_a_user_error():
    with pytest.raises(VitlensError, match="unknown index kind"):
        ann.choose_kind("lsh", 10, 10)
