"""Audio: decoding, the official clip sampling and the Kaldi filterbank, against the official outputs."""
from __future__ import annotations

import random
from fractions import Fraction

import numpy as np
import pytest
import soundfile
import torch

from vitlens_cli.modalities import ModalityError, ModalityFileError, get_modality
from vitlens_cli.modalities.audio import (AudioContract, ClipRecord, Waveform, cut_clip, extract_clip, log_mel,
                                          plan_clips, preprocess, read, resample)

from .conftest import garbage_file, truncated_copy


def contract_of(case) -> AudioContract:
    p = case.config["params"]
    kaldi = p["kaldi_fbank_defaults_in_effect"]
    return AudioContract(sample_rate=p["sample_rate"], clip_duration=p["clip_duration_s"], n_clips=p["n_clip"],
                         target_length=p["target_length"], mel_bins=p["mel_bins"], mean=p["mean"], std=p["std"],
                         frame_length_ms=kaldi["frame_length_ms"], frame_shift_ms=kaldi["frame_shift_ms"])


def test_defaults_are_the_official_processor(load_case):
    case = load_case("audio_preprocess")
    assert contract_of(case) == AudioContract()
    args = case.config["params"]["kaldi_fbank_args"]
    assert (args["window_type"], args["dither"], args["htk_compat"], args["use_energy"]) == ("hanning", 0.0, True, False)


def test_preprocess_matches_the_official_processor(load_case, fixtures):
    case = load_case("audio_preprocess")
    contract, t = contract_of(case), case.tensors
    for i, info in enumerate(case.inputs):
        source = case.source_file(fixtures, i)
        if source is not None:  # our decoder gives the official samples bit for bit
            decoded = read(source)
            assert decoded.sample_rate == info["sample_rate"]
            np.testing.assert_array_equal(decoded.samples.numpy(), t[f"waveform_{i}"])
        wave = Waveform(torch.from_numpy(t[f"waveform_{i}"]), info["sample_rate"])
        wave = resample(wave, contract.sample_rate)
        records = plan_clips(wave.samples.shape[1], contract)
        stored = [ClipRecord(*map(int, row)) for row in t[f"clip_info_{i}"]]
        distinct = list(dict.fromkeys(records))
        assert len(distinct) == len(stored) and len(records) == contract.n_clips
        # an offset drawn from Python's random (a range wider than one value) cannot be reproduced
        random_crop = [(r.end - r.start) * 2 ** r.doublings - 1 - contract.clip_samples > 0 for r in stored]
        for ours, theirs, drawn in zip(distinct, stored, random_crop):
            assert (ours.start, ours.end, ours.doublings) == (theirs.start, theirs.end, theirs.doublings)
            assert drawn or ours.offset == theirs.offset
        for k, record in enumerate(stored):
            raw = extract_clip(wave.samples, record, contract.clip_samples)
            assert raw.shape == (wave.samples.shape[0], contract.clip_samples)
            assert abs(raw.mean().item() - t[f"clip_mean_{i}"][k]) <= case.atol("clip_mean")
            clip = cut_clip(wave.samples, record, contract.clip_samples)
            assert torch.equal(clip, raw - raw.mean())
            got = log_mel(clip, contract)
            assert np.abs(got.numpy() - t[f"fbank_{i}"][k]).max() <= case.atol("fbank"), (info["name"], k)
        if not any(random_crop):
            out = preprocess(wave, contract)
            assert out.shape == (contract.n_clips, contract.target_length, contract.mel_bins)
            expected = np.stack([t[f"fbank_{i}"][distinct.index(r)] for r in records])
            assert np.abs(out.numpy() - expected).max() <= case.atol("fbank")


def test_real_flacs_prepare(fixtures):
    audio = get_modality("audio")
    for path in sorted((fixtures / "audio").glob("*.flac")):
        x = audio.prepare(path)
        assert x.shape == (3, 512, 128) and torch.isfinite(x).all()
        assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])  # 5 s: one clip, repeated
        # the 14 zero rows padded to 512 frames are normalised like silence-free zeros
        assert torch.allclose(x[0, 498:], torch.full((14, 128), 4.2677393 / 4.5689974))


def _long_record(k: int, n: int, contract: AudioContract) -> tuple[int, int]:
    step = Fraction(Fraction(n / contract.sample_rate - contract.clip_duration), contract.n_clips)
    return int(step * k * contract.sample_rate), int((step * k + 5) * contract.sample_rate)


@pytest.mark.parametrize("seconds", [5.5, 12.0, 31.7])
def test_long_files_give_uniformly_spaced_clips(seconds):
    contract = AudioContract()
    n = int(seconds * contract.sample_rate)
    records = plan_clips(n, contract)
    assert [(r.start, r.end) for r in records] == [_long_record(k, n, contract) for k in range(3)]
    # spacing (D - 5) / 3, not / 2: the official last clip stops short of the end
    assert records[0].start == 0 and records[-1].end < n
    for r in records:
        assert r.doublings == 0 and r.end - r.start in (80000, 80001) and r.offset == 0


