"""SIGKILL `vitlens prepare` at seeded random moments: the cache is the previous complete one or the new one.

Each trial starts from either no cache or a complete cache of release A (a synthetic ScanObjectNN h5 release
of 150 clouds, as a folder), runs ``prepare scanobjectnn --from B.zip`` (320 other clouds in a zip: extraction,
conversion into 5 shards and the commit) and kills it with SIGKILL after a random delay drawn over the length
of an uninterrupted run. Then the cache folder must hold exactly the previous state or exactly B's cache
(every shard loads, index.json consistent with them), never a mix, and a re-run must complete with B's cache
and leave no temporary file. Synthetic clouds keep each run short (no FPS), so 20 trials fit in about a minute.

``prepare`` itself is real: a small zygote process imports vitlens once (torch takes seconds to import) and
forks one child per run, which calls the ``vitlens`` command; the zygote, being the child's parent, is the
one to kill it, so the signal can never reach a reused pid.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import select
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.robustness.harness import REPO, temp_files

TRIALS = 20
SEED = 20260
SHARD_SIZE = 64  # five shards for B: kills land between shard writes, not only before or after one
RUN_LIMIT_S = 60.0
CACHE = "scanobjectnn-pb_t50_rs"

ZYGOTE = r"""
import gc, json, os, signal, sys, time
import h5py, vitlens_cli.cli.app, vitlens_cli.data.prepare.pipeline  # the slow imports, once
from vitlens_cli.data import cache
gc.freeze()  # the collector would touch every imported object in each child: copy-on-write of all of them
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    req = json.loads(line)
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        cache.SHARD_SIZE = req["shard_size"]
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.dup2(null, 2)
        from vitlens_cli.cli.app import app
        try:
            app(req["argv"])
        except SystemExit as exc:
            os._exit(exc.code if isinstance(exc.code, int) else 1)
        os._exit(0)
    deadline = start + req["kill_after"]
    status = None
    while status is None:
        done, st = os.waitpid(pid, os.WNOHANG)
        if done:
            status = st
        elif time.monotonic() >= deadline:
            os.kill(pid, signal.SIGKILL)  # still our unreaped child: the pid cannot have been reused
            status = os.waitpid(pid, 0)[1]
        else:
            time.sleep(0.002)
    killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
    print(json.dumps({"killed": killed, "code": code, "seconds": time.monotonic() - start}), flush=True)
