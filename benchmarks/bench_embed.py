"""Per-modality embed throughput (files/s) of ``embedding.embed_files`` with ``tiny-omni``, in one run.

Inputs are the real fixture files (audio FLAC, depth PNG, JPEG photos as images and as tactile frames,
an OFF mesh and a PLY cloud) copied to ``--files`` files per modality, plus synthetic EEG trials; the
whole path is timed: reading, decoding, preprocessing, encoding. The baseline is the one-file-at-a-time
path (``batch_size=1``) against the batched one (``--batch-size``) on the same files; a mixed run (every
modality interleaved in one call) is compared with the sum of the per-modality batched runs. Times are
CPU seconds of the process on one torch thread (``time.process_time``, so time descheduled on a busy
machine is not counted), the two sides interleaved round by round, medians kept.

    python benchmarks/bench_embed.py [--files 8] [--rounds 3] [--out benchmarks/results/embed.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "examples"))
from bench_preprocess import cpu_info  # noqa: E402
from make_inputs import eeg_trial  # noqa: E402
from tests.conftest import _fixtures_root  # noqa: E402

import vitlens_cli  # noqa: E402
from vitlens_cli.embedding import embed_files  # noqa: E402

# modality → fixture files cycled over (relative to the fixtures folder); EEG is synthesised
SOURCES = {
    "3d": ["meshes/airplane_0001.off", "clouds/owl_rgb.ply"],
    "depth": ["depth/NYU0001_depth.png", "depth/NYU0002_depth.png"],
    "audio": ["audio/dog.flac", "audio/sea_wave.flac", "audio/chirping_birds.flac", "audio/crackling_fire.flac"],
    "image": ["images/dog.jpg", "images/beach.jpg"],
    "tactile": ["images/beach.jpg", "images/dog.jpg"],
    "eeg": [],
}


def make_inputs(fixtures: Path, folder: Path, count: int) -> dict[str, list[Path]]:
    files: dict[str, list[Path]] = {}
    for modality, sources in SOURCES.items():
        sub = folder / modality
        sub.mkdir(parents=True)
        files[modality] = []
        for i in range(count):
            if modality == "eeg":
                path = sub / f"trial{i}.npy"
                np.save(path, eeg_trial(samples=440 + 20 * (i % 4)))
            else:
                src = fixtures / sources[i % len(sources)]
                path = sub / f"{i}{src.suffix}"
                shutil.copyfile(src, path)
            files[modality].append(path)
    return files


def interleaved(runs: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median CPU seconds of each run, the order rotated every round."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            start = time.process_time()
            runs[name]()
            times[name].append(time.process_time() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=8, help="files per modality")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "embed.json"))
    args = ap.parse_args()
    fixtures = _fixtures_root()
    if fixtures is None:
        sys.exit("fixtures not found: set VITLENS_FIXTURES or place them at ../shared/fixtures")
    torch.set_num_threads(1)  # process CPU time is then the work itself, not idle spinning of a pool
    model = vitlens_cli.load_model("tiny-omni")
    load_before = list(os.getloadavg())
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        files = make_inputs(fixtures, Path(tmp), args.files)

        def run(paths: list[Path], modality: str | None, batch: int) -> Callable[[], object]:
            names = [modality] if modality else ["eeg", "depth", "image"]  # .npy → eeg, .png → depth, .jpg → image
            def call() -> None:
                result = embed_files(model, paths, modalities=names, batch_size=batch)
                assert not result.failures and len(result.items) == len(paths), result.failures
            return call

        for modality, paths in files.items():
            run(paths, modality, args.batch_size)()  # warm-up (decoders, open_clip transforms)
            t = interleaved({"batched": run(paths, modality, args.batch_size), "one_at_a_time": run(paths, modality, 1)},
                            args.rounds)
            results[modality] = {"files": len(paths), "batched_files_per_s": len(paths) / t["batched"],
                                 "one_at_a_time_files_per_s": len(paths) / t["one_at_a_time"],
                                 "ratio": t["one_at_a_time"] / t["batched"]}
        mixed = [p for group in zip(*(files[m] for m in ("3d", "depth", "audio", "image", "eeg"))) for p in group]
        t = interleaved({"mixed": run(mixed, None, args.batch_size)}, args.rounds)
        apart = sum(len(files[m]) / results[m]["batched_files_per_s"] for m in ("3d", "depth", "audio", "image", "eeg"))
        results["mixed_3d_depth_audio_image_eeg"] = {
            "files": len(mixed), "files_per_s": len(mixed) / t["mixed"],
            "ratio_vs_modalities_apart": apart / t["mixed"]}
    for name, r in results.items():
        rate = r.get("batched_files_per_s", r.get("files_per_s"))
        ratio = r.get("ratio", r.get("ratio_vs_modalities_apart"))
        print(f"{name:32s} {rate:8.1f} files/s  ×{ratio:.2f}")
    out = {"benchmark": "embed_throughput", "model": "tiny-omni", "rounds": args.rounds,
           "batch_size": args.batch_size,
           "statistic": "median CPU seconds of the process per run (time.process_time, 1 torch thread), runs "
                        "interleaved; ratio = one-file-at-a-time time / batched time on the same files; the mixed "
                        "run's ratio = the per-modality batched times summed / the mixed run's time",
           "timed": "embed_files end to end: expansion, reading and decoding, preprocessing, encoding",
           "inputs": {m: (SOURCES[m] or ["examples/make_inputs.eeg_trial, 128 x 440-500"]) for m in SOURCES},
           "load_average_before_after": [load_before, list(os.getloadavg())],
           "results": results, "machine": cpu_info(),
           "versions": {"python": platform.python_version(), "torch": torch.__version__}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
