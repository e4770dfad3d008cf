"""VGGSound, Touch-and-Go and ImageNet-EEG through the classification runner with tiny-omni: the official class
order and prompt set, labels as listed, metrics equal to a recomputation from the predictions, missing files
left out (reported at prepare), a second run encodes no prompt."""
from __future__ import annotations

import numpy as np
import pytest

from tests.data.list_releases import touch_and_go, vggsound_list
from tests.data.test_imagenet_eeg import write_release
from vitlens_cli.data import audio_labels
from vitlens_cli.data.imagenet_eeg import prepare_imagenet_eeg
from vitlens_cli.data.lists import list_source, prepare_listed
from vitlens_cli.data.meta import templates
from vitlens_cli.errors import VitlensError
from vitlens_cli.evaluation.runner import evaluate


@pytest.fixture(scope="module")
def model():
    from vitlens_cli.models import load_model

    return load_model("tiny-omni")


def _check(result, labels, classes):
    """Labels as listed, and the metrics counted by hand from the prediction rows (not by compute_metrics)."""
    assert result.labels.tolist() == labels
    assert result.classes == classes
    rows = result.predictions()
    truth = rows["label_index"].to_numpy()
    top5 = [list(r) for r in rows["top5_indices"]]
    first = np.array([r[0] for r in top5])
    assert truth.tolist() == labels and result.metrics.n == len(labels)
    assert result.metrics.top1 == float(np.mean(first == truth))
    assert result.metrics.top5 == float(np.mean([t in r[:5] for t, r in zip(truth, top5)]))
    per_class = [np.mean(first[truth == c] == c) for c in sorted(set(labels))]
    assert result.metrics.mean_class_acc == pytest.approx(float(np.mean(per_class)))


def test_vggsound(model, tmp_path):
    names = audio_labels.classes("vggsound")
    entries = [("a_1", 115, names[115]), ("b_2", 203, names[203]), ("c_3", 9, names[9]), ("gone", 1, names[1])]
    prepare_listed("vggsound", tmp_path / "root", from_path=vggsound_list(tmp_path / "v", entries,
                                                                           {"a_1", "b_2", "c_3"}))
    source = list_source("vggsound", tmp_path / "root")
    assert (source.modality, source.templates, source.variant) == ("audio", "sound_as_image_12", "val")
    assert source.protocol.endswith("; 3 of 4 listed files found")
    assert "the official eval averages 3 clips of 5 s" in source.protocol
    result = evaluate(model, source, ["{}."], cache_dir=tmp_path / "cache")  # 309 × 12 prompts: minutes on a CPU
    _check(result, [115, 203, 9], names)
    assert evaluate(model, source, ["{}."], cache_dir=tmp_path / "cache").prompts_encoded == 0


@pytest.mark.parametrize("split, labels, n_classes", [("material", [4, 13, 19], 20), ("rough", [1, 0], 2)])
def test_touch_and_go(model, tmp_path, split, labels, n_classes):
    prepare_listed("touch-and-go", tmp_path / "root", from_path=touch_and_go(tmp_path / "tag"), variant=split)
    source = list_source("touch-and-go", tmp_path / "root", split)
    assert source.modality == "tactile"
    prompts = templates(source.templates)
    assert prompts == (["an image of {}.", "a tactile image of {}."] if split == "material" else
                       ["the meterial is {}.", "this type of material is {}."])
    result = evaluate(model, source, prompts, cache_dir=tmp_path / "cache")
    assert result.prompts_encoded == n_classes * 2
    _check(result, labels, source.classes)


def test_imagenet_eeg(model, tmp_path):
    prepare_imagenet_eeg(tmp_path / "root", from_path=write_release(tmp_path / "src"), variant="val")
    source = list_source("imagenet-eeg", tmp_path / "root", "val")
    assert (source.modality, source.templates) == ("eeg", "photo_3")
    result = evaluate(model, source, templates(source.templates), cache_dir=tmp_path / "cache")
    _check(result, [0, 2], ["German shepherd", "Egyptian cat", "lycaenid"])
    assert result.names == ["trial-0:n02106662_1", "trial-2:n02281787_3"]


def test_unprepared_list_benchmarks_name_prepare(tmp_path):
    with pytest.raises(VitlensError, match="run `vitlens prepare vggsound"):
        list_source("vggsound", tmp_path)
    with pytest.raises(VitlensError, match="imagenet-eeg is not prepared"):
        list_source("imagenet-eeg", tmp_path)
    with pytest.raises(VitlensError, match="unknown imagenet-eeg variant 'train'"):
        list_source("imagenet-eeg", tmp_path, "train")
