"""EEG: ``(channels, time)`` recordings through the official ImageNet-EEG processor.

The official processor casts to float32, keeps time samples ``[20, 460)`` (fewer when the trial is
shorter: the datasets admit 450–600 samples) and linearly interpolates every channel to 512 samples
with the end points kept (scipy ``interp1d`` on ``linspace(0, 1, n)``); nothing is normalised.
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .base import Modality, ModalityError, ModalityFileError, first_line

_ARRAY_KEYS = ("eeg", "data", "x", "signal")


@dataclass(frozen=True)
class EEGContract:
    """``vitlensL_eeg.pt`` / the one-stop ``EEGProcessor``: 128 channels, crop [20, 460), 512 samples."""

    channels: int = 128
    time_low: int = 20
    time_high: int = 460
    length: int = 512


def preprocess(eeg: torch.Tensor, contract: EEGContract) -> torch.Tensor:
    """``(channels, length)`` float32."""
    if eeg.ndim != 2:
        raise ModalityError(f"EEG must be (channels, time), got shape {tuple(eeg.shape)}")
    if eeg.shape[0] != contract.channels:
        raise ModalityError(f"EEG has {eeg.shape[0]} channels, the model expects {contract.channels} "
                            f"(a (time, channels) array must be transposed)")
    x = eeg.float()[:, contract.time_low:contract.time_high]
    if x.shape[1] < 2:
        raise ModalityError(f"EEG has {eeg.shape[1]} time samples: nothing left after the crop "
                            f"[{contract.time_low}, {contract.time_high})")
    # float64 as scipy's interp1d computes it; float32 interpolation weights drift by ~6e-6
    out = F.interpolate(x.double()[None], size=contract.length, mode="linear", align_corners=True)[0]
    return out.float()


def read(path: Path) -> torch.Tensor:
    """The ``(channels, time)`` array of a ``.npy``, ``.npz`` (one array, or key ``eeg``/``data``) or
    ``.pt`` file (a tensor, or a dict with an ``eeg`` tensor as in ImageNet-EEG), in its own dtype."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".pt":
            value = torch.load(path, map_location="cpu", weights_only=True)
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                value = _pick_array(path, {k: archive[k] for k in archive.files})
        else:
            value = np.load(path, allow_pickle=False)
    except ModalityFileError:
        raise
    except (ValueError, OSError, EOFError, RuntimeError, zipfile.BadZipFile, KeyError) as exc:
        raise ModalityFileError(path, f"cannot read EEG ({first_line(exc)})") from exc
    if isinstance(value, dict):
        value = _pick_array(path, value)
    if isinstance(value, np.ndarray):
        if not (np.issubdtype(value.dtype, np.number) and not np.issubdtype(value.dtype, np.complexfloating)):
            raise ModalityFileError(path, f"EEG array has dtype {value.dtype}, expected numbers")
        value = torch.from_numpy(np.ascontiguousarray(value))
    if not isinstance(value, torch.Tensor):
        raise ModalityFileError(path, f"holds a {type(value).__name__}, expected an EEG tensor")
    if value.ndim != 2:
        raise ModalityFileError(path, f"EEG must be (channels, time), got shape {tuple(value.shape)}")
    if value.is_complex() or value.dtype == torch.bool:
        raise ModalityFileError(path, f"EEG tensor has dtype {value.dtype}, expected real numbers")
    if not torch.isfinite(value.double()).all():
        raise ModalityFileError(path, "EEG holds NaN or infinite values")
    return value


def _pick_array(path: Path, items: dict):
    if len(items) == 1:
        return next(iter(items.values()))
    for key in _ARRAY_KEYS:
        if key in items:
            return items[key]
    raise ModalityFileError(path, f"no EEG array among keys {sorted(map(str, items))} "
                                  f"(expected one array or a key among {', '.join(_ARRAY_KEYS)})")


MODALITY = Modality(
    name="eeg", lens="eeg_patch1d", contract=EEGContract,
    extensions=(), ambiguous_extensions=(".npy", ".npz", ".pt"), reader=read, preprocessor=preprocess,
    description="EEG recordings, (channels, time) arrays",
)
