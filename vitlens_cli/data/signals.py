"""Training samples of the non-3D modalities: synthetic classes made in code, and your own captioned files.

Each synthetic item is generated from ``(seed, index)`` alone, as :mod:`vitlens_cli.data.synthetic`
does for 3D, so any size costs no disk and every worker and machine sees the same data:

* **depth**: the 3D primitives of :mod:`~vitlens_cli.data.synthetic` (random scale, aspect, rotation,
  noise) seen by an orthographic camera 3 m away, z-buffered into a 64 × 64 map in metres over a
  10 m background;
* **audio**: 5 s at 16 kHz of a tone, white noise, a chirp, a click train, a square wave or a
  low rumble, each with random pitch / rate / level;
* **tactile**: 128 × 128 RGB textures (stripes, checkerboard, dots, rings, smooth gradient, speckle)
  with random scale, orientation and tint, as a stand-in for GelSight frames;
* **eeg**: 128 channels × 500 samples (1 kHz, an ImageNet-EEG trial length) of one rhythm (delta,
  theta, alpha, beta, gamma) or of spikes, with per-channel gain and phase, in noise.

Items are the raw signals the modality's reader returns (``DepthMap``, ``Waveform``, RGB ``uint8``,
an EEG tensor), so training feeds them through the released preprocessing contract unchanged.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import VitlensError
from .meta import default_templates, templates
from .synthetic import PRIMITIVES, make_shape

SYNTHETIC_CLASSES: dict[str, tuple[str, ...]] = {
    "depth": PRIMITIVES,
    "audio": ("tone", "noise", "chirp", "clicks", "square", "rumble"),
    "tactile": ("stripes", "checkerboard", "dots", "rings", "smooth", "speckle"),
    "eeg": ("delta", "theta", "alpha", "beta", "gamma", "spikes"),
}
_SAMPLE_RATE = 16000
_EEG_RATE = 1000


@dataclass
class Sample:
    """One training item of a non-3D modality: the raw signal, a caption (or a CLIP text feature),
    an optional paired image (path or bytes) or CLIP image feature, and a stable key."""

    signal: Any
    text: str | None
    image: str | bytes | None
    text_feat: np.ndarray | None
    image_feat: np.ndarray | None
    key: str


# --------------------------------------------------------------------------- generators
def _depth(name: str, rng: np.random.Generator, size: int = 64):
    from ..modalities.depth import DepthMap

    pts = make_shape(name, rng, 8_000).astype(np.float64)
    pts /= np.linalg.norm(pts, axis=1).max()
    col = np.clip(((pts[:, 0] * 0.9 + 1) / 2 * (size - 1)).round().astype(int), 0, size - 1)
    row = np.clip(((1 - (pts[:, 1] * 0.9 + 1) / 2) * (size - 1)).round().astype(int), 0, size - 1)
    depth = np.full((size, size), 10.0)
    np.minimum.at(depth, (row, col), 3.0 + pts[:, 2])
    return DepthMap(depth.astype(np.float32), "metres")


def _audio(name: str, rng: np.random.Generator, seconds: float = 5.0):
    import torch

    from ..modalities.audio import Waveform

    t = np.arange(int(seconds * _SAMPLE_RATE)) / _SAMPLE_RATE
    if name == "tone":
        x = np.sin(2 * np.pi * rng.uniform(300, 2500) * t + rng.uniform(0, 2 * np.pi))
    elif name == "noise":
        x = rng.uniform(-1, 1, t.size)
    elif name == "chirp":
        f0, f1 = sorted(rng.uniform(150, 4000, 2))
        x = np.sin(2 * np.pi * (f0 * t + (f1 - f0) / (2 * seconds) * t**2))
    elif name == "clicks":
        x = np.zeros(t.size)
        x[(np.arange(0, seconds, 1 / rng.uniform(4, 25)) * _SAMPLE_RATE).astype(int)] = 1.0
    elif name == "square":
        x = np.sign(np.sin(2 * np.pi * rng.uniform(100, 800) * t))
    elif name == "rumble":
        x = np.cumsum(rng.normal(size=t.size))
        x = x - np.convolve(x, np.ones(801) / 801, mode="same")
        x /= np.abs(x).max() + 1e-9
    else:
        raise KeyError(name)
    x = rng.uniform(0.1, 0.8) * x + rng.normal(scale=0.003, size=t.size)
    return Waveform(torch.from_numpy(np.clip(x, -1, 1).astype(np.float32)[None]), _SAMPLE_RATE)


def _tactile(name: str, rng: np.random.Generator, size: int = 128) -> np.ndarray:
    y, x = (np.mgrid[0:size, 0:size] / size) - 0.5
    angle = rng.uniform(0, np.pi)
    u = x * np.cos(angle) + y * np.sin(angle)
    v = -x * np.sin(angle) + y * np.cos(angle)
    freq = rng.uniform(6, 16)
    if name == "stripes":
        g = 0.5 + 0.5 * np.sin(2 * np.pi * freq * u)
    elif name == "checkerboard":
        g = ((np.floor(u * freq) + np.floor(v * freq)) % 2).astype(float)
    elif name == "dots":
        g = ((np.mod(u * freq, 1) - 0.5) ** 2 + (np.mod(v * freq, 1) - 0.5) ** 2 < 0.08).astype(float)
    elif name == "rings":
        cx, cy = rng.uniform(-0.2, 0.2, 2)
        g = 0.5 + 0.5 * np.sin(2 * np.pi * freq * np.hypot(x - cx, y - cy))
    elif name == "smooth":
        g = 0.5 + 0.4 * u + 0.1 * np.sin(2 * np.pi * v)
    elif name == "speckle":
        g = rng.uniform(0, 1, (size, size))
    else:
        raise KeyError(name)
    tint = rng.uniform(0.3, 1.0, 3)
    base = rng.uniform(0.0, 0.3, 3)
    rgb = base + g[..., None] * tint + rng.normal(scale=0.02, size=(size, size, 3))
    return (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)


_BANDS = {"delta": (1, 4), "theta": (4, 8), "alpha": (8, 13), "beta": (13, 30), "gamma": (30, 70)}


def _eeg(name: str, rng: np.random.Generator, channels: int = 128, samples: int = 500):
    import torch

    t = np.arange(samples) / _EEG_RATE
    noise = rng.normal(scale=0.5, size=(channels, samples))
    if name in _BANDS:
        f = rng.uniform(*_BANDS[name])
        gain = rng.uniform(0.5, 1.5, (channels, 1))
        phase = rng.uniform(0, 2 * np.pi, (channels, 1))
        signal = gain * np.sin(2 * np.pi * f * t + phase)
    elif name == "spikes":
        signal = np.zeros((channels, samples))
        for at in rng.integers(0, samples - 10, int(rng.integers(3, 8))):
            signal[:, at:at + 10] += rng.uniform(2, 4, (channels, 1)) * np.hanning(10)
    else:
        raise KeyError(name)
    return torch.from_numpy((signal + noise).astype(np.float32))


_GENERATORS = {"depth": _depth, "audio": _audio, "tactile": _tactile, "eeg": _eeg}


def make_signal(modality: str, name: str, rng: np.random.Generator) -> Any:
    """One raw synthetic signal of class ``name`` (see ``SYNTHETIC_CLASSES``) for ``modality``."""
    return _GENERATORS[modality](name, rng)


# --------------------------------------------------------------------------- datasets
class SyntheticSignals:
    """``ds[i]`` → a :class:`Sample` of class ``i % len(classes)``; a random caption per item and epoch."""

    def __init__(self, modality: str, size: int, seed: int = 0, classes: tuple[str, ...] | None = None,
                 caption_templates: list[str] | None = None) -> None:
        if modality not in SYNTHETIC_CLASSES:
            raise VitlensError(f"no synthetic data for modality '{modality}' (have: {', '.join(SYNTHETIC_CLASSES)})")
        self.modality = modality
        self.size = size
        self.seed = seed
        self.classes = list(classes or SYNTHETIC_CLASSES[modality])
        self._templates = list(caption_templates) if caption_templates else templates(default_templates(modality))
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.size

    def label(self, i: int) -> int:
        return i % len(self.classes)

    def signal(self, i: int) -> Any:
        if not 0 <= i < self.size:
            raise IndexError(i)
        return make_signal(self.modality, self.classes[self.label(i)], np.random.default_rng([self.seed, i]))

    def caption(self, i: int, epoch: int = 0) -> str:
        rng = np.random.default_rng([self.seed, epoch, i, 1])
        return self._templates[int(rng.integers(len(self._templates)))].format(self.classes[self.label(i)])

    def __getitem__(self, i: int) -> Sample:
        name = f"{self.classes[self.label(i)]}_{i:05d}"
        return Sample(self.signal(i), self.caption(i, self.epoch), None, None, None, name)


def write_folder(root: Path, modality: str, per_class: int, seed: int,
                 classes: tuple[str, ...] | None = None, template: str = "{}") -> Path:
    """Class sub-folders of files (depth ``.npy`` in metres, audio ``.wav``, tactile ``.png``, EEG ``.npy``)
    and ``captions.csv`` (``path,caption`` with ``template`` filled by the class): a held-out set that
    ``vitlens embed`` and ``vitlens eval captions.csv`` read."""
    from ..atomic import write_atomic, write_text_atomic

    classes = tuple(classes or SYNTHETIC_CLASSES[modality])
    ds = SyntheticSignals(modality, per_class * len(classes), seed, classes)
    rows = []
    for i in range(len(ds)):
        name = ds.classes[ds.label(i)]
        folder = Path(root) / name
        folder.mkdir(parents=True, exist_ok=True)
        raw = ds.signal(i)
        suffix = {"audio": ".wav", "tactile": ".png"}.get(modality, ".npy")
        path = folder / f"{name}_{i:05d}{suffix}"
        write_atomic(path, lambda p, raw=raw: _save(modality, raw, p))
        rows.append([str(path.relative_to(root)), template.format(name)])
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([["path", "caption"], *rows])
    write_text_atomic(Path(root) / "captions.csv", buf.getvalue())
    return Path(root)


def _save(modality: str, raw: Any, path: Path) -> None:
    if modality == "audio":
        import soundfile

        soundfile.write(str(path), raw.samples[0].numpy(), raw.sample_rate, format="WAV", subtype="PCM_16")
    elif modality == "tactile":
        from PIL import Image

        Image.fromarray(raw).save(path, format="PNG")
    else:
        with open(path, "wb") as fh:
            np.save(fh, raw.values if modality == "depth" else raw.numpy())


class CaptionedFiles:
    """Files of one modality with captions in a CSV ``path,caption[,image]`` (the layout of
    :class:`~vitlens_cli.data.triplets.CaptionedShapes`, same rules); each file is read by the
    modality's reader."""

    def __init__(self, csv_path: str | Path, modality: str, seed: int = 0) -> None:
        from ..modalities import get_modality
        from .triplets import CaptionedShapes

        self._rows = CaptionedShapes(csv_path, seed=seed)
        self.modality = get_modality(modality)

    def set_epoch(self, epoch: int) -> None:
        self._rows.set_epoch(epoch)

    @property
    def epoch(self) -> int:
        return self._rows.epoch

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, i: int) -> Sample:
        key, path, captions, images = self._rows.items[i]
        rng = self._rows.rng(i)
        text = captions[int(rng.integers(len(captions)))]
        image = images[int(rng.integers(len(images)))] if images else None
        return Sample(self.modality.read(path), text, image, None, None, key)
