"""Synthetic signals of the non-3D modalities, their held-out folders and captioned files of your own."""
from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from vitlens_cli.data.signals import SYNTHETIC_CLASSES, CaptionedFiles, SyntheticSignals, write_folder
from vitlens_cli.errors import VitlensError
from vitlens_cli.modalities import get_modality

MODALITIES = tuple(SYNTHETIC_CLASSES)


def _array(raw) -> np.ndarray:
    """The samples of a DepthMap (``values``), a Waveform (``samples``), an EEG tensor or RGB pixels."""
    raw = raw.values if type(raw).__name__ == "DepthMap" else raw.samples if type(raw).__name__ == "Waveform" else raw
    return np.asarray(raw)


@pytest.mark.parametrize("modality", MODALITIES)
def test_items_are_a_function_of_seed_and_index(modality):
    a, b = SyntheticSignals(modality, 12, seed=3), SyntheticSignals(modality, 12, seed=3)
    other = SyntheticSignals(modality, 12, seed=4)
    assert np.array_equal(_array(a[7].signal), _array(b[7].signal))
    assert not np.array_equal(_array(a[7].signal), _array(other[7].signal))
    assert [a.label(i) for i in range(12)] == [i % len(SYNTHETIC_CLASSES[modality]) for i in range(12)]
    assert a.classes[a.label(7)] in a[7].text  # the caption names the item's class


@pytest.mark.parametrize("modality", MODALITIES)
def test_classes_differ_after_the_released_preprocessing(modality):
    """Items prepared by the modality's plug-in: within-class spread is smaller than between-class
    distance (a learnable task), and every class gives a different mean input."""
    ds = SyntheticSignals(modality, 6 * 4, seed=0)
    plugin = get_modality(modality)
    x = torch.stack([plugin.preprocess(ds[i].signal).flatten() for i in range(len(ds))]).double()
    assert torch.isfinite(x).all()
    labels = torch.tensor([ds.label(i) for i in range(len(ds))])
    means = torch.stack([x[labels == c].mean(0) for c in range(6)])
    assert torch.cdist(means, means).add(torch.eye(6) * 1e9).min() > 0


@pytest.mark.parametrize("modality", MODALITIES)
def test_write_folder_files_read_back_through_the_plugin(tmp_path, modality):
    root = write_folder(tmp_path / modality, modality, per_class=1, seed=2, template="a {}.")
    with open(root / "captions.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["path", "caption"] and len(rows) == 7
    ds = SyntheticSignals(modality, 6, seed=2)
    plugin = get_modality(modality)
    for i, (path, caption) in enumerate(rows[1:]):
        assert caption == f"a {ds.classes[i]}." and path.startswith(ds.classes[i] + "/")
        read = plugin.read(root / path)
        if modality == "audio":  # 16-bit PCM on disk: the samples within one step, the rate kept
            assert read.sample_rate == ds.signal(i).sample_rate
            assert (read.samples - ds.signal(i).samples).abs().max() <= 1 / 32768 + 1e-7
        else:
            assert torch.equal(plugin.preprocess(read), plugin.preprocess(ds.signal(i)))


def test_captioned_files_read_each_row_with_the_modality(tmp_path):
    root = write_folder(tmp_path / "eeg", "eeg", per_class=1, seed=0)
    (root / "train.csv").write_text("path,caption,image\nalpha/alpha_00002.npy,alpha waves|an alpha rhythm,"
                                    "pic.png\n")
    ds = CaptionedFiles(root / "train.csv", "eeg", seed=1)
    assert len(ds) == 1
    item = ds[0]
    assert tuple(item.signal.shape) == (128, 500) and item.text in ("alpha waves", "an alpha rhythm")
    assert item.image == str(root / "pic.png") and item.key == "alpha/alpha_00002.npy"
    (root / "bad.csv").write_text("path,caption\nalpha/missing.npy,alpha\n")
    with pytest.raises(VitlensError, match="missing.npy: no such file"):
        CaptionedFiles(root / "bad.csv", "eeg")[0]


def test_unknown_modality_is_refused():
    with pytest.raises(VitlensError, match="no synthetic data for modality 'image'"):
        SyntheticSignals("image", 4)


def test_synthetic_captions_default_to_the_modality_s_own_prompts():
    """Without templates, a sound is captioned as the official audio zero-shot prompts word it
    (SOUND_AS_IMAGE_TEMPLATE), not with 3D's ULIP prompts."""
    from vitlens_cli.data.signals import SyntheticSignals

    ds = SyntheticSignals("audio", 6, seed=0)
    sound_as_image = {"{}.", "An image depicting {}.", "An image showing {}.", "This is {}.",
                      "A photograph shows {}.", "An image of {}.", "A good image of {}.", "A photo of {}.",
                      "A picture of {}.", "A bright image of {}."}
    for i in range(6):
        name = ds.classes[ds.label(i)]
        assert ds[i].text in {t.format(name) for t in sound_as_image}
