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

from ..data.augment import (Augment, ViewAugment, augment_points, color_jitter, flip_rotate, rand_augment,
                            random_erase, random_resized_crop, short_side_crop, video_rand_augment)
from ..errors import ConfigError
from ..models.config import POINT_MODALITY, ModelConfig
from ..models.preprocess import prepare_points
from ..points import PointCloud
from .features import ImageView, load_image
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
        return omni_triplets.AudioSetTriplets(root, list(opts.annotation), frame_dir=opts.frame_dir,
                                              frame_rate=opts.frame_rate, frames=opts.frames, seed=seed)
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

    With ``image_view`` (the frozen image tower's input) a paired image that the released code augments
    comes as ``view``, pixels drawn from the item's rng, instead of by path (``image``, which the loop
    encodes once and caches): the depth map's RGB frame under ``data.view_augment`` (one joint draw, as
    ``RGBD_Processor_Train`` transforms the RGB-D stack), a tactile or audio frame under
    ``data.image_augment``, and the two frames of an audio mixup, mixed with its lambda.
    """

    def __init__(self, source, cfg: ModelConfig, recipe: Recipe, source_up_axis: str | None = None,
                 augment: bool = True, image_view: ImageView | None = None) -> None:
        self.source = source
        self.modality = recipe.model.modality
        self.pre = cfg.preprocess
        self.augment = recipe.data.augment if augment else Augment()
        self.audio_augment = recipe.data.audio_augment if augment else AudioAugment()
        self.view_augment = recipe.data.view_augment if augment else ViewAugment()
        self.image_augment = recipe.data.image_augment if augment else ViewAugment()
        self.views_on = self.view_augment != ViewAugment()
        self.images_on = self.image_augment != ViewAugment()
        # the hooks of a source whose frame follows the clip's window (AudioSet), looked up once
        self.frame_of = getattr(source, "frame", None)
        self.raw_caption = getattr(source, "mixup_caption", None)
        self.image_view = image_view
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
        view = None
        if self.plugin is None:
            rgb = t.points[:, 3:6] if t.points.shape[1] >= 6 else None
            pts = prepare_points(PointCloud(t.points[:, :3], rgb=rgb), self.pre, source_up_axis=self.source_up_axis,
                                 seed=int(rng.integers(2**31)))
            x = augment_points(pts, self.augment, self.pre.up_axis, rng).astype(np.float32)
        elif self.modality == "audio":
            return self._audio(t, i, rng)
        elif self.views_on:
            paired = self._wants_view(t.image, t.image_feat) and self.modality == "depth"
            rgb = _rgb_tensor(t.image) if paired else None
            signal, crop = augmented_view(self.modality, t.signal, self.contract, self.view_augment, rng, rgb)
            x = signal.numpy()
            if crop is not None:
                view = image_pixels(crop, self.image_view)
        else:
            x = self.plugin.preprocess(t.signal, self.contract).numpy()
        if view is None and self.modality == "tactile" and self.images_on \
                and self._wants_view(t.image, t.image_feat):
            view = self._frame_view(t.image, rng)
        return {"input": x, "text": t.text, "image": None if view is not None else t.image, "view": view,
                "text_feat": t.text_feat, "image_feat": t.image_feat, "key": t.key}

    def _wants_view(self, image, image_feat) -> bool:
        return self.image_view is not None and image is not None and image_feat is None

    def _frame_view(self, image: str | bytes, rng: np.random.Generator) -> np.ndarray:
        """A paired frame as the tower's input: ``data.image_augment`` drawn from ``rng``, or off, the tower's
        own eval transform (the pixels its cached path feature would have been computed from)."""
        if not self.images_on:
            return self.image_view.transform(load_image(image)).numpy().astype(np.float32)
        return image_pixels(augmented_image(_rgb_tensor(image), self.image_augment, self.image_view.size, rng),
                            self.image_view)

    def _audio(self, t, i: int, rng: np.random.Generator) -> dict:
        """As ``AudioSetDataset.__getitem__`` with ``--audio_load_vision --n_frames 1``: the frame is the first
        of the clip's window (``decord_get_clip`` takes ``int(start · fps)`` on, ``UniformTemporalSubsample``
        of 1 keeps the first); under mixup each item's clip and frame at its own window, mixed with one
        lambda, and the caption ``"<own> and <a raw caption of the other, lower-cased>"``."""
        from ..modalities import audio

        aug = self.audio_augment
        mixing = bool(aug.mixup) and rng.random() < aug.mixup
        if mixing:
            j = int(rng.integers(len(self.source)))
            other = self.source[j]
            lam = float(rng.beta(10, 10))
        window = rng if aug.random_window else None
        clip, start = training_clip(t.signal, self.contract, window)
        if mixing:
            other_clip, other_start = training_clip(other.signal, self.contract, window)
            fbank = mixed_fbank(clip, other_clip, lam, self.contract)
        else:
            fbank = audio.log_mel(clip, self.contract).numpy()
        x = augment_fbank(fbank, aug, rng)
        frame = self.frame_of
        image = frame(i, start) if frame is not None else t.image
        view = None
        if mixing:
            other_image = frame(j, other_start) if frame is not None else other.image
            if self._wants_view(image, t.image_feat) and self._wants_view(other_image, other.image_feat):
                own, second = self._frame_view(image, rng), self._frame_view(other_image, rng)
                view = (np.float32(lam) * own + np.float32(1 - lam) * second).astype(np.float32)
            raw = self.raw_caption
            second_text = raw(j, rng) if raw is not None else other.text
            text = None if t.text is None or second_text is None else \
                f"{t.text.removesuffix('.')} and {second_text.lower()}"
            key = f"{t.key}+{other.key}"
        else:
            if self.images_on and self._wants_view(image, t.image_feat):
                view = self._frame_view(image, rng)
            text, key = t.text, t.key
        return {"input": x, "text": text, "image": None if view is not None else image, "view": view,
                "text_feat": None if mixing else t.text_feat, "image_feat": t.image_feat, "key": key}


def _rgb_tensor(image: str | bytes) -> torch.Tensor:
    from ..modalities.tactile import to_tensor

    return to_tensor(np.array(load_image(image), dtype=np.uint8))


def training_clip(wave, contract, rng: np.random.Generator | None = None) -> tuple[torch.Tensor, float]:
    """One ``(channels, clip_samples)`` training clip of a waveform, resampled, its mean removed, and where
    its window starts (seconds).

    ``rng`` None: the first clip of the eval plan (start 0). Else as ``ASTProcessorTrain.load_audio_clip``: a
    window from ``RandomClipSampler`` (start ~ U(0, max(duration - clip, 0)), ``clip_duration`` long, cut at
    the end of the file), then ``audio_get_clip`` on it (doubled up to a clip's length, a random offset when
    longer). The official loader draws the window over the video's duration when it pairs frames; an
    AudioSet clip's audio and video are one recording, so the audio's duration stands for it here.
    """
    import random
    from dataclasses import replace

    from ..modalities import audio

    wave = audio.resample(audio.Waveform(wave.samples.float(), wave.sample_rate), contract.sample_rate)
    samples = wave.samples
    if rng is None:
        return audio.cut_clip(samples, audio.plan_clips(samples.shape[1], contract)[0], contract.clip_samples), 0.0
    duration = samples.shape[1] / contract.sample_rate
    start = rng.uniform(0.0, max(duration - contract.clip_duration, 0.0))
    end = min(start + contract.clip_duration, duration)
    window = samples[:, int(start * contract.sample_rate):int(end * contract.sample_rate)]
    # a window of at most one clip: the plan of one clip is the doubling and offset rule over it
    one = replace(contract, n_clips=1)
    record = audio.plan_clips(window.shape[1], one, random.Random(int(rng.integers(2**31))))[0]
    return audio.cut_clip(window, record, contract.clip_samples), float(start)


def augmented_view(modality: str, raw, contract, aug: ViewAugment, rng: np.random.Generator,
                   rgb: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A depth map or tactile frame through its released train processor, and for depth the paired RGB
    frame with it.

    The un-normalised tensor (DepthNorm'd disparity; RGB in [0, 1]) gets the geometry of ``aug`` (a random
    resized crop, a short-side scale and crop, or the eval resize and centre crop; then the flips and the
    rotation), colour jitter of its RGB channels, random erasing of all channels, then the contract's
    normalisation. ``rgb`` (``(3, H, W)`` in [0, 1], depth only) is stacked before the disparity as
    ``RGBD_Processor_Train`` stacks them, so the crop, flips and erased box are one draw for both and the
    colour jitter touches the RGB only; a frame of another size than the map is first resized to it
    (bilinear; the official code needs equal sizes). Returns the normalised signal view and the RGB crop,
    un-normalised (None without ``rgb``).

    The released depth transform also lists ``RandAugment3d(2, 9)`` between the flip and the jitter. As
    released it leaves an RGB-D stack unchanged: it reads ``C`` from the whole 4-channel tensor, then
    transforms a part only when ``C == 3`` or ``C == 1 and op in DEPTH_OPS``, neither of which holds for
    ``C == 4``; so it is not reproduced.
    """
    from ..modalities import depth, tactile
    from ..modalities._imaging import center_crop, normalize_channels, resize_bilinear, resize_short_side

    if modality == "depth":
        x = torch.from_numpy(np.ascontiguousarray(depth.to_disparity(raw, contract)))[None]
        x = x.clamp(contract.min_disparity, contract.max_disparity).div_(contract.max_disparity)
        mean, std = (contract.mean,), (contract.std,)
        colour = 0
        if rgb is not None:
            if rgb.shape[-2:] != x.shape[-2:]:
                rgb = resize_bilinear(rgb, tuple(x.shape[-2:]))
            x, colour = torch.cat([rgb, x]), 3
    else:
        x, mean, std, colour = tactile.to_tensor(raw), contract.mean, contract.std, 3
    if aug.random_crop:
        x = random_resized_crop(x, contract.crop, aug, rng)
    elif aug.short_side is not None:
        x = short_side_crop(x, contract.crop, tuple(aug.short_side), rng)
    else:
        x = center_crop(resize_short_side(x, contract.resize), contract.crop)
    x = flip_rotate(x, aug, rng)
    if aug.color_jitter and colour:
        x = torch.cat([color_jitter(x[:3], aug.color_jitter, rng), x[3:]])
    x = random_erase(x, aug.erase, rng)
    if modality == "depth":
        return normalize_channels(x[colour:], mean, std), (x[:3] if colour else None)
    return normalize_channels(x, mean, std), None


