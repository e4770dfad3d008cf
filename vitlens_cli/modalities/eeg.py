"""EEG: ``(channels, time)`` recordings through the official ImageNet-EEG processor.

The official processor casts to float32, keeps time samples ``[20, 460)`` (fewer when the trial is
shorter: the datasets admit 450–600 samples) and linearly interpolates every channel to 512 samples
with the end points kept (scipy ``interp1d`` on ``linspace(0, 1, n)``); nothing is normalised.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ._files import load_arrays
from .base import Modality, ModalityError, ModalityFileError

_ARRAY_KEYS = ("eeg", "data", "x", "signal")


@dataclass(frozen=True)
class EEGContract:
    """``vitlensL_eeg.pt`` / the one-stop ``EEGProcessor``: 128 channels, crop [20, 460), 512 samples."""

    channels: int = 128
    time_low: int = 20
    time_high: int = 460
    length: int = 512


def preprocess(eeg: torch.Tensor, contract: EEGContract) -> torch.Tensor:
    """``(channels, length)`` float32 (``eeg``: a tensor or array of any real dtype)."""
    eeg = torch.as_tensor(eeg)
    if eeg.ndim != 2:
        raise ModalityError(f"EEG must be (channels, time), got shape {tuple(eeg.shape)}")
    if eeg.shape[0] != contract.channels:
        hint = " (a (time, channels) array must be transposed)" if eeg.shape[1] == contract.channels else ""
        raise ModalityError(f"EEG has {eeg.shape[0]} channels, the model expects {contract.channels}{hint}")
    x = eeg.detach().float()[:, contract.time_low:contract.time_high].numpy()
    if x.shape[1] < 2:
        raise ModalityError(f"EEG has {eeg.shape[1]} time samples: nothing left after the crop "
                            f"[{contract.time_low}, {contract.time_high})")
    return torch.from_numpy(_interp_linear(x, contract.length).astype(np.float32))


def _interp_linear(y: np.ndarray, length: int) -> np.ndarray:
    """scipy's ``interp1d(linspace(0, 1, n), y, kind="linear")(linspace(0, 1, length))``, step for step
    (the sample differences in float32, the rest in float64), without scipy; single-threaded numpy
    is also faster here than torch's parallel interpolation of so small an array."""
    grid = np.linspace(0.0, 1.0, y.shape[1])
    new = np.linspace(0.0, 1.0, length)
    hi = np.clip(np.searchsorted(grid, new), 1, y.shape[1] - 1)
    lo = hi - 1
    slope = (y[:, hi] - y[:, lo]) / (grid[hi] - grid[lo])
    return slope * (new - grid[lo]) + y[:, lo]


def read(path: Path) -> torch.Tensor:
    """The ``(channels, time)`` array of a ``.npy``, ``.npz`` (one array, or key ``eeg``/``data``) or
    ``.pt`` file (a tensor, or a dict with an ``eeg`` tensor as in ImageNet-EEG), in its own dtype."""
    value = load_arrays(path, "EEG", _ARRAY_KEYS)
    tensor = value if isinstance(value, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(value))
    if tensor.ndim != 2:
        raise ModalityFileError(path, f"EEG must be (channels, time), got shape {tuple(tensor.shape)}")
    if not torch.isfinite(tensor.double()).all():
        raise ModalityFileError(path, "EEG holds NaN or infinite values")
    return tensor


MODALITY = Modality(
    name="eeg", lens="eeg_patch1d", contract=EEGContract,
    extensions=(), ambiguous_extensions=(".npy", ".npz", ".pt"), reader=read, preprocessor=preprocess,
    description="EEG recordings, (channels, time) arrays",
)
