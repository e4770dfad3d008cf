"""The one output writer: temp file beside the target, fsync, rename; a data file and its manifest as one unit."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vitlens_cli.atomic import (OutputError, check_writable, file_digest, stale_temp_files, verify_pair,
                                write_atomic, write_pair, write_text_atomic)
from vitlens_cli.errors import VitlensError


def _temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_write_text_atomic_replaces_and_leaves_nothing(tmp_path):
    target = tmp_path / "sub" / "a.txt"
    write_text_atomic(target, "one")
    write_text_atomic(target, "two")
    assert target.read_text() == "two"
    assert _temps(target.parent) == []
    assert oct(target.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_failed_write_keeps_the_previous_file_and_removes_its_temp(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("previous")

    def boom(p: Path) -> None:
        p.write_text("half")
        raise KeyboardInterrupt  # what SIGINT raises in the middle of a write

    with pytest.raises(KeyboardInterrupt):
        write_atomic(target, boom)
    assert target.read_text() == "previous" and _temps(tmp_path) == []


def test_stale_temp_of_a_dead_writer_is_cleaned_on_the_next_write(tmp_path):
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(proc.stdout)
    stale = tmp_path / f".a.txt.{dead}-abc123.tmp"
    stale.write_text("left by a killed run")
    live = tmp_path / f".a.txt.{os.getppid()}-def456.tmp"  # a writer still running: not ours to remove
    live.write_text("in progress")
    other = tmp_path / f".b.txt.{dead}-abc123.tmp"  # another target's: untouched
    other.write_text("x")
    assert stale_temp_files(tmp_path / "a.txt") == [stale]
    write_text_atomic(tmp_path / "a.txt", "new")
    assert sorted(_temps(tmp_path)) == sorted([live.name, other.name])


@pytest.mark.parametrize("case", ["folder", "under_file", "read_only"])
def test_unwritable_targets_are_one_project_error(tmp_path, case):
    if case == "folder":
        target, fragment = tmp_path, "is a folder"
    elif case == "under_file":
        (tmp_path / "f").write_text("x")
        target, fragment = tmp_path / "f" / "deeper" / "out.npy", "is a file, not a folder"
    else:
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only folders; tests/robustness covers it as another user")
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        target, fragment = ro / "out.npy", "not writable"
    for call in (lambda: check_writable(target), lambda: write_text_atomic(target, "x")):
        with pytest.raises(OutputError, match=fragment) as err:
            call()
        assert isinstance(err.value, VitlensError) and isinstance(err.value, OSError)
        assert "\n" not in str(err.value)


def _pair(folder: Path, text: str) -> tuple[Path, Path]:
    return write_pair(folder / "d.bin", lambda p: p.write_text(text), folder / "d.bin.manifest.json", {"v": text})


def test_pair_records_sha256_and_verifies(tmp_path):
    data, man = _pair(tmp_path, "first")
    record = verify_pair(data, man)
    assert record["v"] == "first"
    assert (record["data"]["sha256"], record["data"]["bytes"]) == file_digest(data) == (
        __import__("hashlib").sha256(b"first").hexdigest(), 5)
    data.write_text("tampered")
    with pytest.raises(OutputError, match="does not match its manifest") as err:
        verify_pair(data, man)
    assert "\n" not in str(err.value)
    data.unlink()
    with pytest.raises(OutputError, match="missing"):
        verify_pair(data, man)


def test_pair_killed_between_its_renames_is_completed(tmp_path):
    """The manifest is renamed first; a kill before the data follows leaves it staged, and readers finish it."""
    _pair(tmp_path, "old")
    real_replace = os.replace
    calls = []

    def replace_then_die(src, dst):
        calls.append(dst)
        if len(calls) == 2:  # the data file's rename: the process "dies" here
            raise SystemExit("killed")
        real_replace(src, dst)

    os.replace = replace_then_die
    try:
        with pytest.raises(SystemExit):
            _pair(tmp_path, "new")
    finally:
        os.replace = real_replace
    assert (tmp_path / "d.bin").read_text() == "old"  # the data file itself is not yet replaced
    assert len(_temps(tmp_path)) == 1  # the staged new data
    assert verify_pair(tmp_path / "d.bin", tmp_path / "d.bin.manifest.json")["v"] == "new"
    assert (tmp_path / "d.bin").read_text() == "new" and _temps(tmp_path) == []


def test_manifest_without_a_record_is_refused(tmp_path):
    (tmp_path / "d.bin").write_text("x")
    (tmp_path / "d.bin.manifest.json").write_text(json.dumps({"rows": 1}))
    with pytest.raises(OutputError, match="records no sha256"):
        verify_pair(tmp_path / "d.bin", tmp_path / "d.bin.manifest.json")
    (tmp_path / "d.bin.manifest.json").write_bytes(b"\xff\xfe")
    with pytest.raises(OutputError, match="not a JSON manifest"):
        verify_pair(tmp_path / "d.bin", tmp_path / "d.bin.manifest.json")


def test_sigint_during_the_write_leaves_no_temp_and_the_previous_pair(tmp_path):
    _pair(tmp_path, "old")
    script = f"""
import os, signal, time
from pathlib import Path
from vitlens_cli.atomic import write_pair
def slow(p):
    p.write_text("partial")
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(5)
folder = Path({str(tmp_path)!r})
write_pair(folder / "d.bin", slow, folder / "d.bin.manifest.json", {{"v": "new"}})
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "KeyboardInterrupt" in proc.stderr
    assert _temps(tmp_path) == []
    assert verify_pair(tmp_path / "d.bin", tmp_path / "d.bin.manifest.json")["v"] == "old"
