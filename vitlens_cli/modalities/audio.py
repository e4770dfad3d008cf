"""Audio: decode, resample to 16 kHz, the official clip sampling, Kaldi log-mel fbank.

As the official ``AudioASTProcessorEval`` (one-stop ``AudioProcessor``) does, per file:

* a file of at most 5 s gives **one** clip, used for all 3 outputs: the waveform is doubled
  (concatenated with itself) until it reaches 5 s (more than 5 doublings is refused) and, if then
  longer, cropped at a random offset (seeded here: ``AudioContract.seed``);
* a longer file gives 3 clips of 5 s at uniformly spaced starts ``k · (D − 5) / 3`` (exact fractions);
* each clip has its mean removed, then ``torchaudio.compliance.kaldi.fbank`` (128 mel bins, 25 ms
  Hann frames every 10 ms, no dither), zero-padded or cut to 512 frames and normalised with the
  AudioSet statistics (−4.2677393, 4.5689974).

Multichannel files follow the official code too: the clip mean is taken over all channels and the
filterbank reads the first channel.
"""
from __future__ import annotations

import random
from contextlib import nullcontext
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from ._files import silenced_native_output
from .base import Modality, ModalityError, ModalityFileError, first_line

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".aifc", ".w64", ".caf", ".au")
_MAX_DOUBLINGS = 5
_MP3_SLACK = 2 * 1152  # samples: the encoder delay and padding of two MPEG frames


@dataclass(frozen=True)
class Waveform:
    """Decoded samples ``(channels, n)`` float32 in [-1, 1] (int16 / 32768 for 16-bit files)."""

    samples: torch.Tensor
    sample_rate: int


@dataclass(frozen=True)
class AudioContract:
    """``vitlensL_audio.pt`` / the one-stop ``AudioProcessor``: 3 clips × 512 frames × 128 mel bins."""

    sample_rate: int = 16000
    clip_duration: float = 5.0
    n_clips: int = 3
    target_length: int = 512
    mel_bins: int = 128
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    mean: float = -4.2677393
    std: float = 4.5689974
    seed: int = 0

    @property
    def clip_samples(self) -> int:
        return int(self.sample_rate * self.clip_duration)


@dataclass(frozen=True)
class ClipRecord:
    """Clip = ``(samples[start:end] doubled `doublings` times)[offset : offset + clip_samples]``."""

    start: int
    end: int
    doublings: int
    offset: int


def resample(wave: Waveform, sample_rate: int) -> Waveform:
    """``torchaudio.functional.resample`` (windowed sinc, its defaults), as the official code calls it."""
    if wave.sample_rate == sample_rate:
        return wave
    import torchaudio.functional

    samples = torchaudio.functional.resample(wave.samples, orig_freq=wave.sample_rate, new_freq=sample_rate)
    return Waveform(samples, sample_rate)


def plan_clips(num_samples: int, contract: AudioContract, rng: random.Random | None = None) -> list[ClipRecord]:
    """Where each of the ``n_clips`` clips comes from (the official sampling, exact fractions).

    Only a clip that is longer than 5 s after doubling draws a crop offset from ``rng`` (seeded with
    ``contract.seed`` when not given).
    """
    rng = random.Random(contract.seed) if rng is None else rng
    sr, target = contract.sample_rate, contract.clip_samples
    duration = num_samples / sr
    if duration <= contract.clip_duration:
        return [_record(0, num_samples, target, rng)] * contract.n_clips
    clip_duration = Fraction(contract.clip_duration)
    step = Fraction(Fraction(max(duration - contract.clip_duration, 0)), contract.n_clips)
    records = []
    for k in range(contract.n_clips):
        start, end = step * k, step * k + clip_duration
        if start < duration and end <= duration and end - start > Fraction(1, 2):
            first, last = int(start * sr), int(end * sr)
        else:  # the official code falls back to the whole file here
            first, last = 0, num_samples
        records.append(_record(first, last, target, rng))
    return records


def _record(start: int, end: int, target: int, rng: random.Random) -> ClipRecord:
    length, doublings = end - start, 0
    if length <= 0:
        raise ModalityError("the audio holds no samples")
    while length < target and doublings <= _MAX_DOUBLINGS:
        length, doublings = 2 * length, doublings + 1
    if doublings > _MAX_DOUBLINGS:
        raise ModalityError(f"audio of {end - start} samples is too short to fill a clip of {target} "
                            f"(more than {_MAX_DOUBLINGS} doublings)")
    offset = rng.randint(0, length - 1 - target) if length > target else 0
    return ClipRecord(start, end, doublings, offset)


def extract_clip(samples: torch.Tensor, record: ClipRecord, clip_samples: int) -> torch.Tensor:
    """``(channels, clip_samples)``: the record's slice, doubled, then cropped."""
    clip = samples[:, record.start:record.end]
    if record.doublings:
        clip = clip.repeat(1, 2 ** record.doublings)
    return clip[:, record.offset:record.offset + clip_samples]


