"""Feeding the loop: which items each rank sees at each step, prepared and augmented in workers.

The order is a function of (seed, epoch) alone and every item's randomness of (seed, epoch, index),
so K processes with batch b see exactly what one process with batch K·b sees, and a resumed run
continues with the very items the interrupted one would have used.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..data.augment import Augment, ViewAugment, augment_points, flip_rotate, random_resized_crop
from ..errors import ConfigError
from ..models.config import POINT_MODALITY, ModelConfig
from ..models.preprocess import prepare_points
from ..points import PointCloud
from .recipe import AudioAugment, DataSection, Recipe


def make_source(data: DataSection, seed: int, modality: str = POINT_MODALITY):
    """The dataset a recipe names, built with its checked ``data.options`` (see ``recipe.DATA_OPTIONS``).

    3D sources give :class:`~vitlens_cli.data.triplets.Triplet` items, the others
    :class:`~vitlens_cli.data.signals.Sample` items.
    """
    from ..data import imagenet_eeg, omni_triplets, signals, synthetic, triplets

    kind = data.kind
    opts = data.options
    if kind == "synthetic":
        seed = seed if opts.seed is None else opts.seed
        classes = tuple(opts.classes) if opts.classes else None
        if modality != POINT_MODALITY:
            return signals.SyntheticSignals(modality, opts.size, seed=seed, classes=classes,
                                            caption_templates=opts.templates)
        return synthetic.SyntheticTriplets(opts.size, seed=seed, classes=classes or synthetic.PRIMITIVES,
                                           caption_templates=opts.templates)
    if not data.root:
        raise ConfigError(f"data.root: data.kind '{kind}' needs a data root")
    root = Path(data.root)
    want_file = kind == "captions"
    if not (root.is_file() if want_file else root.is_dir()):
        what = "CSV file" if want_file else "folder"
        raise ConfigError(f"data.root: {root}: {'not a ' if root.exists() else 'no such '}{what}")
    if kind == "ulip-shapenet":
        return triplets.ULIPShapeNetTriplets(root, split=data.split, seed=seed, image_dir=opts.image_dir,
                                             whole=opts.whole, use_templates=opts.use_templates)
    if kind == "ulip2-objaverse":
        return triplets.ULIP2ObjaverseTriplets(root, seed=seed)
    if kind == "openshape":
        split_json = opts.split_json or f"meta_data/split/{data.split}.json"
        return triplets.OpenShapeTriplets(root, split_json, seed=seed, text_source=tuple(opts.text_source),
                                          use_prompt_engineering=opts.use_prompt_engineering,
                                          gpt4_filtering=opts.gpt4_filtering)
    if kind == "sunrgbd":
        return omni_triplets.SUNRGBDTriplets(root, opts.annotation, seed=seed)
    if kind == "touch-and-go":
        return omni_triplets.TouchAndGoTriplets(root, opts.annotation, seed=seed)
    if kind == "audioset":
        return omni_triplets.AudioSetTriplets(root, list(opts.annotation), frame_dir=opts.frame_dir, seed=seed)
    if kind == "imagenet-eeg":
        return imagenet_eeg.ImageNetEEGTrain(root, opts.data_file, opts.split_file, split=data.split,
                                             image_dir=opts.image_dir, seed=seed)
    if modality != POINT_MODALITY:
        return signals.CaptionedFiles(root, modality, seed=seed)
    return triplets.CaptionedShapes(root, seed=seed)


class TrainExamples(Dataset):
    """``ds[(epoch, i)]`` → one prepared, augmented example as a dict of arrays/strings.

    3D items go through the model card's point contract and ``data.augment``; the other modalities
    through their plug-in's preprocessing with the card's contract (the released eval processor) and,
    for audio, ``data.audio_augment``, for depth and tactile ``data.view_augment``. Training takes one
    audio clip per item as the released training processor does (``n_clip`` 1): the first clip of the
    eval plan, or with ``random_window`` a random one.
    """

    def __init__(self, source, cfg: ModelConfig, recipe: Recipe, source_up_axis: str | None = None,
                 augment: bool = True) -> None:
        self.source = source
        self.modality = recipe.model.modality
        self.pre = cfg.preprocess
        self.augment = recipe.data.augment if augment else Augment()
        self.audio_augment = recipe.data.audio_augment if augment else AudioAugment()
        self.view_augment = recipe.data.view_augment if augment else ViewAugment()
        self.seed = recipe.seed
        self.source_up_axis = source_up_axis
        self.plugin = self.contract = None
        if self.modality != POINT_MODALITY:
            from ..modalities import get_modality

            self.plugin = get_modality(self.modality)
            saved = cfg.contracts.get(self.modality)
            self.contract = self.plugin.contract_from_dict(saved) if saved else self.plugin.default_contract()

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        epoch, i = key
        if getattr(self.source, "epoch", None) != epoch:
            self.source.set_epoch(epoch)
        t = self.source[i]
        rng = np.random.default_rng([self.seed, epoch, i, 7])
        if self.plugin is None:
            rgb = t.points[:, 3:6] if t.points.shape[1] >= 6 else None
            pts = prepare_points(PointCloud(t.points[:, :3], rgb=rgb), self.pre, source_up_axis=self.source_up_axis,
                                 seed=int(rng.integers(2**31)))
            x = augment_points(pts, self.augment, self.pre.up_axis, rng).astype(np.float32)
        elif self.modality == "audio" and self.audio_augment.mixup and rng.random() < self.audio_augment.mixup:
            other = self.source[int(rng.integers(len(self.source)))]
            lam = float(rng.beta(10, 10))
            window = rng if self.audio_augment.random_window else None
            x = augment_fbank(mixed_fbank(t.signal, other.signal, lam, self.contract, window), self.audio_augment, rng)
            text = None if t.text is None or other.text is None else \
                f"{t.text.removesuffix('.')} and {other.text.lower()}"
            # The released code also mixes the paired video frames' pixels; a frame goes through the frozen
            # image tower whole here (its feature is cached by path), so a mixed item keeps its own frame.
            return {"input": x, "text": text, "image": t.image, "text_feat": None, "image_feat": t.image_feat,
                    "key": f"{t.key}+{other.key}"}
        elif self.modality == "audio":
            from ..modalities import audio

            clip = training_clip(t.signal, self.contract, rng if self.audio_augment.random_window else None)
            x = augment_fbank(audio.log_mel(clip, self.contract).numpy(), self.audio_augment, rng)
        elif self.view_augment != ViewAugment():
            x = augmented_view(self.modality, t.signal, self.contract, self.view_augment, rng).numpy()
        else:
            x = self.plugin.preprocess(t.signal, self.contract).numpy()
        return {"input": x, "text": t.text, "image": t.image, "text_feat": t.text_feat,
                "image_feat": t.image_feat, "key": t.key}


def training_clip(wave, contract, rng: np.random.Generator | None = None) -> torch.Tensor:
    """One ``(channels, clip_samples)`` training clip of a waveform, resampled, its mean removed.

    ``rng`` None: the first clip of the eval plan. Else as ``ASTProcessorTrain.load_audio_clip``: a window
    from ``RandomClipSampler`` (start ~ U(0, max(duration - clip, 0)), ``clip_duration`` long, cut at the
    end of the file), then ``audio_get_clip`` on it (doubled up to a clip's length, a random offset when
    longer).
    """
    import random
    from dataclasses import replace

    from ..modalities import audio

    wave = audio.resample(audio.Waveform(wave.samples.float(), wave.sample_rate), contract.sample_rate)
    samples = wave.samples
    if rng is None:
        return audio.cut_clip(samples, audio.plan_clips(samples.shape[1], contract)[0], contract.clip_samples)
    duration = samples.shape[1] / contract.sample_rate
    start = rng.uniform(0.0, max(duration - contract.clip_duration, 0.0))
    end = min(start + contract.clip_duration, duration)
    window = samples[:, int(start * contract.sample_rate):int(end * contract.sample_rate)]
    # a window of at most one clip: the plan of one clip is the doubling and offset rule over it
    one = replace(contract, n_clips=1)
    record = audio.plan_clips(window.shape[1], one, random.Random(int(rng.integers(2**31))))[0]
    return audio.cut_clip(window, record, contract.clip_samples)


def augmented_view(modality: str, raw, contract, aug: ViewAugment, rng: np.random.Generator) -> torch.Tensor:
    """A depth map or tactile frame through its released train processor's geometry: the un-normalised
    tensor (DepthNorm'd disparity; RGB in [0, 1]), a random resized crop (or the eval resize and centre
    crop), the flips and rotation of ``aug``, then the contract's normalisation."""
    from ..modalities import depth, tactile
    from ..modalities._imaging import center_crop, normalize_channels, resize_short_side

    if modality == "depth":
        x = torch.from_numpy(np.ascontiguousarray(depth.to_disparity(raw, contract)))[None]
        x = x.clamp(contract.min_disparity, contract.max_disparity).div_(contract.max_disparity)
        mean, std = (contract.mean,), (contract.std,)
    else:
        x, mean, std = tactile.to_tensor(raw), contract.mean, contract.std
    if aug.random_crop:
        x = random_resized_crop(x, contract.crop, aug, rng)
    else:
        x = center_crop(resize_short_side(x, contract.resize), contract.crop)
    return normalize_channels(flip_rotate(x, aug, rng), mean, std)


