"""Write one small input per non-3D modality, made in code, so the README examples run offline.

    python examples/make_inputs.py examples/inputs

* ``sphere_depth.png``  a ray-cast depth map (Kinect-v1-like 640×480 camera) of a sphere in front of a wall,
                        with sensor holes (0) along its silhouette, stored as SUN RGB-D stores depth
                        (16-bit millimetres rotated left by 3 bits): the form the released depth lens saw;
* ``whistle.flac``      6 s at 16 kHz: a rising whistle over a decaying hum and a little noise;
* ``drums.wav``         3 s at 44.1 kHz stereo: kick and hi-hat hits (exercises resampling and doubling);
* ``eeg_trial.npy``     128 channels × 500 samples (1 kHz): alpha/beta oscillations mixed over the scalp,
                        an evoked response and noise, z-scored per channel;
* ``gel_press.png``     a GelSight-like tactile frame: a sphere pressed into a lit elastomer;
* ``gradient.jpg``      a plain photo-sized picture for the CLIP image tower.

Everything is seeded: the files are the same on every run.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import soundfile
from PIL import Image

FX = FY = 518.857901  # the NYU Kinect v1 focal length the released depth lens was trained with


def depth_map(height: int = 480, width: int = 640) -> np.ndarray:
    """A pinhole camera's view of a sphere (r 0.35 m, 1.6 m away) before a wall at 3 m, SUN RGB-D encoded."""
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    rays = np.stack([(u - width / 2) / FX, (v - height / 2) / FY, np.ones_like(u)], axis=-1)
    rays /= np.linalg.norm(rays, axis=-1, keepdims=True)
    centre, radius = np.array([0.15, 0.05, 1.6]), 0.35
    b = rays @ centre
    disc = b ** 2 - (centre @ centre - radius ** 2)
    hit = disc > 0
    t_sphere = np.where(hit, b - np.sqrt(np.clip(disc, 0, None)), np.inf)
    t_wall = 3.0 / rays[..., 2]
    z = np.minimum(t_sphere, t_wall) * rays[..., 2]  # depth along the optical axis
    edge = hit & (disc < 0.004)  # grazing rays: the sensor returns nothing there
    depth = np.where(edge, 0.0, z * 1000.0)
    noise = np.random.default_rng(0).normal(0.0, 2.0, depth.shape)
    millimetres = np.clip(np.round(depth + noise * (depth > 0)), 0, 8191).astype(np.uint16)
    return (millimetres << 3) | (millimetres >> 13)