def cut_clip(samples: torch.Tensor, record: ClipRecord, clip_samples: int) -> torch.Tensor:
    """The clip with its mean (one mean over all channels and samples) removed."""
    clip = extract_clip(samples, record, clip_samples)
    return clip - clip.mean()


def log_mel(clip: torch.Tensor, contract: AudioContract) -> torch.Tensor:
    """``(target_length, mel_bins)``: Kaldi fbank, zero rows padded (or frames cut), then normalised."""
    from torchaudio.compliance import kaldi

    fbank = kaldi.fbank(clip, htk_compat=True, sample_frequency=contract.sample_rate, use_energy=False,
                        window_type="hanning", num_mel_bins=contract.mel_bins, dither=0.0,
                        frame_length=contract.frame_length_ms, frame_shift=contract.frame_shift_ms)
    frames = fbank.shape[0]
    if frames < contract.target_length:
        fbank = torch.cat([fbank, fbank.new_zeros(contract.target_length - frames, fbank.shape[1])])
    else:
        fbank = fbank[:contract.target_length]
    return (fbank - np.float32(contract.mean)) / np.float32(contract.std)


def preprocess(wave: Waveform, contract: AudioContract) -> torch.Tensor:
    """``(n_clips, target_length, mel_bins)`` float32."""
    if wave.samples.ndim != 2 or wave.samples.shape[1] == 0:
        raise ModalityError(f"audio must be (channels, samples) with samples, got {tuple(wave.samples.shape)}")
    wave = resample(Waveform(wave.samples.float(), wave.sample_rate), contract.sample_rate)
    records = plan_clips(wave.samples.shape[1], contract)
    done: dict[ClipRecord, torch.Tensor] = {}
    for record in records:  # a short file repeats one clip: its filterbank is computed once
        if record not in done:
            done[record] = log_mel(cut_clip(wave.samples, record, contract.clip_samples), contract)
    return torch.stack([done[record] for record in records])


def read(path: Path) -> Waveform:
    """Decode with libsndfile (WAV, FLAC, Ogg Vorbis/Opus, MP3, AIFF, …)."""
    import soundfile

    _check_container_size(path)
    try:
        # libsndfile's MP3 decoder (mpg123) prints resync notes of its own; its error is still raised
        quiet = silenced_native_output() if path.suffix.lower() == ".mp3" else nullcontext()
        with quiet, soundfile.SoundFile(str(path)) as sound:
            declared = sound.frames
            data = sound.read(dtype="float32", always_2d=True)
            sample_rate, container = sound.samplerate, sound.format
    except (soundfile.LibsndfileError, RuntimeError, ValueError, OSError, EOFError) as exc:
        raise ModalityFileError(path, _decode_reason(path, exc)) from exc
    # libsndfile stops quietly where a cut MP3 ends; its Xing/Info header still gives the full length
    if container == "MP3" and data.shape[0] + _MP3_SLACK < declared:
        raise ModalityFileError(path, f"truncated: {data.shape[0]} of {declared} samples could be decoded")
    if data.shape[0] == 0:
        raise ModalityFileError(path, "the audio holds no samples")
    if not np.isfinite(data).all():
        raise ModalityFileError(path, "the audio holds NaN or infinite samples")
    return Waveform(torch.from_numpy(np.ascontiguousarray(data.T)), int(sample_rate))


def _check_container_size(path: Path) -> None:
    """A cut WAV/AIFF decodes without complaint (libsndfile shortens it to the bytes present), so
    compare the size the RIFF/FORM header declares with the file's."""
    with open(path, "rb") as fh:
        head = fh.read(12)
    if len(head) < 12:
        return
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        declared = int.from_bytes(head[4:8], "little") + 8
    elif head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        declared = int.from_bytes(head[4:8], "big") + 8
    else:
        return
    actual = path.stat().st_size
    if declared - 8 in (0, 0xFFFFFFFF):  # streaming writers leave the size unknown
        return
    if actual < declared:
        raise ModalityFileError(path, f"truncated: the header declares {declared} bytes, the file has {actual}")


def _decode_reason(path: Path, exc: BaseException) -> str:
    message = first_line(exc).replace(f"Error opening {str(path)!r}: ", "").removeprefix("Error : ")
    if "Format not recognised" in message or "does not exist" in message:  # the file exists: we checked
        return "not a decodable audio file (format not recognised)"
    return f"cannot decode audio ({message.strip().rstrip('.')})"


MODALITY = Modality(
    name="audio", lens="audio_ast", contract=AudioContract,
    extensions=AUDIO_SUFFIXES, ambiguous_extensions=(), reader=read, preprocessor=preprocess,
    description="sound files, decoded by libsndfile, 16 kHz Kaldi log-mel clips",
)
