"""Embed throughput and memory, three parts, each written to its section of ``results/embed.json``.

``--part streaming``: ``vitlens embed``'s streaming path (files read and prepared in DataLoader workers,
rows written to Parquet row groups as they come; ``embedding.embed_to_file``) against the serial path
(``workers=0``: read, prepare, encode one after the other in this process, fp32) on ``--stream-files`` 3D
files derived from the fixtures (links to ModelNet40 ``.txt``, ``.npy``, PLY, PCD and OFF files, cycled) with
the ``tiny`` model: the serial path, the streaming path in fp32 and the streaming path as ``vitlens embed``
runs by default (``--precision auto``), and that default with the main process on one torch thread,
interleaved round by round in this process, wall-clock medians (the
workers' CPU is not this process's). Then peak RSS: the CLI with its defaults on 1,000 and on 10,000 such
files, each in a fresh child process reporting its own ``ru_maxrss`` and its workers'.

``--part allocator``: the CLI on the two RSS file counts under its own allocator set-up
(``allocator.pin_malloc_thresholds``), under the one it replaced (mmap threshold pinned at 128 KiB) and under
glibc's defaults, fresh children, interleaved: files/s and peak RSS.

``--part modalities``: per-modality embed throughput (files/s) of ``embedding.embed_files`` with
``tiny-omni``. Inputs are the real fixture files (audio FLAC, depth PNG, JPEG photos as images and as tactile frames,
an OFF mesh and a PLY cloud) copied to ``--files`` files per modality, plus synthetic EEG trials; the
whole path is timed: reading, decoding, preprocessing, encoding. The baseline is the one-file-at-a-time
path (``batch_size=1``) against the batched one (``--batch-size``) on the same files; a mixed run (every
modality interleaved in one call) is compared with the sum of the per-modality batched runs. Times are
CPU seconds of the process on one torch thread (``time.process_time``, so time descheduled on a busy
machine is not counted), the two sides interleaved round by round, medians kept.

    python benchmarks/bench_embed.py --part streaming [--stream-files 2000] [--workers 2] [--rounds 3]
    python benchmarks/bench_embed.py --part modalities [--files 8] [--rounds 3]
    python benchmarks/bench_embed.py --part allocator [--rss-files 1000 10000] [--rounds 3]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
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
from machine import cpu_info  # noqa: E402
from make_inputs import eeg_trial  # noqa: E402
from tests.conftest import _fixtures_root  # noqa: E402

import vitlens_cli  # noqa: E402
from vitlens_cli.embedding import embed_files, embed_to_file, load_embeddings  # noqa: E402

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


# 3D fixture files the streaming part cycles over (relative to the fixtures folder): mostly ModelNet40 clouds.
STREAM_GLOBS = ["modelnet40/normal_resampled/*/*.txt", "modelnet40/npy/*.npy", "clouds/owl_rgb.ply",
                "clouds/airplane_partial.pcd", "meshes/chair_0002.off", "meshes/toilet_0001.off"]

# A child embeds through the CLI and reports its own peak RSS and its workers' (KiB, Linux ru_maxrss).
_RSS_CHILD = """
import ctypes, json, resource, runpy, sys
out, setting = sys.argv.pop(1), sys.argv.pop(1)
if setting != "vitlens":  # another allocator set-up in place of the command's own (--part allocator)
    import vitlens_cli.allocator as allocator
    mallopt = ctypes.CDLL(None).mallopt
    allocator.pin_malloc_thresholds = {"glibc-defaults": lambda: True,
                                       "mmap-128k": lambda: bool(mallopt(-3, 128 << 10))}[setting]
sys.argv = ["vitlens", *sys.argv[1:]]
try:
    runpy.run_module("vitlens_cli", run_name="__main__")
except SystemExit as exc:
    code = exc.code
else:
    code = 0
