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


DEPTH = REPO / "vitlens_cli" / "recipes" / "tiny-depth-cpu.yaml"
TACTILE = REPO / "vitlens_cli" / "recipes" / "tiny-tactile-cpu.yaml"


def _examples(path: Path, overrides: list[str], augment: bool = True) -> TrainExamples:
    recipe = load_recipe(path, ["data.options.size=12", *overrides])
    return TrainExamples(make_source(recipe.data, recipe.seed, recipe.model.modality), model_config(recipe), recipe,
                         augment=augment)


@pytest.mark.parametrize("path", [DEPTH, TACTILE], ids=["depth", "tactile"])
def test_view_crop_is_seeded_per_item_and_epoch(path):
    crop = _examples(path, ["data.view_augment.random_crop=true"])
    plain = _examples(path, [], augment=False)
    first = crop[(0, 3)]["input"]
    assert first.shape == plain[(0, 3)]["input"].shape
    assert not np.allclose(first, plain[(0, 3)]["input"])  # the crop changes what the lens sees
    assert np.array_equal(crop[(0, 3)]["input"], first)  # a function of (seed, epoch, index)
    assert not np.allclose(crop[(1, 3)]["input"], first)  # another crop next epoch
    assert not np.allclose(crop[(0, 4)]["input"], first)


@pytest.mark.parametrize("path", [DEPTH, TACTILE], ids=["depth", "tactile"])
def test_view_flip_alone_mirrors_the_eval_view(path):
    flipped = _examples(path, ["data.view_augment.hflip=1.0"])
    plain = _examples(path, [], augment=False)
    np.testing.assert_array_equal(flipped[(0, 2)]["input"], plain[(0, 2)]["input"][..., ::-1])


def _wave(seconds: float, square: bool = False):
    import torch

    from vitlens_cli.modalities.audio import Waveform

    n = int(seconds * 16000)
    x = torch.arange(n, dtype=torch.float64) / n
    return Waveform((x * x if square else x).float()[None], 16000), n


def _start(clip: np.ndarray, samples: np.ndarray) -> int:
    """Where ``clip`` (mean removed) lies in ``samples`` (a parabola: the slope tells, the samples confirm)."""
    n = len(samples)
    guess = int(round((np.diff(clip[:1000].astype(np.float64)).mean() * n * n - 1) / 2 - 500))
    for start in range(max(guess - 200, 0), min(guess + 200, n - len(clip)) + 1):
        part = samples[start:start + len(clip)]
        if np.allclose(part - part.mean(), clip, atol=1e-6):
            return start
    raise AssertionError(f"the clip is no slice of the file near {guess}")


def test_random_window_lies_within_the_clip_and_moves():
    from vitlens_cli.training.data import training_clip

    wave, n = _wave(12.0, square=True)
    samples = wave.samples.numpy()[0]
    contract = AudioContract()
    starts = set()
    for seed in range(4):
        clip = training_clip(wave, contract, np.random.default_rng(seed)).numpy()[0]
        assert clip.shape == (contract.clip_samples,)
        start = _start(clip, samples)
        assert 0 <= start <= n - contract.clip_samples
        starts.add(start)
    assert len(starts) == 4
    first = training_clip(wave, contract).numpy()[0]  # no rng: the first clip of the eval plan, from 0
    assert _start(first, samples) == 0


def test_random_window_of_a_short_file_is_the_whole_file_doubled():
    from vitlens_cli.training.data import training_clip

    wave, n = _wave(3.0)
    clip = training_clip(wave, AudioContract(), np.random.default_rng(0)).numpy()[0]
    jumps = np.flatnonzero(np.diff(clip) < 0)  # where the doubled file starts again
    assert len(jumps) == 1 and clip.shape == (AudioContract().clip_samples,)


def test_random_window_is_drawn_per_item_and_epoch():
    """A 12-s chirp (another pitch every window): the filterbank follows the window of each (epoch, index)."""
    import torch

    from vitlens_cli.data.signals import Sample
    from vitlens_cli.modalities.audio import Waveform

    t = np.arange(12 * 16000) / 16000
    chirp = Waveform(torch.from_numpy(np.sin(2 * np.pi * (200 * t + 60 * t ** 2)).astype(np.float32))[None], 16000)

    class Long:
        epoch = 0

        def set_epoch(self, epoch):
            self.epoch = epoch

        def __len__(self):
            return 4

        def __getitem__(self, i):
            return Sample(chirp, "a chirp", None, None, None, f"c{i}")

    plain = ["data.audio_augment.noise=false", "data.audio_augment.freq_mask=0", "data.audio_augment.time_mask=0"]
    recipe = load_recipe(AUDIO, plain)  # the tiny recipe turns random_window on, as released
    windowed = TrainExamples(Long(), model_config(recipe), recipe)
    item = windowed[(0, 1)]["input"]
    assert np.array_equal(windowed[(0, 1)]["input"], item)
    assert not np.allclose(windowed[(1, 1)]["input"], item) and not np.allclose(windowed[(0, 2)]["input"], item)
    first_clip = load_recipe(AUDIO, [*plain, "data.audio_augment.random_window=false"])
    fixed = TrainExamples(Long(), model_config(recipe), first_clip)
    assert np.array_equal(fixed[(0, 1)]["input"], fixed[(1, 2)]["input"])  # off: the first clip, always