def mixed_fbank(a, b, lam: float, contract, rng: np.random.Generator | None = None) -> np.ndarray:
    """The released mixup (``AudioSetDataset.__getitem__``): a :func:`training_clip` of each waveform (the
    first, or random windows from ``rng``), ``lam · a + (1 - lam) · b``, its mean removed again, then the
    log-mel filterbank."""
    from ..modalities import audio

    clips = [training_clip(wave, contract, rng) for wave in (a, b)]
    channels = min(c.shape[0] for c in clips)
    mix = lam * clips[0][:channels] + (1 - lam) * clips[1][:channels]
    return audio.log_mel(mix - mix.mean(), contract).numpy()


def augment_fbank(fbank: np.ndarray, aug: AudioAugment, rng: np.random.Generator) -> np.ndarray:
    """``(frames, mel_bins)`` normalised log-mel → the released training augmentations, seeded by ``rng``.

    As ``ASTProcessorTrain``: torchaudio's ``FrequencyMasking`` / ``TimeMasking`` (a width drawn from
    [0, mask), a start from [0, size - width), the band set to 0) act before the AudioSet normalisation,
    so a masked bin reads ``(0 - mean) / std`` here; then noise ``U(0,1) · U(0,1) / 10`` and a roll of the
    frames by ``-10..9``.
    """
    from ..modalities.audio import AudioContract

    out = np.array(fbank, dtype=np.float32)
    c = AudioContract()
    masked = np.float32((0.0 - c.mean) / c.std)
    for axis, width in ((1, aug.freq_mask), (0, aug.time_mask)):
        if width > 0:
            w = int(rng.uniform(0, width))
            start = int(rng.uniform(0, out.shape[axis] - w))
            index = [slice(None), slice(None)]
            index[axis] = slice(start, start + w)
            out[tuple(index)] = masked
    if aug.noise:
        out = out + rng.random(out.shape, dtype=np.float32) * np.float32(rng.random() / 10.0)
        out = np.roll(out, int(rng.integers(-10, 10)), axis=0)
    return out


