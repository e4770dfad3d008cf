"""Building: add skips unchanged files and replaces changed ones; a killed build resumes to the same index;
two torchrun ranks and two local workers build the same index as one process."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from vitlens_cli.errors import VitlensError
from vitlens_cli.retrieval import Index, IndexStoreError

from .conftest import fixture_inputs

REPO = Path(__file__).resolve().parents[2]
BUILD = ["-m", "vitlens_cli", "index", "build", "--model", "tiny", "--modality", "3d", "--shard-files", "3",
         "--device", "cpu"]


def _env() -> dict[str, str]:
    # One thread everywhere: the 1-process reference and each rank then run the same float operations.
    return {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".lock"}


@pytest.fixture(scope="module")
def reference(fixtures, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reference") / "index"
    res = subprocess.run([sys.executable, *BUILD, *fixture_inputs(fixtures), "--out", str(out)], cwd=REPO,
                         env=_env(), capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    return out


def test_killed_build_keeps_its_shards_and_resumes_to_the_same_index(fixtures, reference, tmp_path):
    out = tmp_path / "index"
    proc = subprocess.Popen([sys.executable, *BUILD, *fixture_inputs(fixtures), "--out", str(out)], cwd=REPO,
                            env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        if len(list((out / "shards").glob("shard-*.parquet"))) >= 2:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "index.json").exists(), "the build finished before it could be killed"
    kept = sorted(p.name for p in (out / "shards").glob("shard-*.parquet"))
    assert len(kept) >= 2
    with pytest.raises(IndexStoreError, match="interrupted build"):
        Index(out)
    res = subprocess.run([sys.executable, *BUILD, *fixture_inputs(fixtures), "--out", str(out), "--json"],
                         cwd=REPO, env=_env(), capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads(res.stdout)["reused_shards"] >= len(kept)
    assert _files(out) == _files(reference)


@pytest.mark.skipif(not __import__("torch").distributed.is_available(), reason="torch.distributed is not available")
def test_two_torchrun_ranks_build_the_same_index_as_one_process(fixtures, reference, tmp_path):
    out = tmp_path / "index"
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          *BUILD, *fixture_inputs(fixtures), "--out", str(out)], cwd=REPO, env=_env(),
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("built ") == 1  # only rank 0 reports
    assert _files(out) == _files(reference)


def test_local_workers_build_the_same_index(fixtures, reference, tmp_path):
    out = tmp_path / "index"
    res = subprocess.run([sys.executable, *BUILD, *fixture_inputs(fixtures), "--out", str(out), "--workers", "2"],
                         cwd=REPO, env=_env(), capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    assert _files(out) == _files(reference)


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan that exited may wait unreaped under a container's init)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def _pool_workers(pid: int) -> list[int]:
    found = []
    for child in _children(pid):
        try:
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.append(child)
        except OSError:
            pass
    return found


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc to find the workers")
def test_workers_end_when_the_build_process_is_killed(fixtures, tmp_path):
    out = tmp_path / "index"
    proc = subprocess.Popen([sys.executable, *BUILD, *fixture_inputs(fixtures), "--out", str(out), "--workers", "2",
                             "--shard-files", "1"], cwd=REPO, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    workers: list[int] = []
    while time.monotonic() < deadline and proc.poll() is None:
        # Both workers have loaded the model (and so installed their watch) once shards are being written.
        if any((out / "shards").glob("shard-*.parquet")) and len(workers := _pool_workers(proc.pid)) == 2:
            break
        time.sleep(0.05)
    assert len(workers) == 2, "the build ended before its two workers could be seen"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(_running(w) for w in workers):
        time.sleep(0.1)
    alive = [w for w in workers if _running(w)]
    for w in alive:
        os.kill(w, signal.SIGKILL)
    assert not alive, "workers outlived the killed build"


def test_add_skips_unchanged_files_and_replaces_changed_ones(fixtures, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for name in ("chair_0002.off", "toilet_0001.off", "airplane_0001.resampled.txt"):
        shutil.copy(fixtures / "meshes" / name, data / name)
    index = Index.build([data / "chair_0002.off", data / "toilet_0001.off"], tmp_path / "index", shard_files=1)
    before = index.frame().set_index("path")
    report = index.add([data])
    assert (report.unchanged_files, report.replaced_files, report.embedded_rows) == (2, 0, 1)
    assert index.rows == 3
    # Same content under the same path: the old row stays, byte for byte the same embedding.
    np.testing.assert_array_equal(index.embeddings()[:2], Index(tmp_path / "index").embeddings()[:2])
    shutil.copy(fixtures / "meshes" / "airplane_0002.off", data / "chair_0002.off")
    report = index.add([data])
    assert (report.unchanged_files, report.replaced_files, report.embedded_rows) == (2, 1, 1)
    after = index.frame().set_index("path")
    chair = str((data / "chair_0002.off").absolute())
    assert index.rows == 3 and after.index.is_unique
    assert after.loc[chair, "sha256"] != before.loc[chair, "sha256"]
    assert index.search(file=data / "chair_0002.off", k=1)["path"].iloc[0] == chair
    assert len(list((tmp_path / "index" / "shards").iterdir())) == len(index.record.shards)


def test_a_folder_of_other_files_is_refused(tmp_path, fixtures):
    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(IndexStoreError, match="not an index"):
        Index.build([fixtures / "meshes" / "chair_0002.off"], tmp_path)
    assert (tmp_path / "notes.txt").read_text(encoding="utf-8") == "mine"


def test_an_index_keeps_its_model(tmp_path, fixtures):
    shape = fixtures / "meshes" / "chair_0002.off"
    index = Index.build([shape], tmp_path / "index")
    with pytest.raises(VitlensError, match="was built with model 'tiny'"):
        Index.build([shape], tmp_path / "index", model="tiny-rgb")
    with pytest.raises(VitlensError, match="other weights"):
        index.model("tiny-rgb")
