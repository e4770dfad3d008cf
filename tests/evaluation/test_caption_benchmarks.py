"""Clotho-style retrieval from a prepared list: one query per listed caption (duplicates kept, as the official
text_ids), missing clips left out with their captions, and R@k equal to a brute-force count of the official
rule over the scores."""
from __future__ import annotations

import numpy as np
import pytest

from tests.data.list_releases import CLOTHO, clotho_vitlens
from vitlens_cli.data.lists import prepare_listed
from vitlens_cli.evaluation.caption_benchmarks import captions_of, open_caption_benchmark
from vitlens_cli.evaluation.crossmodal import evaluate_retrieval
from vitlens_cli.errors import VitlensError


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("clotho")
    clotho_vitlens(tmp / "src")
    prepare_listed("clotho", tmp / "root", from_path=tmp / "src")
    return tmp / "root"


def test_captions_are_one_per_listed_caption_of_the_clips_found(prepared):
    captions, meta = open_caption_benchmark("clotho", prepared)
    assert len(captions.items) == 3 and captions.modalities == ["audio"] * 3
    assert captions.texts == CLOTHO["1"] + CLOTHO["2"] + CLOTHO["3"]  # "a machine whines" three times
    assert captions.relevance().sum(axis=1).tolist() == [1] * 15
    assert meta["benchmark"] == "clotho" and meta["variant"] == "test" and meta["missing_at_prepare"] == 1
    assert meta["protocol"]["present"] == 3 and "official_difference" in meta["protocol"]


def _official_recall(scores: np.ndarray, query_ids: np.ndarray, gallery_ids: np.ndarray, k: int) -> float:
    """metrics/recall.py: a hit when any of the top-k gallery entries has the query's id."""
    hits = 0
    for q in range(scores.shape[0]):
        top = np.argsort(-scores[q], kind="stable")[:k]
        hits += bool((gallery_ids[top] == query_ids[q]).any())
    return hits / scores.shape[0]


def test_retrieval_metrics_equal_the_official_rule_counted_by_brute_force(prepared, tmp_path):
    from vitlens_cli.models import load_model

    captions, _ = open_caption_benchmark("clotho", prepared)
    result = evaluate_retrieval(load_model("tiny-omni"), captions, cache_dir=tmp_path / "cache")
    text_clip = np.array([p[1] for p in sorted(captions.pairs.tolist())])
    clip_ids = np.arange(len(captions.items))
    for k in (1, 5, 10):
        assert result.text_to_item.recall[k] == _official_recall(result.scores, text_clip, clip_ids, k)
        assert result.item_to_text.recall[k] == _official_recall(result.scores.T, clip_ids, text_clip, k)
    assert result.text_to_item.n_queries == 15 and result.item_to_text.n_gallery == 15


def test_a_classification_list_is_not_retrieval(tmp_path):
    from vitlens_cli.data.listed import Listed

    with pytest.raises(VitlensError, match="vggsound is a classification benchmark"):
        captions_of(Listed("vggsound", "val", "classification", {}, "", "", []), tmp_path)


def test_official_clip_count_per_benchmark():
    from vitlens_cli.evaluation.caption_benchmarks import official_contract
    from vitlens_cli.models import load_model

    model = load_model("tiny-omni")
    assert official_contract(model, "clotho").n_clips == 6  # DURATION2CLIP["5"]["clotho"]
    assert official_contract(model, "audiocaps").n_clips == 3


def test_caption_benchmark_eval_uses_six_clips_for_clotho_and_the_official_rule(prepared, tmp_path):
    import dataclasses

    import torch

    from vitlens_cli.evaluation.caption_benchmarks import evaluate_caption_benchmark
    from vitlens_cli.modalities import get_modality
    from vitlens_cli.models import load_model

    model = load_model("tiny-omni")
    captions, _ = open_caption_benchmark("clotho", prepared)
    result, used = evaluate_caption_benchmark(model, captions, "clotho", batch_size=2, cache_dir=tmp_path / "c")
    assert used["audio_contract"]["n_clips"] == 6
    # independent: each clip through the plug-in with 6 clips, its views averaged by the tower
    audio = get_modality("audio")
    contract = dataclasses.replace(audio.default_contract(), n_clips=6)
    with torch.inference_mode():
        clips = torch.stack([audio.prepare(path, contract) for path in captions.items])
        emb = model.encode("audio", clips, normalize=True)
        text = model.encode_text(captions.texts, normalize=True)
    np.testing.assert_allclose(result.scores, (text @ emb.T).numpy(), atol=1e-5)
    text_clip = np.array([p[1] for p in sorted(captions.pairs.tolist())])
    clip_ids = np.arange(len(captions.items))
    for k in (1, 5, 10):
        assert result.text_to_item.recall[k] == _official_recall(result.scores, text_clip, clip_ids, k)
        assert result.item_to_text.recall[k] == _official_recall(result.scores.T, clip_ids, text_clip, k)