def collate(items: list[dict]) -> dict:
    out = {"input": torch.from_numpy(np.stack([it["input"] for it in items])),
           "key": [it["key"] for it in items], "text": [it["text"] for it in items],
           "image": [it["image"] for it in items]}
    for name in ("text_feat", "image_feat"):
        feats = [it[name] for it in items]
        out[name] = None if any(f is None for f in feats) else \
            torch.from_numpy(np.stack([np.asarray(f, np.float32).reshape(-1) for f in feats]))
    return out


@dataclass(frozen=True)
class Schedule:
    """How many items make one optimiser step and where step ``s`` reads them."""

    size: int
    batch: int          # per rank, per micro-batch
    world: int
    accum: int
    seed: int

    @property
    def per_step(self) -> int:
        return self.batch * self.world * self.accum

    @property
    def steps_per_epoch(self) -> int:
        return self.size // self.per_step

    def indices(self, step: int, micro: int, rank: int) -> list[tuple[int, int]]:
        epoch, within = divmod(step, self.steps_per_epoch)
        order = np.random.default_rng([self.seed, epoch]).permutation(self.size)
        start = within * self.per_step + (micro * self.world + rank) * self.batch
        return [(epoch, int(i)) for i in order[start:start + self.batch]]


class StepBatches(Sampler):
    def __init__(self, schedule: Schedule, rank: int, start_step: int, total_steps: int) -> None:
        self.schedule, self.rank, self.start, self.total = schedule, rank, start_step, total_steps

    def __len__(self) -> int:
        return (self.total - self.start) * self.schedule.accum

    def __iter__(self):
        for step in range(self.start, self.total):
            for micro in range(self.schedule.accum):
                yield self.schedule.indices(step, micro, self.rank)


def make_loader(examples: TrainExamples, schedule: Schedule, rank: int, start_step: int, total_steps: int,
                workers: int) -> DataLoader:
    return DataLoader(examples, batch_sampler=StepBatches(schedule, rank, start_step, total_steps),
                      num_workers=workers, collate_fn=collate)
