"""Per-modality preprocessing throughput: ours against the official processors' algorithm, in one run.

The baselines are the official eval processors written out plainly here (torchvision transforms,
torchaudio's kaldi call per clip, scipy's interp1d), fed the same in-memory inputs as ours, so file
decoding is not timed. Both sides run on one torch thread and are timed in CPU time of that thread
(``time.thread_time``), so time spent descheduled on a busy machine is not counted; calls are
interleaved round by round (alternating which side goes first) and each side keeps its median. The
load average is recorded with the results.

    python benchmarks/bench_preprocess.py [--rounds 30] [--out benchmarks/results/preprocess.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision import transforms

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from machine import cpu_info  # noqa: E402
from make_inputs import depth_map, drums, eeg_trial, gel_press, whistle  # noqa: E402

from vitlens_cli.atomic import write_text_atomic  # noqa: E402
from vitlens_cli.modalities import get_modality  # noqa: E402
from vitlens_cli.modalities.audio import AudioContract, Waveform, log_mel, resample  # noqa: E402
from vitlens_cli.modalities.depth import DepthContract, DepthMap  # noqa: E402

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
BICUBIC = transforms.InterpolationMode.BICUBIC


# ---- the official algorithms, plainly ---------------------------------------------------------------------
def official_disparity(raw: np.ndarray) -> torch.Tensor:
    depth = np.clip(raw.astype(np.float32) / 1000.0, 0.01, 50.0)
    return torch.from_numpy((0.075 * 518.857901) / depth).float()


def official_depth(rgb: torch.Tensor, disparity: torch.Tensor) -> torch.Tensor:
    """RGBD_Processor_Eval: DepthNorm, Resize(224), CenterCrop(224), Normalize on the 4-channel RGBD tensor."""
    rgbd = torch.cat([rgb, disparity[None]], dim=0)
    depth = rgbd[3:4].clamp(min=0.01).clamp(max=75.0) / 75.0
    rgbd = torch.cat([rgbd[:3], depth], dim=0)
    rgbd = transforms.Resize(224, interpolation=BICUBIC, antialias=False)(rgbd)
    rgbd = transforms.CenterCrop(224)(rgbd)
    rgbd = transforms.Normalize(list(OPENAI_MEAN) + [0.0418], list(OPENAI_STD) + [0.0295])(rgbd)
    return rgbd[3:4]


def official_depth_channel_only(disparity: torch.Tensor) -> torch.Tensor:
    """The same steps on the depth channel alone (the fairest plain baseline)."""
    depth = disparity[None].clamp(min=0.01).clamp(max=75.0) / 75.0
    depth = transforms.Resize(224, interpolation=BICUBIC, antialias=False)(depth)
    return transforms.Normalize([0.0418], [0.0295])(transforms.CenterCrop(224)(depth))


def official_fbank(clip: torch.Tensor) -> torch.Tensor:
    """AudioASTProcessorEval.convert2fbank + its Normalize, for one clip."""
    from torchaudio.compliance import kaldi

    fbank = kaldi.fbank(clip, htk_compat=True, sample_frequency=16000, use_energy=False, window_type="hanning",
                        num_mel_bins=128, dither=0.0, frame_shift=10)
    p = 512 - fbank.shape[0]
    fbank = torch.nn.ZeroPad2d((0, 0, 0, p))(fbank) if p > 0 else fbank[:512]
    return transforms.Normalize(mean=(-4.2677393,), std=(4.5689974,))(fbank[None])[0]


def official_audio(wave: torch.Tensor, rate: int) -> torch.Tensor:
    """AudioASTProcessorEval.__call__ on decoded samples: resample, 3 clips, mean removal, fbank each."""
    from fractions import Fraction

    import torchaudio.functional

    if rate != 16000:
        wave = torchaudio.functional.resample(wave, orig_freq=rate, new_freq=16000)
    duration = wave.shape[1] / 16000

    def clip_of(wf: torch.Tensor) -> torch.Tensor:
        while wf.shape[1] < 80000:
            wf = torch.cat([wf, wf], dim=1)
        wf = wf[:, :80000]
        return wf - wf.mean()

    if duration <= 5.0:
        clips = [clip_of(wave)] * 3
    else:
        step = Fraction(Fraction(duration - 5.0), 3)
        clips = [clip_of(wave[:, int(step * k * 16000):int((step * k + 5) * 16000)]) for k in range(3)]
    return torch.stack([official_fbank(c) for c in clips])


def official_tactile(image: Image.Image) -> torch.Tensor:
    return transforms.Compose([
        transforms.ToTensor(), transforms.Resize(256, interpolation=BICUBIC, antialias=False),
        transforms.CenterCrop(224), transforms.Normalize(OPENAI_MEAN, OPENAI_STD)])(image)


def official_eeg(eeg: torch.Tensor) -> torch.Tensor:
    from scipy.interpolate import interp1d

    x = eeg.float().t()[20:460, :].t().numpy()
    f = interp1d(np.linspace(0, 1, x.shape[-1]), x, kind="linear")
    return torch.from_numpy(f(np.linspace(0, 1, 512))).float()


# ---- timing -------------------------------------------------------------------------------------------------
def interleaved(ours: Callable[[], object], reference: Callable[[], object], rounds: int) -> dict:
    ours(), reference()  # warm-up
    t_ours: list[float] = []
    t_ref: list[float] = []
    for i in range(rounds):
        pairs = ((ours, t_ours), (reference, t_ref))
        for fn, sink in pairs if i % 2 == 0 else pairs[::-1]:
            start = time.thread_time()
            fn()
            sink.append(time.thread_time() - start)
    ours_s, ref_s = statistics.median(t_ours), statistics.median(t_ref)
    return {"ours_items_per_s": 1.0 / ours_s, "reference_items_per_s": 1.0 / ref_s, "ratio": ref_s / ours_s,
            "ours_ms": 1e3 * ours_s, "reference_ms": 1e3 * ref_s, "ratio_of_fastest": min(t_ref) / min(t_ours)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "preprocess.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)  # thread CPU time is only the whole cost when the work stays on this thread
    results: dict[str, dict] = {}
    load_before = list(os.getloadavg())

    depth_raw = depth_map()  # 480x640 uint16, as a Kinect frame
    depth = get_modality("depth")
    raw = DepthMap(depth_raw, "samples")
    rgb = torch.rand(3, *depth_raw.shape)
    results["depth_vs_official_rgbd"] = interleaved(
        lambda: depth.preprocess(raw, DepthContract()),
        lambda: official_depth(rgb, official_disparity(depth_raw)), args.rounds)
    results["depth_vs_plain_depth_channel"] = interleaved(
        lambda: depth.preprocess(raw, DepthContract()),
        lambda: official_depth_channel_only(official_disparity(depth_raw)), args.rounds)

    audio = get_modality("audio")
    contract = AudioContract()
    short = torch.from_numpy(whistle(seconds=5.0))[None]
    long = torch.from_numpy(whistle(seconds=10.0))[None]
    stereo = torch.from_numpy(drums(seconds=10.0).T.copy())
    clip = short - short.mean()
    results["audio_fbank_step_vs_torchaudio_kaldi"] = interleaved(
        lambda: log_mel(clip, contract), lambda: official_fbank(clip), args.rounds)
    results["audio_5s_file"] = interleaved(
        lambda: audio.preprocess(Waveform(short, 16000), contract), lambda: official_audio(short, 16000), args.rounds)
    results["audio_10s_file"] = interleaved(
        lambda: audio.preprocess(Waveform(long, 16000), contract), lambda: official_audio(long, 16000), args.rounds)
    results["audio_10s_44k1_stereo_file"] = interleaved(
        lambda: audio.preprocess(Waveform(stereo, 44100), contract), lambda: official_audio(stereo, 44100),
        args.rounds)
    # the resampler is torchaudio's in both: recorded to show where the time of a 44.1 kHz file goes
    results["audio_resample_44k1"] = {"resample_ms": 1e3 * statistics.median(
        _times(lambda: resample(Waveform(stereo, 44100), 16000), args.rounds))}

    frame = gel_press()
    tactile = get_modality("tactile")
    pil = Image.fromarray(frame)
    results["tactile"] = interleaved(lambda: tactile.preprocess(frame), lambda: official_tactile(pil), args.rounds)

    eeg = torch.from_numpy(eeg_trial())
    results["eeg"] = interleaved(lambda: get_modality("eeg").preprocess(eeg), lambda: official_eeg(eeg), args.rounds)

    for name, r in results.items():
        if "ratio" in r:
            print(f"{name:40s} ours {r['ours_ms']:8.2f} ms  reference {r['reference_ms']:8.2f} ms  ×{r['ratio']:.2f}")
    out = {"benchmark": "preprocess_throughput", "rounds": args.rounds,
           "statistic": "median per-item CPU time of the calling thread (time.thread_time, 1 torch thread), "
                        "calls interleaved; ratio = reference time / ours (ratio_of_fastest: the same with minima)",
           "load_average_before_after": [load_before, list(os.getloadavg())],
           "inputs": {"depth": "480x640 uint16 PNG samples (examples/make_inputs.py)",
                      "audio": "16 kHz mono 5 s and 10 s, 44.1 kHz stereo 10 s (decoded samples)",
                      "tactile": "480x640 RGB uint8", "eeg": "128 x 500 float32"},
           "notes": {"image": "not timed: ours is open_clip's own eval transform, so it is the reference",
                     "audio_fbank_step": "both sides call torchaudio.compliance.kaldi.fbank; the ratio shows "
                                         "the padding and normalisation around it add nothing",
                     "audio_5s_file": "the official processor computes the repeated clip's fbank 3 times, "
                                      "ours once"},
           "results": results, "machine": cpu_info(),
           "versions": {"python": platform.python_version(), "torch": torch.__version__,
                        "torchaudio": __import__("torchaudio").__version__,
                        "torchvision": __import__("torchvision").__version__}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out, json.dumps(out, indent=2) + "\n")


def _times(fn: Callable[[], object], rounds: int) -> list[float]:
    fn()
    times = []
    for _ in range(rounds):
        start = time.thread_time()
        fn()
        times.append(time.thread_time() - start)
    return times


if __name__ == "__main__":
    main()
