"""Peak memory of `vitlens index build` against the number of files: 1,000 vs 10,000 small point clouds.

Each build runs as its own child process (`python -m vitlens_cli index build ... --workers W`), so no
allocation of one run is counted in another. Two numbers per run:

- the whole process tree's peak RSS, exact, from ``os.wait4``'s rusage (Linux reports the maximum over the
  child and every descendant it waited for, i.e. the largest single process, not a sum);
- each process's own peak (``VmHWM`` in ``/proc/PID/status``), polled while it runs, so the build's main
  process and its spawned embedding workers are reported apart (the last poll before a process exits is
  its value: a worker growing in its final few milliseconds would be missed, the wait4 number would not).

The model is ``--model nano`` (default): the zoo's ``tiny`` architecture cut to 64 points in 8 groups of 8
and saved as a checkpoint for the run, so 10,000 files embed in minutes on two shared cores (what is
measured is the build path's memory against the number of files, which the model's size does not change;
``--model tiny`` uses the zoo model as it is). The files are real ModelNet40 shapes from the fixtures
(``--fixtures``), each one a fresh random subset of ``--points`` points of one shape with a little jitter,
half as ``.npy`` and half as ``.xyz`` text, so every file has its own sha256. Sizes run interleaved (small, large, small, ... per round); the baseline is the
smallest size, and the result is the ratio of each size's median peak to the baseline's (target ≤ 1.1).

    python benchmarks/bench_index_memory.py [--sizes 1000 10000] [--rounds 1] [--workers 2] [--model nano]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from machine import cpu_info  # noqa: E402
from vitlens_cli.atomic import write_text_atomic  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FIXTURES = REPO.parent / "shared" / "fixtures"


def make_files(folder: Path, count: int, fixtures: Path, points: int, seed: int) -> None:
    shapes = sorted((fixtures / "modelnet40" / "normal_resampled").glob("*/*.txt"))
    if not shapes:
        raise SystemExit(f"{fixtures}: no modelnet40/normal_resampled/*/*.txt (pass --fixtures)")
    clouds = [np.loadtxt(p, delimiter=",", dtype=np.float32, usecols=(0, 1, 2)) for p in shapes]
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for i in range(count):
        cloud = clouds[i % len(clouds)]
        sub = cloud[rng.choice(len(cloud), points, replace=False)]
        sub += rng.normal(0, 1e-3, sub.shape).astype(np.float32)
        # Shard folders keep any one directory listing short, as a real collection would be.
        target = folder / f"{i // 1000:03d}" / f"cloud_{i:06d}"
        target.parent.mkdir(exist_ok=True)
        if i % 2:
            np.savetxt(target.with_suffix(".xyz"), sub, fmt="%.6f")
        else:
            np.save(target.with_suffix(".npy"), sub)


def save_nano(folder: Path) -> None:
    from dataclasses import replace

    from vitlens_cli.models import load_model
    from vitlens_cli.models.checkpoints import save_model
    from vitlens_cli.models.factory import build_model

    cfg = load_model("tiny").cfg
    lens = replace(cfg.lens, npoints=64, num_group=8, group_size=8)
    save_model(build_model(replace(cfg, lens=lens, preprocess=replace(cfg.preprocess, num_points=64))), folder)


def _descendants(root: int) -> list[int]:
    """``root`` and every process below it (a scan of /proc: not every kernel has ``/proc/PID/task/*/children``)."""
    parent: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # The command name is in parentheses and may hold spaces: the parent pid follows its closing one.
            parent[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            pass
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += [c for c, p in parent.items() if p == pid]
    return found


def _hwm_kb(pid: int) -> tuple[int, str] | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]), cmd
    return None


def _role(pid: int, root: int, cmd: str) -> str:
    if pid == root:
        return "main"
    if "resource_tracker" in cmd:
        return "resource_tracker"
    if "spawn_main" in cmd:
        return "worker"
    return "other"


def run_build(files: Path, out: Path, model: list[str], workers: int, shard_files: int, batch_size: int) -> dict:
    cmd = [sys.executable, "-m", "vitlens_cli", "index", "build", str(files), "--out", str(out), *model,
           "--modality", "3d", "--device", "cpu", "--workers", str(workers), "--shard-files", str(shard_files),
           "--batch-size", str(batch_size), "--json"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peaks: dict[int, tuple[int, str]] = {}
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            for pid in _descendants(proc.pid):
                got = _hwm_kb(pid)
                if got is not None:
                    peaks[pid] = max(peaks.get(pid, (0, "")), got)
            done.wait(0.1)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    # The pipes are drained by threads: a build that fills one must not stall while we sit in wait4.
    streams: dict[str, bytes] = {}
    readers = [threading.Thread(target=lambda n=n, s=s: streams.__setitem__(n, s.read()), daemon=True)
               for n, s in (("stdout", proc.stdout), ("stderr", proc.stderr))]
    for r in readers:
        r.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    done.set()
    poller.join()
    for r in readers:
        r.join()
    if proc.returncode != 0:
        raise SystemExit(f"build of {files} failed ({proc.returncode}): {streams['stderr'].decode()[-2000:]}")
    report = json.loads(streams["stdout"])
    roles: dict[str, list[float]] = {}
    for pid, (kb, command) in peaks.items():
        roles.setdefault(_role(pid, proc.pid, command), []).append(kb / 1024)
    return {"wall_s": wall, "rows": report["rows"], "failures": len(report["failures"]),
            "shards": report["embedded_shards"], "tree_peak_rss_mb": usage.ru_maxrss / 1024,
            "per_process_peak_rss_mb": {role: sorted(v, reverse=True) for role, v in sorted(roles.items())}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--shard-files", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--model", choices=("nano", "tiny"), default="nano")
    ap.add_argument("--points", type=int, default=256, help="points per generated file")
    ap.add_argument("--fixtures", type=Path, default=DEFAULT_FIXTURES)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "index_memory.json"))
    args = ap.parse_args()
    sizes = sorted(set(args.sizes))

    tmp = Path(tempfile.mkdtemp(prefix="vitlens-index-memory-"))
    try:
        model = ["--model", "tiny"]
        if args.model == "nano":
            save_nano(tmp / "nano")
            model = ["--checkpoint", str(tmp / "nano")]
        for n in sizes:
            t0 = time.perf_counter()
            make_files(tmp / f"files-{n}", n, args.fixtures, args.points, seed=n)
            print(f"wrote {n} files in {time.perf_counter() - t0:.1f} s", flush=True)
        runs: dict[int, list[dict]] = {n: [] for n in sizes}
        for r in range(args.rounds):
            for n in sizes:
                out = tmp / f"index-{n}"
                shutil.rmtree(out, ignore_errors=True)
                run = run_build(tmp / f"files-{n}", out, model, args.workers, args.shard_files, args.batch_size)
                runs[n].append(run)
                print(f"round {r + 1}: {n} files → {run['rows']} rows in {run['wall_s']:.0f} s, tree peak "
                      f"{run['tree_peak_rss_mb']:.0f} MB, per process {run['per_process_peak_rss_mb']}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    def median_of(n: int, pick) -> float:
        return float(np.median([pick(run) for run in runs[n]]))

    def role_max(role: str):
        return lambda run: max(run["per_process_peak_rss_mb"].get(role, [0.0]))

    medians = {n: {"tree": median_of(n, lambda run: run["tree_peak_rss_mb"]), "main": median_of(n, role_max("main")),
                   "worker": median_of(n, role_max("worker")), "wall_s": median_of(n, lambda run: run["wall_s"])}
               for n in sizes}
    base = sizes[0]
    summary = {}
    for n in sizes:
        m, b = medians[n], medians[base]
        summary[str(n)] = {
            "median_tree_peak_rss_mb": m["tree"], "median_main_peak_rss_mb": m["main"],
            "median_worker_peak_rss_mb": m["worker"] or None, "median_wall_s": m["wall_s"],
            "ratio_tree_peak_to_baseline": m["tree"] / b["tree"], "ratio_main_peak_to_baseline": m["main"] / b["main"],
            "ratio_worker_peak_to_baseline": m["worker"] / b["worker"] if b["worker"] else None,
        }
    largest = summary[str(sizes[-1])]
    ratios = [v for k, v in largest.items() if k.startswith("ratio_") and v is not None]
    result = {
        "benchmark": "index_memory", "baseline_files": base, "sizes": sizes, "rounds": args.rounds,
        "workers": args.workers, "shard_files": args.shard_files, "batch_size": args.batch_size,
        "points_per_file": args.points, "model": args.model,
        "files": "random subsets of the 39 fixture ModelNet40 shapes, jittered; half .npy, half .xyz",
        "target": "peak RSS at the largest size ≤ 1.1 × at the baseline size, per process and for the tree",
        "meets_target": bool(max(ratios) <= 1.1), "summary": summary,
        "runs": {str(n): v for n, v in runs.items()}, "machine": cpu_info(),
    }
    out = write_text_atomic(args.out, json.dumps(result, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
