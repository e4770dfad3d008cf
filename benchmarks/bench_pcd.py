"""PCD read speed: the project's reader (what each format now uses) against numpy and open3d decoding the body.

For each PCD flavour (ascii, binary, binary_compressed), a cloud is written by open3d and read back by
``vitlens_cli.points.read_points`` and by ``open3d.io.read_point_cloud``, interleaved round by round; binary also
times the pure-Python LZF decoder this project used before (``binary_compressed`` only) so the switch is measured.
Two clouds: random points (LZF finds little to compress) and a regular grid with few colours (compresses well, as
organised scans and CAD exports do). Medians of wall time; one torch/numba thread is irrelevant here (I/O + parse).

    python benchmarks/bench_pcd.py [--points 200000] [--rounds 7] [--out benchmarks/results/pcd.json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_info  # noqa: E402

from vitlens_cli.atomic import write_text_atomic  # noqa: E402
from vitlens_cli.points import read_points  # noqa: E402


def lzf_decompress_python(src: bytes, size: int) -> bytes:
    """The LibLZF decoder vitlens carried before open3d took over binary_compressed (the 'before' side)."""
    out = bytearray()
    i, n = 0, len(src)
    while i < n:
        ctrl = src[i]
        i += 1
        if ctrl < 32:
            out += src[i:i + ctrl + 1]
            i += ctrl + 1
        else:
            length = ctrl >> 5
            if length == 7:
                length += src[i]
                i += 1
            ref = len(out) - ((ctrl & 31) << 8) - src[i] - 1
            i += 1
            for _ in range(length + 2):
                out.append(out[ref])
                ref += 1
    assert len(out) == size
    return bytes(out)


def python_lzf_read(path: Path) -> None:
    raw = path.read_bytes()
    body = raw.split(b"DATA binary_compressed\n", 1)[1]
    csize, usize = (int(v) for v in np.frombuffer(body[:8], dtype="<u4"))
    lzf_decompress_python(body[8:8 + csize], usize)


def clouds(n: int):
    import open3d as o3d

    rng = np.random.default_rng(0)
    side = round(n ** (1 / 3))
    grid = np.stack(np.meshgrid(*[np.arange(side)] * 3, indexing="ij"), -1).reshape(-1, 3)
    for name, xyz, rgb in (("random", rng.normal(size=(n, 3)), rng.random((n, 3))),
                           ("grid", grid * 0.01, np.float64([[1, 0, 0], [0, 0, 1]])[grid[:, 0] % 2])):
        pcd = o3d.geometry.PointCloud()
        pcd.points = o3d.utility.Vector3dVector(xyz)
        pcd.colors = o3d.utility.Vector3dVector(rgb)
        yield name, pcd


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "pcd.json")
    args = ap.parse_args()
    import open3d as o3d

    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for cloud_name, pcd in clouds(args.points):
            for mode in ("ascii", "binary", "binary_compressed"):
                path = Path(tmp) / f"{cloud_name}_{mode}.pcd"
                o3d.io.write_point_cloud(str(path), pcd, write_ascii=mode == "ascii",
                                         compressed=mode == "binary_compressed")
                contenders = {"vitlens": lambda p=path: read_points(p),
                              "open3d": lambda p=path: o3d.io.read_point_cloud(str(p), format="pcd")}
                if mode == "binary_compressed":
                    contenders["python_lzf_decode_only"] = lambda p=path: python_lzf_read(p)
                times: dict[str, list[float]] = {k: [] for k in contenders}
                for r in range(args.rounds):
                    order = list(contenders) if r % 2 == 0 else list(reversed(contenders))
                    for name in order:
                        t0 = time.perf_counter()
                        contenders[name]()
                        times[name].append(time.perf_counter() - t0)
                med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
                entry = {f"{k}_ms": round(v, 3) for k, v in med.items()}
                entry["file_bytes"] = path.stat().st_size
                entry["open3d_over_vitlens"] = round(med["open3d"] / med["vitlens"], 3)
                if "python_lzf_decode_only" in med:
                    entry["python_lzf_over_vitlens"] = round(med["python_lzf_decode_only"] / med["vitlens"], 3)
                results[f"{cloud_name}/{mode}"] = entry
                print(cloud_name, mode, entry, flush=True)
    report = {"benchmark": "pcd_read", "points": args.points, "rounds": args.rounds,
              "statistic": "median wall time per read; ratio > 1: vitlens is faster",
              "open3d": o3d.__version__, "machine": cpu_info(), "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out, json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