def augmented_image(rgb: torch.Tensor, aug: ViewAugment, size: int, rng: np.random.Generator) -> torch.Tensor:
    """A paired ``(3, H, W)`` [0, 1] frame through its own draw of ``aug`` to a ``size`` square, un-normalised:
    the tactile video frame (``Image_Processor_Train``: RandomResizedCrop, flip, RandAugment, ColorJitter) and
    the audio clip's frame (``PVProcessorTrain``: pytorchvideo's RandAugment of the whole frame on its 0-255
    float values, then short-side scale, random crop, flip). The resampling runs on the tensor, bilinear
    without antialiasing; the tactile processor crops the PIL image, whose resize antialiases when it shrinks.
    After the video RandAugment the values may leave [0, 1] (Invert gives ``1 - x`` of 0-255 values); the
    release normalises them as they are, and so does this."""
    from ..modalities._imaging import center_crop, resize_short_side

    if aug.video_rand_augment is not None:
        rgb = video_rand_augment((rgb * 255).round(), *aug.video_rand_augment, rng) / 255
    if aug.random_crop:
        x = random_resized_crop(rgb, size, aug, rng)
    elif aug.short_side is not None:
        x = short_side_crop(rgb, size, tuple(aug.short_side), rng)
    else:
        x = center_crop(resize_short_side(rgb, size), size)
    x = flip_rotate(x, aug, rng)
    if aug.rand_augment is not None:
        x = rand_augment(x, *aug.rand_augment, rng)
    if aug.color_jitter:
        x = color_jitter(x, aug.color_jitter, rng)
    return random_erase(x, aug.erase, rng)


def image_pixels(rgb: torch.Tensor, view: ImageView) -> np.ndarray:
    """An un-normalised RGB crop → the image tower's input: resized (bilinear) to its size when it differs,
    normalised by its mean and std."""
    from ..modalities._imaging import normalize_channels, resize_bilinear

    if rgb.shape[-1] != view.size or rgb.shape[-2] != view.size:
        rgb = resize_bilinear(rgb, (view.size, view.size))
    return normalize_channels(rgb, view.mean, view.std).numpy().astype(np.float32)


def mixed_fbank(a: torch.Tensor, b: torch.Tensor, lam: float, contract) -> np.ndarray:
    """The released mixup (``AudioSetDataset.__getitem__``) of two :func:`training_clip` clips:
    ``lam · a + (1 - lam) · b``, its mean removed again, then the log-mel filterbank."""
    from ..modalities import audio

    channels = min(a.shape[0], b.shape[0])
    mix = lam * a[:channels] + (1 - lam) * b[:channels]
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
           "image": [it["image"] for it in items],
           "view": [None if it.get("view") is None else torch.from_numpy(it["view"]) for it in items]}
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