def whistle(rate: int = 16000, seconds: float = 6.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    sweep = 0.3 * np.sin(2 * np.pi * (600 * t + 120 * t ** 2)) * np.clip(t / 0.2, 0, 1)
    hum = 0.2 * np.exp(-t / 2.5) * np.sin(2 * np.pi * 110 * t)
    noise = 0.02 * np.random.default_rng(1).standard_normal(t.shape)
    return (sweep + hum + noise).astype(np.float32)


def drums(rate: int = 44100, seconds: float = 3.0) -> np.ndarray:
    n = int(rate * seconds)
    out = np.zeros((n, 2))
    rng = np.random.default_rng(2)
    t = np.arange(int(0.25 * rate)) / rate
    kick = np.sin(2 * np.pi * (50 * t + 200 * (1 - np.exp(-t * 30)) / 30)) * np.exp(-t * 12)
    hat = rng.standard_normal(int(0.05 * rate)) * np.exp(-np.arange(int(0.05 * rate)) / (0.01 * rate))
    for beat in np.arange(0, seconds - 0.3, 0.5):
        start = int(beat * rate)
        out[start:start + len(kick)] += 0.6 * kick[:, None]
        off = start + int(0.25 * rate)
        out[off:off + len(hat), 0] += 0.2 * hat
        out[off:off + len(hat), 1] += 0.15 * hat
    return out.astype(np.float32)


def eeg_trial(channels: int = 128, samples: int = 500, rate: float = 1000.0) -> np.ndarray:
    rng = np.random.default_rng(3)
    t = np.arange(samples) / rate
    position = np.linspace(0, 1, channels, endpoint=False)
    signal = np.zeros((channels, samples))
    for band, amplitude in (((8, 13), 1.5), ((13, 30), 0.7), ((4, 8), 0.8)):
        for _ in range(4):
            centre, width = rng.uniform(0, 1), rng.uniform(0.05, 0.25)
            gap = np.minimum(abs(position - centre), 1 - abs(position - centre))  # periodic layout
            topography = np.exp(-0.5 * (gap / width) ** 2) * rng.choice([-1, 1])
            source = np.sin(2 * np.pi * rng.uniform(*band) * t + rng.uniform(0, 2 * np.pi))
            signal += amplitude * topography[:, None] * source[None]
    evoked = 2 * np.exp(-((t - 0.1) ** 2) / (2 * 0.015 ** 2)) - 2.5 * np.exp(-((t - 0.17) ** 2) / (2 * 0.025 ** 2))
    signal += np.exp(-0.5 * ((position - 0.6) / 0.1) ** 2)[:, None] * evoked[None]
    signal += 0.3 * rng.standard_normal(signal.shape)
    signal = (signal - signal.mean(1, keepdims=True)) / signal.std(1, keepdims=True)
    return signal.astype(np.float32)


def gel_press(height: int = 480, width: int = 640) -> np.ndarray:
    """Photometric shading of an elastomer dented by a sphere, lit by red, green and blue lights."""
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    r2 = ((u - 0.55 * width) ** 2 + (v - 0.45 * height) ** 2) / (0.22 * height) ** 2
    dent = -np.sqrt(np.clip(1 - r2, 0, None)) * 40.0  # pixels deep
    gy, gx = np.gradient(dent)
    normals = np.stack([-gx, -gy, np.ones_like(dent)], axis=-1)
    normals /= np.linalg.norm(normals, axis=-1, keepdims=True)
    lights = np.array([[0.8, 0.0, 0.6], [-0.4, 0.7, 0.6], [-0.4, -0.7, 0.6]])
    shading = np.clip(normals @ lights.T, 0, 1)
    base = np.array([0.45, 0.47, 0.5])
    texture = 0.02 * np.random.default_rng(4).standard_normal((height, width, 1))
    rgb = base * 0.6 + 0.5 * shading + texture
    return (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)


def gradient(height: int = 600, width: int = 800) -> np.ndarray:
    v, u = np.mgrid[0:height, 0:width] / np.array([height, width])[:, None, None]
    sky = np.stack([0.3 + 0.6 * v, 0.5 + 0.3 * v, 0.9 - 0.3 * v], axis=-1)
    sun = np.exp(-(((u - 0.7) ** 2 + (v - 0.55) ** 2) / 0.004))[..., None] * np.array([1.0, 0.8, 0.3])
    return (np.clip(sky + sun, 0, 1) * 255).round().astype(np.uint8)


def main(out_dir: str) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    Image.fromarray(depth_map()).save(out / "sphere_depth.png")  # uint16 → a 16-bit greyscale PNG
    soundfile.write(out / "whistle.flac", whistle(), 16000, subtype="PCM_16")
    soundfile.write(out / "drums.wav", drums(), 44100, subtype="PCM_16")
    np.save(out / "eeg_trial.npy", eeg_trial())
    Image.fromarray(gel_press()).save(out / "gel_press.png")
    Image.fromarray(gradient()).save(out / "gradient.jpg", quality=92)
    for name, modality in (("sphere_depth.png", "depth"), ("whistle.flac", "audio"), ("drums.wav", "audio"),
                           ("eeg_trial.npy", "eeg"), ("gel_press.png", "tactile"), ("gradient.jpg", "image")):
        print(f"{modality:8s} {out / name}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "examples/inputs")
