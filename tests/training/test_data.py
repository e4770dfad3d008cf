"""Feeding the loop for the non-3D modalities: the released audio augmentations and mixup, seeded per item."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vitlens_cli.modalities.audio import AudioContract
from vitlens_cli.training.data import TrainExamples, augment_fbank, make_source, mixed_fbank
from vitlens_cli.training.recipe import AudioAugment, load_recipe, model_config

REPO = Path(__file__).resolve().parents[2]
AUDIO = REPO / "vitlens_cli" / "recipes" / "tiny-audio-cpu.yaml"
MASKED = np.float32((0 - AudioContract().mean) / AudioContract().std)


def _fbank() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(512, 128)).astype(np.float32)


def test_spec_augment_masks_one_band_and_one_span():
    x = _fbank()
    out = augment_fbank(x, AudioAugment(freq_mask=12, time_mask=48), np.random.default_rng(3))
    assert out.shape == x.shape and out.dtype == np.float32
    bins = np.flatnonzero((out == MASKED).all(axis=0))
    frames = np.flatnonzero((out == MASKED).all(axis=1))
    assert 0 < len(bins) < 12 and np.array_equal(bins, np.arange(bins[0], bins[0] + len(bins)))
    assert 0 < len(frames) < 48 and np.array_equal(frames, np.arange(frames[0], frames[0] + len(frames)))
    untouched = np.ones_like(x, dtype=bool)
    untouched[:, bins] = untouched[frames, :] = False
    assert np.array_equal(out[untouched], x[untouched])
    again = augment_fbank(x, AudioAugment(freq_mask=12, time_mask=48), np.random.default_rng(3))
    assert np.array_equal(out, again)


def test_noise_adds_at_most_a_tenth_then_rolls_the_frames():
    x = _fbank()
    rng = np.random.default_rng(5)
    out = augment_fbank(x, AudioAugment(noise=True), rng)
    replay = np.random.default_rng(5)
    noise = replay.random(x.shape, dtype=np.float32) * np.float32(replay.random() / 10.0)
    shift = int(replay.integers(-10, 10))
    assert np.array_equal(out, np.roll(x + noise, shift, axis=0))
    assert 0 < float((out - np.roll(x, shift, axis=0)).max()) <= 0.1


def test_mixup_mixes_waveforms_and_captions_reproducibly():
    recipe = load_recipe(AUDIO, ["data.options.size=12", "data.audio_augment.mixup=1.0",
                                 "data.audio_augment.freq_mask=0", "data.audio_augment.time_mask=0",
                                 "data.audio_augment.noise=false"])
    source = make_source(recipe.data, recipe.seed, "audio")
    examples = TrainExamples(source, model_config(recipe), recipe)
    item = examples[(0, 4)]
    own, other_key = item["key"].split("+")
    other = source[int(other_key.rsplit("_", 1)[1])]
    assert own == source[4].key and item["text"] == f"{source[4].text.removesuffix('.')} and {other.text.lower()}"
    rng = np.random.default_rng([recipe.seed, 0, 4, 7])
    rng.random(), rng.integers(len(source))
    expected = mixed_fbank(source[4].signal, other.signal, float(rng.beta(10, 10)), examples.contract)
    assert np.array_equal(item["input"], expected)
    assert np.array_equal(examples[(0, 4)]["input"], item["input"])  # a function of (seed, epoch, index)
    plain = TrainExamples(source, model_config(recipe), load_recipe(AUDIO, ["data.options.size=12"]), augment=False)
    assert not np.allclose(plain[(0, 4)]["input"], item["input"])


@pytest.mark.parametrize("lam", [0.0, 1.0])
def test_mixup_at_the_ends_is_one_of_the_clips(lam):
    from vitlens_cli.data.signals import SyntheticSignals
    from vitlens_cli.modalities import get_modality

    ds = SyntheticSignals("audio", 2, seed=0)
    a, b = ds[0].signal, ds[1].signal
    whole = get_modality("audio").preprocess(a if lam == 1.0 else b)[0].numpy()
    np.testing.assert_allclose(mixed_fbank(a, b, lam, AudioContract()), whole, atol=1e-4)
