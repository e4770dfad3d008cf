"""evaluate() on a prepared cache of another modality: the model's tower of that modality, prompts mapped to
the scored classes (NYU-D's "others" rule), groups scored apart, and caches of another contract refused."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vitlens_cli.data.benchmarks import open_source
from vitlens_cli.data.cache import CacheIndex, Sample, build_cache
from vitlens_cli.errors import ConfigError
from vitlens_cli.evaluation.runner import evaluate
from vitlens_cli.evaluation.zeroshot import zeroshot_classifier
from vitlens_cli.modalities import get_modality
from vitlens_cli.models import load_model

SHAPE = (128, 512)  # an EEG lens input of the released contract
CLASSES = ["cat", "dog", "others"]
PROMPTS = ["cat", "dog", "piano", "guitar"]
TO_CLASS = [0, 1, 2, 2]
TEMPLATES = ["a photo of {}.", "an image of {}."]
N = 12


@pytest.fixture(scope="module")
def model():
    return load_model("tiny-omni")


def _cache(dest: Path, contract: dict | None = None) -> Path:
    rng = np.random.default_rng(0)
    items = rng.normal(size=(N, *SHAPE)).astype(np.float32)
    labels = [i % 3 for i in range(N)]
    names = [f"trial-{i:02d}" for i in range(N)]
    eeg = get_modality("eeg")
    index = CacheIndex.for_tensors("synthetic-eeg", None, CLASSES, "eeg", SHAPE,
                                   eeg.contract_to_dict(eeg.default_contract()) if contract is None else contract,
                                   "synthetic", prompts=PROMPTS, prompt_to_class=TO_CLASS,
                                   groups={"fold": {n: str(1 + i % 2) for i, n in enumerate(names)}})
    build_cache(dest, index, names, lambda i: Sample(items[i], labels[i], names[i]))
    return dest


def test_prepared_eeg_cache_with_merged_prompts_and_folds(model, tmp_path):
    source = open_source(str(_cache(tmp_path / "eeg")))
    assert source.modality == "eeg" and source.prepared and source.templates == "photo_3"
    result = evaluate(model, source, TEMPLATES, batch_size=5, cache_dir=tmp_path / "clf")
    assert result.prompts_encoded == len(PROMPTS) * len(TEMPLATES)

    with torch.inference_mode():
        x = torch.stack([torch.from_numpy(np.array(source.dataset[i][0])) for i in range(N)])
        emb = model.encode("eeg", x, normalize=True)
        best_prompt = (emb @ zeroshot_classifier(model, PROMPTS, TEMPLATES).T).argmax(dim=1).numpy()
    expected = np.asarray(TO_CLASS)[best_prompt]
    np.testing.assert_array_equal(result.topk_idx[:, 0], expected)
    assert result.topk_idx.max() <= 2  # every prediction is one of the scored classes
    labels = np.array([i % 3 for i in range(N)])
    assert result.metrics.top1 == np.mean(expected == labels)
    folds = result.metrics.groups["fold"]
    for fold in ("1", "2"):
        rows = np.array([1 + i % 2 for i in range(N)]) == int(fold)
        assert folds[fold] == {"n": int(rows.sum()), "correct": int((expected == labels)[rows].sum()),
                               "top1": float(np.mean((expected == labels)[rows]))}
    assert result.metrics.summary()["per_fold"] == folds

    again = evaluate(model, source, TEMPLATES, batch_size=5, cache_dir=tmp_path / "clf")
    assert again.prompts_encoded == 0
    np.testing.assert_array_equal(again.topk_idx, result.topk_idx)


def test_cache_of_another_contract_is_refused(model, tmp_path):
    eeg = get_modality("eeg")
    other = {**eeg.contract_to_dict(eeg.default_contract()), "time_high": 440}
    source = open_source(str(_cache(tmp_path / "eeg", other)))
    with pytest.raises(ConfigError, match="time_high=440"):
        evaluate(model, source, TEMPLATES, cache_dir=tmp_path / "clf")


def test_modality_the_model_lacks_is_refused(tmp_path):
    source = open_source(str(_cache(tmp_path / "eeg")))
    with pytest.raises(ConfigError, match="no eeg tower"):
        evaluate(load_model("tiny"), source, TEMPLATES, cache_dir=tmp_path / "clf")
