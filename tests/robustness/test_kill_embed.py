"""SIGKILL and SIGINT at random moments of `vitlens embed --out`: the folder holds the previous pair or the new
complete one, consistent per ``load_embeddings``, never a torn mix; no temporary file survives the next run."""
from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.robustness.harness import REPO, assert_no_temp_files, temp_files
from vitlens_cli.embedding import embed_files, load_embeddings, save_embeddings
from vitlens_cli.models import load_model

TRIALS = 20
PARALLEL = 10
SEED = 20260


def _inputs(folder: Path, count: int) -> list[Path]:
    rng = np.random.default_rng(3)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        paths.append(folder / f"s{i}.npy")
        np.save(paths[-1], rng.standard_normal((3000, 3)).astype(np.float32))
    return paths


def _start(args: list) -> subprocess.Popen:
    # fp32: rows of the same files compare to 1e-6 whatever else runs (bf16 kernels need not be bit-stable).
    return subprocess.Popen([sys.executable, "-m", "vitlens_cli", "embed", "--precision", "fp32", *map(str, args)],
                            cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("kill")
    files = _inputs(root / "in", 8)
    prev_dir, new_dir = root / "prev", root / "new"
    prev_dir.mkdir()
    new_dir.mkdir()
    start = time.monotonic()
    assert _start([*files[:2], "--out", new_dir / "e.npy"]).wait(timeout=300) == 0
    assert _start([*files, "--out", prev_dir / "e.npy"]).wait(timeout=300) == 0
    runtime = (time.monotonic() - start) / 2
    # prev: the 8-file run stands for "an earlier output"; new: what the interrupted run (2 files) writes.
    prev, new = load_embeddings(prev_dir / "e.npy"), load_embeddings(new_dir / "e.npy")
    return root, files, prev_dir, prev, new, runtime


def _state(out: Path, prev, new) -> str:
    saved = load_embeddings(out)  # raises on a torn or inconsistent pair
    for name, ref in (("previous", prev), ("new", new)):
        if saved.manifest["items"] == ref.manifest["items"]:
            np.testing.assert_allclose(saved.embeddings, ref.embeddings, rtol=0, atol=1e-6)
            return name
    raise AssertionError(f"{out}: a pair that is neither the previous nor the new output")


def test_sigkill_at_random_moments_never_tears_the_pair(setup):
    root, files, prev_dir, prev, new, runtime = setup
    rng = np.random.default_rng(SEED)
    # Spread over the whole run, start-up included; a little past its end catches the final writes.
    delays = rng.uniform(0.2, 1.15, TRIALS) * runtime * 1.5  # runs slow down when PARALLEL share the cores
    seen = []
    for batch in range(0, TRIALS, PARALLEL):
        procs = []
        for trial in range(batch, min(batch + PARALLEL, TRIALS)):
            folder = root / f"trial{trial}"
            shutil.copytree(prev_dir, folder)
            procs.append((folder, _start([*files[:2], "--out", folder / "e.npy"]), delays[trial]))
        t0 = time.monotonic()
        for folder, proc, delay in sorted(procs, key=lambda p: p[2]):
            time.sleep(max(0.0, delay - (time.monotonic() - t0)))
            proc.send_signal(signal.SIGKILL)
        for folder, proc, _ in procs:
            proc.wait(timeout=60)
            seen.append(_state(folder / "e.npy", prev, new))
    assert len(seen) == TRIALS
    # The next write over each folder (the writer `embed --out` uses, fed the new run's result) completes
    # cleanly and leaves no temporary file of the killed run.
    model = load_model("tiny")
    result = embed_files(model, files[:2])
    for trial in range(TRIALS):
        folder = root / f"trial{trial}"
        save_embeddings(result, folder / "e.npy")
        assert _state(folder / "e.npy", prev, new) == "new"
        assert_no_temp_files(folder)


def test_sigint_leaves_the_previous_or_the_new_pair_and_no_temp_file(setup):
    root, files, prev_dir, prev, new, runtime = setup
    folder = root / "sigint"
    shutil.copytree(prev_dir, folder)
    proc = _start([*files[:2], "--out", folder / "e.npy"])
    time.sleep(runtime * 0.8)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    stderr = proc.stderr.read().decode()
    assert "Traceback" not in stderr, stderr
    # 130 and one line while the command runs; 0 if it had finished; killed by the signal (-2) if it
    # arrived during interpreter start-up or shut-down, outside any command code.
    assert proc.returncode in (0, 130, -signal.SIGINT), (proc.returncode, stderr)
    if proc.returncode == 130 and stderr.strip():
        assert stderr.strip().splitlines() == ["error: embed: interrupted; earlier outputs are left as they were"]
    assert _state(folder / "e.npy", prev, new) in ("previous", "new")
    assert temp_files(folder) == []
