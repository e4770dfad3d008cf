"""Feeding the loop for the non-3D modalities: the released audio augmentations and mixup, seeded per item."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from vitlens_cli.modalities.audio import AudioContract
from vitlens_cli.training.data import TrainExamples, augment_fbank, make_source, mixed_fbank, training_clip
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
    lam = float(rng.beta(10, 10))
    clips = [training_clip(s.signal, examples.contract, rng)[0] for s in (source[4], other)]
    expected = mixed_fbank(*clips, lam, examples.contract)
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
    clips = [training_clip(w, AudioContract())[0] for w in (a, b)]
    np.testing.assert_allclose(mixed_fbank(*clips, lam, AudioContract()), whole, atol=1e-4)


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
    wave, n = _wave(12.0, square=True)
    samples = wave.samples.numpy()[0]
    contract = AudioContract()
    starts = set()
    for seed in range(4):
        clip, seconds = training_clip(wave, contract, np.random.default_rng(seed))
        clip = clip.numpy()[0]
        assert clip.shape == (contract.clip_samples,)
        start = _start(clip, samples)
        assert 0 <= start <= n - contract.clip_samples
        assert abs(seconds * 16000 - start) <= 2  # the start it reports (the paired frame's) is the clip's
        starts.add(start)
    assert len(starts) == 4
    first, seconds = training_clip(wave, contract)  # no rng: the first clip of the eval plan, from 0
    assert _start(first.numpy()[0], samples) == 0 and seconds == 0.0


def test_random_window_of_a_short_file_is_the_whole_file_doubled():
    wave, n = _wave(3.0)
    clip = training_clip(wave, AudioContract(), np.random.default_rng(0))[0].numpy()[0]
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


# ---------------------------------------------------------------------------------------------
# The paired image as the released processors see it: per-item views drawn with the signal's rng
# ---------------------------------------------------------------------------------------------

CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


def _coded(h: int = 90, w: int = 120):
    """An RGB frame whose red and green encode x and y ((v + 1) / 256, exact in uint8 and never 0) and a
    disparity map of the same place, 1 + x / 4 + y / 5: a pixel of each says where it came from."""
    from vitlens_cli.modalities.depth import DepthMap

    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    rgb = np.stack([x + 1, y + 1, np.full_like(x, 128)], axis=-1).astype(np.uint8)
    return rgb, DepthMap((1 + x / 4 + y / 5).astype(np.float32), "disparity")


def _rgb(rgb: np.ndarray):
    import torch

    return torch.from_numpy(rgb).permute(2, 0, 1).float() / 255


def _disparity(signal) -> np.ndarray:
    from vitlens_cli.modalities.depth import DepthContract

    c = DepthContract()
    return (np.asarray(signal)[0] * np.float32(c.std) + np.float32(c.mean)) * np.float32(c.max_disparity)


def _where(crop) -> tuple[np.ndarray, np.ndarray]:
    crop = np.asarray(crop)
    return crop[0] * 255 - 1, crop[1] * 255 - 1


def test_depth_and_its_rgb_frame_share_one_crop_and_flip():
    from vitlens_cli.data.augment import ViewAugment
    from vitlens_cli.modalities.depth import DepthContract
    from vitlens_cli.training.data import augmented_view

    rgb, depth = _coded()
    aug = ViewAugment(random_crop=True, hflip=0.5)
    spans = set()
    for seed in range(12):
        signal, crop = augmented_view("depth", depth, DepthContract(), aug, np.random.default_rng(seed), _rgb(rgb))
        assert signal.shape == (1, 224, 224) and crop.shape == (3, 224, 224)
        x, y = _where(crop)
        # bilinear resampling of both is the same weighted sum of the same source pixels
        np.testing.assert_allclose(_disparity(signal), 1 + x / 4 + y / 5, atol=2e-3)
        spans.add((round(float(x[0, -1] - x[0, 0])), round(float(y[-1, 0] - y[0, 0]))))
    assert len(spans) > 6 and any(dx < 0 for dx, _ in spans)  # the crops vary, some are mirrored
    alone, none = augmented_view("depth", depth, DepthContract(), aug, np.random.default_rng(0))
    assert none is None and alone.shape == (1, 224, 224)  # no frame: the depth map alone, as before


def test_erasing_hits_the_same_box_in_depth_and_rgb():
    from vitlens_cli.data.augment import ViewAugment
    from vitlens_cli.modalities.depth import DepthContract
    from vitlens_cli.training.data import augmented_view

    rgb, depth = _coded()
    aug = ViewAugment(random_crop=True, erase=1.0)
    for seed in range(6):
        signal, crop = augmented_view("depth", depth, DepthContract(), aug, np.random.default_rng(seed), _rgb(rgb))
        in_depth = np.abs(_disparity(signal)) < 1e-4  # the map is at least 1 everywhere else
        in_rgb = (crop == 0).all(0).numpy()
        assert in_depth.any() and np.array_equal(in_depth, in_rgb)
        assert not (crop == 0).any(0).numpy()[~in_rgb].any()  # no channel erased alone


def test_colour_jitter_changes_the_rgb_and_never_the_depth():
    import torch

    from vitlens_cli.data.augment import ViewAugment
    from vitlens_cli.modalities.depth import DepthContract
    from vitlens_cli.training.data import augmented_view

    rgb, depth = _coded()
    for seed in range(4):
        plain = augmented_view("depth", depth, DepthContract(), ViewAugment(random_crop=True),
                               np.random.default_rng(seed), _rgb(rgb))
        jittered = augmented_view("depth", depth, DepthContract(), ViewAugment(random_crop=True, color_jitter=0.4),
                                  np.random.default_rng(seed), _rgb(rgb))
        assert torch.equal(plain[0], jittered[0])
        assert not torch.allclose(plain[1], jittered[1], atol=1e-3)


class _Paired:
    """A source of depth maps (or tactile frames) with paired RGB frames on disk, or none."""

    epoch = 0

    def __init__(self, tmp_path: Path, modality: str = "depth", with_images: bool = True):
        from PIL import Image

        from vitlens_cli.data.signals import Sample

        rgb, depth = _coded()
        path = tmp_path / "frame.png"
        Image.fromarray(rgb).save(path)
        signal = depth if modality == "depth" else rgb
        self.items = [Sample(signal, f"a scene {k}", str(path) if with_images else None, None, None, f"s{k}")
                      for k in range(4)]

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def _paired_examples(tmp_path, overrides, modality="depth", size=224, with_images=True) -> TrainExamples:
    from vitlens_cli.training.features import ImageView

    recipe = load_recipe(DEPTH if modality == "depth" else TACTILE, overrides)
    return TrainExamples(_Paired(tmp_path, modality, with_images), model_config(recipe), recipe,
                         image_view=ImageView(size, CLIP_MEAN, CLIP_STD))


def _unnormalised(view: np.ndarray) -> np.ndarray:
    return view * np.float32(CLIP_STD)[:, None, None] + np.float32(CLIP_MEAN)[:, None, None]


def test_a_depth_item_carries_its_frame_as_the_same_augmented_view(tmp_path):
    aug = ["data.view_augment.random_crop=true", "data.view_augment.hflip=0.5", "data.view_augment.erase=0.25"]
    examples = _paired_examples(tmp_path, aug)
    item = examples[(0, 1)]
    assert item["image"] is None and item["view"].shape == (3, 224, 224)  # pixels, never the path
    x, y = _where(_unnormalised(item["view"]))
    kept = np.abs(_disparity(item["input"])) > 1e-4
    np.testing.assert_allclose(_disparity(item["input"])[kept], (1 + x / 4 + y / 5)[kept], atol=2e-3)
    again = examples[(0, 1)]
    assert np.array_equal(again["input"], item["input"]) and np.array_equal(again["view"], item["view"])
    assert not np.allclose(examples[(1, 1)]["view"], item["view"])  # next epoch, another draw
    small = _paired_examples(tmp_path, aug, size=112)[(0, 1)]
    assert small["view"].shape == (3, 112, 112) and np.array_equal(small["input"], item["input"])
    alone = _paired_examples(tmp_path, aug, with_images=False)[(0, 1)]
    assert alone["view"] is None and alone["image"] is None and alone["input"].shape == (1, 224, 224)
    plain = _paired_examples(tmp_path, [])[(0, 1)]  # no view augmentation: the frame goes by path (cached)
    assert plain["view"] is None and plain["image"].endswith("frame.png")


def test_a_tactile_item_draws_its_own_frame_view_under_image_augment(tmp_path):
    examples = _paired_examples(tmp_path, ["data.view_augment.random_crop=true", "data.image_augment.random_crop=true",
                                           "data.image_augment.rand_augment=[2,9]", "data.image_augment.color_jitter=0.4"],
                                 modality="tactile")
    item = examples[(0, 2)]
    assert item["image"] is None and item["view"].shape == (3, 224, 224)
    assert np.array_equal(examples[(0, 2)]["view"], item["view"])
    gel = _unnormalised(item["input"])  # the tactile contract normalises with CLIP's mean and std too
    frame = _unnormalised(item["view"])
    assert not np.allclose(gel, frame, atol=1e-2)  # two draws: the frame is not the gel's crop
    only_gel = _paired_examples(tmp_path, ["data.view_augment.random_crop=true"], modality="tactile")[(0, 2)]
    assert only_gel["view"] is None and np.array_equal(only_gel["input"], item["input"])


def _audioset_with_frames(root: Path, rate: float = 1.0):
    """The official lists (two good videos of 12 s and 11 s) with frames extracted at ``rate`` per second, each
    frame a solid colour of its number."""
    from PIL import Image

    from tests.data.test_omni_triplets import audioset
    from vitlens_cli.data.omni_triplets import AudioSetTriplets

    audioset(root, seconds=(12.0, 3.0, 11.0))
    source = AudioSetTriplets(root, ["audioset_balanced_train.json", "audioset_unbalanced_train.json"],
                              frame_dir="frames", frame_rate=rate)
    for item, seconds in zip(source.items, (12.0, 11.0)):
        folder = root / "frames" / Path(item["video_path"]).with_suffix("")
        folder.mkdir(parents=True)
        for n in range(1, int(seconds * rate) + 1):
            Image.new("RGB", (8, 8), (10 * n, 100, 200 - 10 * n)).save(folder / f"{n:06d}.png")
    return source


def _frame_transform():
    from torchvision import transforms as T

    return T.Compose([T.Resize(16), T.CenterCrop(16), T.ToTensor(), T.Normalize(CLIP_MEAN, CLIP_STD)])


PLAIN_AUDIO = ["data.audio_augment.noise=false", "data.audio_augment.freq_mask=0", "data.audio_augment.time_mask=0"]


def test_an_audio_clip_pairs_the_frame_at_its_window_s_start(tmp_path):
    from vitlens_cli.training.features import ImageView

    source = _audioset_with_frames(tmp_path)
    recipe = load_recipe(AUDIO, [*PLAIN_AUDIO, "data.audio_augment.mixup=0.0"])
    examples = TrainExamples(source, model_config(recipe), recipe,
                             image_view=ImageView(16, CLIP_MEAN, CLIP_STD, _frame_transform()))
    chosen = set()
    for epoch in range(5):
        for i in range(2):
            item = examples[(epoch, i)]
            rng = np.random.default_rng([recipe.seed, epoch, i, 7])
            start = training_clip(source[i].signal, examples.contract, rng)[1]
            folder = tmp_path / "frames" / Path(source.items[i]["video_path"]).with_suffix("")
            # decord_get_clip starts at int(start * fps); one frame per second here
            assert item["image"] == str(folder / f"{int(start) + 1:06d}.png") and item["view"] is None
            chosen.add(item["image"])
    assert len(chosen) > 4  # the frame moves with the window


def test_mixup_mixes_the_two_frames_with_its_lambda_and_appends_a_raw_caption(tmp_path):
    import torch

    from vitlens_cli.training.features import ImageView, load_image

    source = _audioset_with_frames(tmp_path)
    recipe = load_recipe(AUDIO, [*PLAIN_AUDIO, "data.audio_augment.mixup=1.0"])
    transform = _frame_transform()
    examples = TrainExamples(source, model_config(recipe), recipe, image_view=ImageView(16, CLIP_MEAN, CLIP_STD,
                                                                                         transform))
    suffixes = {0: set(), 1: set()}
    for epoch in range(12):
        item = examples[(epoch, 0)]
        rng = np.random.default_rng([recipe.seed, epoch, 0, 7])
        rng.random()
        j = int(rng.integers(len(source)))
        lam = float(rng.beta(10, 10))
        own_start = training_clip(source[0].signal, examples.contract, rng)[1]
        other_start = training_clip(source[j].signal, examples.contract, rng)[1]
        frames = [transform(load_image(source.frame(k, s))) for k, s in ((0, own_start), (j, other_start))]
        assert item["image"] is None
        torch.testing.assert_close(torch.from_numpy(item["view"]), lam * frames[0] + (1 - lam) * frames[1])
        own = source[0].text
        assert item["text"].startswith(f"{own} and ")
        suffixes[j].add(item["text"].removeprefix(f"{own} and "))
    # the other's caption as random.choice(captions): any of them, class names untemplated, raw, lower-cased
    raw = {j: {c.lower() for c in source.items[j]["captions"]} for j in (0, 1)}
    assert suffixes[0] <= raw[0] and suffixes[1] <= raw[1]
    assert "a man talks over music." in suffixes[0] and "speech, music" in suffixes[0]  # raw: its "." kept


@pytest.mark.parametrize("modality, aug", [
    ("depth", ["data.view_augment.random_crop=true", "data.view_augment.hflip=0.5", "data.view_augment.color_jitter=0.4",
               "data.view_augment.erase=0.25"]),
    ("tactile", ["data.image_augment.random_crop=true", "data.image_augment.rand_augment=[2,9]",
                 "data.image_augment.color_jitter=0.4"])])
def test_views_are_the_same_after_a_resume_and_split_across_ranks(tmp_path, modality, aug):
    """What exact resume and DDP equality need of per-item views: a function of (seed, epoch, index) alone,
    in the main process or in workers. (Not across the two: torch's resampling kernels round by an ulp
    differently with the thread count, one thread in a worker; the signal's views share that.)"""
    import torch

    from vitlens_cli.training.data import Schedule, make_loader

    examples = _paired_examples(tmp_path, aug, modality=modality)

    def views(world: int, rank: int, batch: int, start: int, workers: int) -> list[torch.Tensor]:
        loader = make_loader(examples, Schedule(len(examples), batch, world, 1, 0), rank, start, 4, workers)
        return [torch.stack(b["view"]) for b in loader]

    for workers in (0, 2):
        whole = views(1, 0, 2, 0, workers)
        assert len(whole) == 4 and not torch.equal(whole[0], whole[2])  # epochs 0 and 1 draw anew
        assert all(torch.equal(a, b) for a, b in zip(views(1, 0, 2, 1, workers), whole[1:]))  # resumed at step 1
        halves = zip(views(2, 0, 1, 0, workers), views(2, 1, 1, 0, workers))
        assert all(torch.equal(torch.cat([a, b]), w) for (a, b), w in zip(halves, whole))  # 2 ranks x 1 = 1 x 2


def test_the_audio_frame_gets_pytorchvideo_s_rand_augment_first_on_its_0_255_values(monkeypatch):
    import torch

    from vitlens_cli.data.augment import ViewAugment
    from vitlens_cli.training import data

    seen = []

    def inverted(frame, num_layers, magnitude, prob, rng):
        seen.append((frame.clone(), num_layers, magnitude, prob))
        return 255 - frame

    monkeypatch.setattr(data, "video_rand_augment", inverted)
    rgb = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (3, 40, 60)).astype(np.float32) / 255)
    aug = ViewAugment(short_side=(256, 340), hflip=0.5, video_rand_augment=(2, 9, 0.3))
    out = data.augmented_image(rgb, aug, 28, np.random.default_rng(1))
    frame, *args = seen[0]
    assert torch.equal(frame, (rgb * 255).round()) and args == [2, 9, 0.3]  # the whole frame, before the crop
    # the geometry then runs on the augmented frame, from the same draws
    ref = data.augmented_image(1 - rgb, dataclasses.replace(aug, video_rand_augment=None), 28, np.random.default_rng(1))
    torch.testing.assert_close(out, ref)