peak = {"self_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "workers_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, "exit": code}
open(out, "w").write(json.dumps(peak))
"""
# the allocator set-ups --part allocator compares: the command's (fixed high thresholds), the one it replaced
# (mmap threshold pinned at glibc's 128 KiB default) and glibc's own dynamic thresholds
ALLOCATOR_SETTINGS = ("vitlens", "mmap-128k", "glibc-defaults")


def stream_inputs(fixtures: Path, folder: Path, count: int) -> list[Path]:
    sources = sorted(p for g in STREAM_GLOBS for p in fixtures.glob(g))
    folder.mkdir(parents=True)
    paths = []
    for i in range(count):
        src = sources[i % len(sources)]
        paths.append(folder / f"{i:05d}{src.suffix}")
        paths[-1].symlink_to(src)  # the readers follow links: the fixture's bytes, no copies on disk
    return paths


def wall_interleaved(runs: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            start = time.perf_counter()
            runs[name]()
            times[name].append(time.perf_counter() - start)
    return times


def peak_rss(files: Path, out: Path, workers: int, batch_size: int, setting: str = "vitlens") -> dict:
    report = out.with_suffix(".rss.json")
    args = [sys.executable, "-c", _RSS_CHILD, str(report), setting, "embed", str(files), "--model", "tiny",
            "--out", str(out),
            "--workers", str(workers), "--batch-size", str(batch_size), "--json"]
    start = time.perf_counter()
    subprocess.run(args, cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = json.loads(report.read_text())
    peak["seconds"] = time.perf_counter() - start
    peak["rows"] = len(load_embeddings(out).manifest["items"])
    return peak


# name → (workers, precision, main-process torch threads or None for torch's default): the serial path as it
# was when streaming came in (everything in this process, fp32), the streaming path at that precision, what
# `vitlens embed` runs by default (2 workers, --precision auto: bf16 where the CPU has it natively, else fp32),
# and that default with one torch thread in the main process, leaving the other cores to the workers.
def stream_runs(workers: int) -> dict[str, tuple[int, str, int | None]]:
    return {"serial_fp32": (0, "fp32", None), "streaming_fp32": (workers, "fp32", None),
            "default": (workers, "auto", None), "default_main_1_thread": (workers, "auto", 1)}


def streaming(args, fixtures: Path) -> dict:
    from vitlens_cli.allocator import pin_malloc_thresholds
    from vitlens_cli.precision import resolve_precision

    pin_malloc_thresholds()  # as `vitlens embed` does: the runs measure the command's allocator set-up
    model = vitlens_cli.load_model("tiny")
    load_before = list(os.getloadavg())
    runs = stream_runs(args.workers)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        files = stream_inputs(fixtures, tmp / "in", args.stream_files)

        def run(name: str) -> Callable[[], object]:
            workers, precision, threads = runs[name]

            def call() -> None:
                default = torch.get_num_threads()
                torch.set_num_threads(threads or default)
                try:
                    result, _ = embed_to_file(model, files, tmp / f"{name}.parquet", batch_size=args.batch_size,
                                              workers=workers, precision=precision)
                finally:
                    torch.set_num_threads(default)
                assert not result.failures and len(result.items) == len(files), result.failures[:3]
            return call

        embed_to_file(model, files[:64], tmp / "warm.parquet", workers=args.workers)  # numba and reader caches
        times = wall_interleaved({name: run(name) for name in runs}, args.rounds)
        rows = {name: load_embeddings(tmp / f"{name}.parquet").embeddings for name in runs}
        median = {name: statistics.median(t) for name, t in times.items()}
        cos = (rows["default"] * rows["serial_fp32"]).sum(1)  # both L2-normalised
        throughput = {
            "files": len(files), "batch_size": args.batch_size,
            "runs": {name: {"workers": w, "precision": p, "precision_used": resolve_precision(p, "cpu").name,
                            "main_torch_threads": th or torch.get_num_threads(),
                            "files_per_s": len(files) / median[name],
                            "seconds": [round(t, 2) for t in times[name]]} for name, (w, p, th) in runs.items()},
            "ratio_default_vs_serial_fp32": median["serial_fp32"] / median["default"],
            "ratio_streaming_fp32_vs_serial_fp32": median["serial_fp32"] / median["streaming_fp32"],
            "ratio_default_main_1_thread_vs_serial_fp32": median["serial_fp32"] / median["default_main_1_thread"],
            "fp32_rows_identical": bool((rows["streaming_fp32"] == rows["serial_fp32"]).all()),
            "default_min_cosine_to_serial_fp32": float(cos.min())}
        for name in runs:
            print(f"{name:15s} {len(files) / median[name]:7.1f} files/s")
        print(f"default, main process on 1 thread, vs serial fp32 "
              f"×{throughput['ratio_default_main_1_thread_vs_serial_fp32']:.2f}")
        print(f"default vs serial fp32 ×{throughput['ratio_default_vs_serial_fp32']:.2f} "
              f"(min cosine {cos.min():.5f}); streaming fp32 ×{throughput['ratio_streaming_fp32_vs_serial_fp32']:.2f}")
        many = stream_inputs(fixtures, tmp / "many", max(args.rss_files))
        memory = {}
        for count in args.rss_files:
            folder = tmp / f"rss{count}"
            folder.mkdir()
            for path in many[:count]:
                (folder / path.name).symlink_to(path.resolve())
            memory[str(count)] = peak_rss(folder, tmp / f"rss{count}.parquet", args.workers, args.batch_size)
            print(f"{count:6d} files: peak RSS {memory[str(count)]['self_kib'] / 1024:.0f} MiB "
                  f"(workers {memory[str(count)]['workers_kib'] / 1024:.0f} MiB)")
        small, large = (memory[str(c)]["self_kib"] for c in (min(args.rss_files), max(args.rss_files)))
    return {"benchmark": "embed_streaming", "model": "tiny",
            "inputs": {"globs": STREAM_GLOBS, "how": "symbolic links to the fixture files, cycled"},
            "statistic": "wall-clock seconds per run (time.perf_counter), the runs interleaved, medians; ratio = "
                         "serial fp32 seconds / the other run's; peak RSS = ru_maxrss of a fresh `vitlens embed "
                         "--out x.parquet` child with the default precision (self; its DataLoader workers apart)",
            "throughput": throughput, "peak_rss": memory,
            "rss_ratio_large_vs_small": large / small,
            "main_torch_threads": torch.get_num_threads(),
            "load_average_before_after": [load_before, list(os.getloadavg())],
            "machine": cpu_info(), "versions": {"python": platform.python_version(), "torch": torch.__version__}}


def modalities(args, fixtures: Path) -> dict:
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
    return out


def allocator(args, fixtures: Path) -> dict:
    """`vitlens embed` (its defaults) on the two RSS file counts under each allocator set-up, fresh children,
    the set-ups interleaved per round: files/s of the whole command (start-up included) and peak RSS."""
    load_before = list(os.getloadavg())
    runs: dict[str, dict[str, list]] = {s: {str(c): [] for c in args.rss_files} for s in ALLOCATOR_SETTINGS}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        many = stream_inputs(fixtures, tmp / "many", max(args.rss_files))
        for count in args.rss_files:
            (tmp / f"in{count}").mkdir()
            for path in many[:count]:
                (tmp / f"in{count}" / path.name).symlink_to(path.resolve())
        for r in range(args.rounds):
            order = ALLOCATOR_SETTINGS[r % 3:] + ALLOCATOR_SETTINGS[:r % 3]
            for setting in order:
                for count in args.rss_files:
                    peak = peak_rss(tmp / f"in{count}", tmp / f"{setting}-{count}.parquet", args.workers,
                                    args.batch_size, setting)
                    assert peak["exit"] == 0 and peak["rows"] == count, peak
                    runs[setting][str(count)].append(peak)
                    print(f"round {r} {setting:15s} {count:6d} files: {count / peak['seconds']:6.1f} files/s, "
                          f"peak RSS {peak['self_kib'] / 1024:.0f} MiB", flush=True)
    small, large = (str(c) for c in (min(args.rss_files), max(args.rss_files)))
    summary = {}
    for setting, by_count in runs.items():
        rate = statistics.median(int(large) / p["seconds"] for p in by_count[large])
        rss = {c: statistics.median(p["self_kib"] for p in by_count[c]) for c in by_count}
        summary[setting] = {"files_per_s_large": rate, "peak_rss_kib": rss, "rss_ratio_large_vs_small":
                            rss[large] / rss[small]}
    for setting in ALLOCATOR_SETTINGS:
        summary[setting]["files_per_s_vs_vitlens"] = (summary[setting]["files_per_s_large"]
                                                      / summary["vitlens"]["files_per_s_large"])
        print(f"{setting:15s} {summary[setting]['files_per_s_large']:6.1f} files/s on {large}, RSS {large} vs "
              f"{small} ×{summary[setting]['rss_ratio_large_vs_small']:.3f}")
    return {"benchmark": "embed_allocator", "model": "tiny", "workers": args.workers, "batch_size": args.batch_size,
            "statistic": "fresh `vitlens embed --out x.parquet` children, defaults but the allocator set-up; "
                         "files/s = files / the child's wall seconds (start-up included), medians over rounds; "
                         "peak RSS = the child's own ru_maxrss",
            "settings": {"vitlens": "mmap threshold 64 MiB, trim threshold 256 MiB (allocator.pin_malloc_thresholds)",
                         "mmap-128k": "mmap threshold pinned at 128 KiB (the set-up before)",
                         "glibc-defaults": "glibc's dynamic thresholds"},
            "results": summary, "runs": runs, "load_average_before_after": [load_before, list(os.getloadavg())],
            "machine": cpu_info(), "versions": {"python": platform.python_version(), "torch": torch.__version__}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", choices=("streaming", "modalities", "allocator"), required=True)
    ap.add_argument("--files", type=int, default=8, help="modalities: files per modality")
    ap.add_argument("--stream-files", type=int, default=2000, help="streaming: files of the throughput runs")
    ap.add_argument("--rss-files", type=int, nargs=2, default=[1000, 10000], help="streaming: the two RSS runs")
    ap.add_argument("--workers", type=int, default=2, help="streaming: DataLoader workers of the streaming path")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "embed.json"))
    args = ap.parse_args()
    fixtures = _fixtures_root()
    if fixtures is None:
        sys.exit("fixtures not found: set VITLENS_FIXTURES or place them at ../shared/fixtures")
    path = Path(args.out)
    try:  # each part owns its section; the other's last results stay
        results = json.loads(path.read_text())
    except (OSError, ValueError):
        results = {}
    if results.get("benchmark") == "embed_throughput":  # the file before it had sections
        results = {"modalities": results}
    results[args.part] = {"streaming": streaming, "modalities": modalities, "allocator": allocator}[args.part](
        args, fixtures)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