def test_short_files_double_then_crop_at_a_seeded_offset():
    contract = AudioContract(seed=7)
    records = plan_clips(30000, contract)  # 30000 → 60000 → 120000 samples: two doublings
    assert len(set(records)) == 1 and len(records) == 3
    record = records[0]
    assert (record.start, record.end, record.doublings) == (0, 30000, 2)
    assert record.offset == random.Random(7).randint(0, 120000 - 1 - 80000)
    assert plan_clips(30000, contract) == records  # reproducible
    samples = torch.arange(30000, dtype=torch.float32)[None]
    clip = cut_clip(samples, record, 80000)
    doubled = torch.cat([samples] * 4, dim=1)[:, record.offset:record.offset + 80000]
    assert torch.equal(clip, doubled - doubled.mean())


def test_too_short_audio_is_refused():
    with pytest.raises(ModalityError, match="more than 5 doublings"):
        plan_clips(80000 // 64, AudioContract())
    assert plan_clips(80000 // 32, AudioContract())[0].doublings == 5


def test_other_sample_rates_are_resampled_to_16k(tmp_path):
    rate, seconds, tone = 44100, 2.0, 1000.0
    t = np.arange(int(rate * seconds)) / rate
    path = tmp_path / "tone.wav"
    soundfile.write(path, (0.5 * np.sin(2 * np.pi * tone * t)).astype(np.float32), rate, subtype="PCM_16")
    x = get_modality("audio").prepare(path)
    assert x.shape == (3, 512, 128)
    frames = int(seconds * 100) - 2  # 2 s at 16 kHz → 198 frames of 25 ms every 10 ms
    peak = x[0, :frames].mean(0).argmax().item()
    mel = 1127 * np.log(1 + np.array([20.0, 8000.0, tone]) / 700)
    expected_bin = (mel[2] - mel[0]) / ((mel[1] - mel[0]) / 129) - 1
    assert abs(peak - expected_bin) <= 1


def test_multichannel_follows_the_official_rule():
    """Mean over every channel, filterbank of the first: the official kaldi call reads channel 0."""
    g = torch.Generator().manual_seed(0)
    left, right = torch.randn(80000, generator=g) * 0.1, torch.randn(80000, generator=g) * 0.1 + 0.3
    samples = torch.stack([left, right])
    stereo = preprocess(Waveform(samples, 16000), AudioContract())
    first = log_mel((samples - samples.mean())[:1], AudioContract())
    assert torch.equal(stereo[0], first)  # (per-frame DC removal makes the left-only mean differ by ~1e-4 only)


@pytest.mark.parametrize("ext", ["wav", "flac", "ogg", "mp3"])
def test_every_container_decodes(tmp_path, ext):
    t = np.arange(16000 * 3) / 16000
    signal = (0.4 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    path = tmp_path / f"tone.{ext}"
    soundfile.write(path, signal, 16000)
    wave = read(path)
    assert wave.sample_rate == 16000 and wave.samples.shape[0] == 1
    n = min(wave.samples.shape[1], len(signal))
    assert abs(wave.samples.shape[1] - len(signal)) <= 2 * 1152
    if ext in ("wav", "flac"):  # lossless: 16-bit rounding only
        assert np.abs(wave.samples[0, :n].numpy() - signal[:n]).max() <= 1 / 32768
    assert get_modality("audio").preprocess(wave).shape == (3, 512, 128)


def _assert_one_line(exc: ModalityFileError, path) -> None:
    assert "\n" not in str(exc) and str(exc).startswith(f"{path}: ")


@pytest.mark.parametrize("make", ["truncated_flac", "garbage_flac", "garbage_mp3", "truncated_wav",
                                  "truncated_mp3", "garbage_ogg", "empty_wav", "no_samples"])
def test_bad_audio_files_name_the_file(tmp_path, fixtures, make, capfd):
    signal = (0.3 * np.sin(np.arange(48000) * 0.05)).astype(np.float32)
    if make == "truncated_flac":
        path = truncated_copy(fixtures / "audio" / "dog.flac", tmp_path)
    elif make.startswith("garbage"):
        path = garbage_file(tmp_path, "x." + make.split("_")[1])
    elif make.startswith("truncated"):
        source = tmp_path / "full" / f"x.{make.split('_')[1]}"
        source.parent.mkdir()
        soundfile.write(source, signal, 16000)
        path = truncated_copy(source, tmp_path, keep=0.5)
    elif make == "empty_wav":
        path = tmp_path / "x.wav"
        path.write_bytes(b"")
    else:
        path = tmp_path / "x.wav"
        soundfile.write(path, np.zeros(0, np.float32), 16000)
    with pytest.raises(ModalityFileError) as info:
        get_modality("audio").prepare(path)
    _assert_one_line(info.value, path)
    assert capfd.readouterr().err == ""  # the native decoders print nothing of their own