"""


class Zygote:
    def __init__(self) -> None:
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        self.proc = subprocess.Popen([sys.executable, "-c", ZYGOTE], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     cwd=REPO, env=env)
        self._buffer = b""
        assert self._read(120)["ready"]

    def _read(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.proc.stdout], [], [], max(left, 0))
            if not ready:
                raise AssertionError(f"the prepare zygote did not answer within {timeout} s")
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                raise AssertionError(f"the prepare zygote exited (code {self.proc.wait()})")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def prepare(self, root: Path, release: Path, *, kill_after: float = RUN_LIMIT_S) -> dict:
        """``vitlens prepare scanobjectnn --from release --root root``, SIGKILLed after ``kill_after`` seconds."""
        argv = ["prepare", "scanobjectnn", "--from", str(release), "--root", str(root)]
        request = {"argv": argv, "kill_after": kill_after, "shard_size": SHARD_SIZE}
        self.proc.stdin.write((json.dumps(request) + "\n").encode())
        self.proc.stdin.flush()
        return self._read(RUN_LIMIT_S + 30)

    def close(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def zygote() -> Iterator[Zygote]:
    z = Zygote()
    try:
        yield z
    finally:
        z.close()


def cache_state(dest: Path) -> tuple[tuple[str, ...], str] | None:
    """What a reader finds at ``dest``: None (no committed cache) or (names, digest of points and labels).

    Read with numpy and json only; any inconsistency between index.json and the shards fails the trial.
    """
    index_path = dest / "index.json"
    if not index_path.exists():
        return None
    index = json.loads(index_path.read_text())
    names: list[str] = []
    digest = hashlib.sha256()
    for shard in index["shards"]:
        n = shard["count"]
        points = np.load(dest / shard["points"])
        labels = np.load(dest / shard["labels"])
        shard_names = json.loads((dest / shard["names"]).read_text())
        assert points.shape == (n, index["num_points"], index["channels"]) and points.dtype == np.float32, shard
        assert labels.shape == (n,) and len(shard_names) == n, shard
        digest.update(points.tobytes())
        digest.update(labels.tobytes())
        names.extend(shard_names)
    assert len(names) == index["count"], "index.json count differs from its shards"
    return tuple(names), digest.hexdigest()


def _h5_release(folder: Path, n: int, seed: int) -> Path:
    """A synthetic ScanObjectNN release: the official layout and label order, random clouds."""
    import h5py

    rng = np.random.default_rng(seed)
    path = folder / "h5_files" / "main_split" / "test_objectdataset_augmentedrot_scale75.h5"
    path.parent.mkdir(parents=True)
    with h5py.File(path, "w") as fh:
        fh["data"] = rng.normal(size=(n, 2048, 3)).astype(np.float32)
        fh["label"] = rng.integers(0, 15, n).astype(np.int64)
    return folder / "h5_files"


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Release A: a folder of 150 clouds; release B: a zip of 320 other clouds."""
    base = tmp_path_factory.mktemp("releases")
    release_a = _h5_release(base / "a", 150, seed=1)
    tree_b = _h5_release(base / "b", 320, seed=2)
    archive = base / "h5_files.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        for path in sorted(tree_b.rglob("*")):
            zf.write(path, path.relative_to(tree_b.parent).as_posix())
    return release_a, archive


def test_sigkill_leaves_previous_or_new_cache_and_a_rerun_completes(zygote: Zygote, releases: tuple[Path, Path],
                                                                      tmp_path: Path) -> None:
    release_a, release_b = releases
    reference_a = tmp_path / "reference-a"
    assert zygote.prepare(reference_a, release_a)["code"] == 0
    state_a = cache_state(reference_a / CACHE)
    reference_b = tmp_path / "reference-b"
    shutil.copytree(reference_a, reference_b)
    full = zygote.prepare(reference_b, release_b)  # a rebuild over A: the longest run a trial can kill
    assert full["code"] == 0 and not full["killed"]
    state_b = cache_state(reference_b / CACHE)
    assert state_a is not None and state_b is not None and len(state_a[0]) == 150 and len(state_b[0]) == 320

    rng = random.Random(SEED)
    outcomes = {"killed": 0, "previous": 0, "new": 0}
    for trial in range(TRIALS):
        root = tmp_path / f"trial-{trial:02d}"
        previous = state_a if trial % 2 == 0 else None
        if previous is not None:
            shutil.copytree(reference_a, root)
        delay = rng.uniform(0.0, full["seconds"])
        run = zygote.prepare(root, release_b, kill_after=delay)
        assert run["killed"] or run["code"] == 0, (trial, run)
        found = cache_state(root / CACHE)
        assert found in (previous, state_b), f"trial {trial}: killed after {delay:.3f} s left a torn cache"
        outcomes["killed"] += run["killed"]
        outcomes["previous" if found == previous else "new"] += 1

        again = zygote.prepare(root, release_b)
        assert again["code"] == 0 and not again["killed"], (trial, again)
        assert cache_state(root / CACHE) == state_b
        assert not temp_files(root), temp_files(root)  # no .partial, .part or .tmp once a run completed
        assert not list((root / "_sources").glob(".*.extracting"))
        shutil.rmtree(root)
    # The delays fall inside a run as long as the reference run (runs without a previous cache are shorter):
    # the trials must really kill, or they prove nothing. A loaded machine shifts the split: a loose bound.
    assert outcomes["killed"] >= TRIALS // 4, outcomes
