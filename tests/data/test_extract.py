"""safe_extract(): malicious zip/tar archives are refused before anything is written; extraction is all-or-nothing."""
from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from vitlens_cli.data.prepare.extract import ArchiveError, UnsafeArchiveError, safe_extract
from vitlens_cli.errors import VitlensError

GOOD = {"top/a.txt": b"alpha", "top/sub/b.bin": bytes(range(256)) * 10, "c.txt": b"gamma"}


def _add_file(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


def make_tar(path: Path, files: dict[str, bytes], extra: list[tarfile.TarInfo] = ()) -> Path:
    mode = {".gz": "w:gz", ".tgz": "w:gz", ".xz": "w:xz"}.get(path.suffix, "w")
    with tarfile.open(path, mode) as tf:
        for name, data in files.items():
            _add_file(tf, name, data)
        for info in extra:
            tf.addfile(info)
    return path


def make_zip(path: Path, files: dict[str, bytes], extra: list[tuple[zipfile.ZipInfo, bytes]] = ()) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        for info, data in extra:
            zf.writestr(info, data)
    return path


def _tarinfo(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


def _assert_tree(root: Path, files: dict[str, bytes]) -> None:
    got = {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    assert got == files


def _assert_untouched(tmp_path: Path, dest: Path, archive: Path) -> None:
    assert not dest.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [archive.name]  # no temp dir left behind either


# --- malicious archives ---------------------------------------------------------------------------------

TAR_ATTACKS = {
    "dotdot": ({"ok.txt": b"x", "../escape.txt": b"evil"}, []),
    "nested-dotdot": ({"a/../../escape.txt": b"evil"}, []),
    "absolute": ({"ok.txt": b"x", "/abs/path.txt": b"evil"}, []),
    "symlink": ({"ok.txt": b"x"}, [_tarinfo("link", tarfile.SYMTYPE, "/etc/passwd")]),
    "hardlink": ({"ok.txt": b"x"}, [_tarinfo("hard", tarfile.LNKTYPE, "ok.txt")]),
    "chardev": ({"ok.txt": b"x"}, [_tarinfo("dev", tarfile.CHRTYPE)]),
    "blockdev": ({"ok.txt": b"x"}, [_tarinfo("blk", tarfile.BLKTYPE)]),
    "fifo": ({"ok.txt": b"x"}, [_tarinfo("pipe", tarfile.FIFOTYPE)]),
}


@pytest.mark.parametrize("suffix", [".tar", ".tar.gz"])
@pytest.mark.parametrize("attack", sorted(TAR_ATTACKS))
def test_malicious_tar_is_refused(tmp_path: Path, attack: str, suffix: str) -> None:
    files, extra = TAR_ATTACKS[attack]
    archive = make_tar(tmp_path / f"bad{suffix}", files, extra)
    dest = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError) as info:
        safe_extract(archive, dest)
    assert str(archive) in str(info.value)
    bad_entry = next(iter(extra)).name if extra else next(n for n in files if n != "ok.txt")
    assert info.value.entry == bad_entry and repr(bad_entry) in str(info.value)
    assert isinstance(info.value, VitlensError)
    _assert_untouched(tmp_path, dest, archive)
    assert not (tmp_path / "escape.txt").exists()


def _zip_symlink(name: str, target: str) -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info, target.encode()


def _zip_fifo(name: str) -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFIFO | 0o644) << 16
    return info, b""


ZIP_ATTACKS = {
    "dotdot": ({"ok.txt": b"x", "../escape.txt": b"evil"}, [], "../escape.txt"),
    "backslash-dotdot": ({"..\\escape.txt": b"evil"}, [], "..\\escape.txt"),
    "absolute": ({"ok.txt": b"x", "/abs/path.txt": b"evil"}, [], "/abs/path.txt"),
    "drive": ({"C:/windows/evil.txt": b"evil"}, [], "C:/windows/evil.txt"),
    "symlink": ({"ok.txt": b"x"}, [_zip_symlink("link", "/etc/passwd")], "link"),
    "fifo": ({"ok.txt": b"x"}, [_zip_fifo("pipe")], "pipe"),
}


@pytest.mark.parametrize("attack", sorted(ZIP_ATTACKS))
def test_malicious_zip_is_refused(tmp_path: Path, attack: str) -> None:
    files, extra, bad_entry = ZIP_ATTACKS[attack]
    archive = make_zip(tmp_path / "bad.zip", files, extra)
    dest = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError) as info:
        safe_extract(archive, dest)
    assert str(archive) in str(info.value) and repr(bad_entry) in str(info.value)
    assert info.value.entry == bad_entry
    _assert_untouched(tmp_path, dest, archive)


# --- good archives --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["good.zip", "good.tar", "good.tar.gz", "good.tgz", "good.tar.xz"])
def test_good_archive_extracts(tmp_path: Path, name: str) -> None:
    archive = tmp_path / name
    make_zip(archive, GOOD) if name.endswith(".zip") else make_tar(archive, GOOD)
    dest = tmp_path / "nested" / "out"
    seen: list[tuple[int, int | None]] = []
    assert safe_extract(archive, dest, progress=lambda d, t: seen.append((d, t))) == dest
    _assert_tree(dest, GOOD)
    total = sum(len(v) for v in GOOD.values())
    assert seen[0] == (0, total) and seen[-1] == (total, total)
    assert [p.name for p in dest.parent.iterdir()] == ["out"]  # the temp dir was renamed, not left behind


def test_existing_dest_is_not_re_extracted(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "good.tar", GOOD)
    dest = tmp_path / "out"
    safe_extract(archive, dest)
    (dest / "c.txt").write_bytes(b"edited by the user")
    archive.unlink()  # not even opened the second time
    assert safe_extract(archive, dest) == dest
    assert (dest / "c.txt").read_bytes() == b"edited by the user"


def test_dest_that_is_a_file_is_an_error(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "good.zip", GOOD)
    dest = tmp_path / "out"
    dest.write_text("not a dir")
    with pytest.raises(ArchiveError, match="not a directory"):
        safe_extract(archive, dest)


def test_unknown_and_corrupt_archives(tmp_path: Path) -> None:
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"definitely not an archive" * 40)
    with pytest.raises(ArchiveError, match="not a supported archive"):
        safe_extract(junk, tmp_path / "out1")
    truncated = tmp_path / "trunc.tar.gz"
    data = make_tar(tmp_path / "full.tar.gz", GOOD).read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArchiveError, match=r"trunc\.tar\.gz"):
        safe_extract(truncated, tmp_path / "out2")
    with pytest.raises(ArchiveError, match="not found"):
        safe_extract(tmp_path / "absent.zip", tmp_path / "out3")
    assert not any(p.name.startswith((".out", "out")) for p in tmp_path.iterdir())


# --- interrupted extraction -----------------------------------------------------------------------------


def test_failure_mid_zip_extraction_leaves_no_dest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = make_zip(tmp_path / "good.zip", GOOD)
    dest = tmp_path / "out"
    original = zipfile.ZipFile.extract
    calls: list[str] = []

    def flaky(self: zipfile.ZipFile, member: zipfile.ZipInfo, path: str | Path | None = None) -> str:
        calls.append(member.filename)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return original(self, member, path)

    monkeypatch.setattr(zipfile.ZipFile, "extract", flaky)
    with pytest.raises(OSError, match="No space left"):
        safe_extract(archive, dest)
    assert len(calls) == 2  # the first entry really was written, into the temp dir
    _assert_untouched(tmp_path, dest, archive)

    monkeypatch.undo()
    safe_extract(archive, dest)  # a retry then completes normally
    _assert_tree(dest, GOOD)


def test_failure_mid_tar_extraction_leaves_no_dest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = make_tar(tmp_path / "good.tar.gz", GOOD)
    dest = tmp_path / "out"
    original = tarfile.TarFile._extract_member
    calls: list[str] = []

    def flaky(self: tarfile.TarFile, tarinfo: tarfile.TarInfo, *args: object, **kwargs: object) -> None:
        calls.append(tarinfo.name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        original(self, tarinfo, *args, **kwargs)

    monkeypatch.setattr(tarfile.TarFile, "_extract_member", flaky)
    with pytest.raises(KeyboardInterrupt):
        safe_extract(archive, dest)
    assert len(calls) == 2
    _assert_untouched(tmp_path, dest, archive)


def test_progress_callback_interrupt_leaves_no_dest(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "good.tar", GOOD)
    dest = tmp_path / "out"

    def stop_after_first(done: int, total: int | None) -> None:
        if done > 0:
            raise RuntimeError("cancelled")

    with pytest.raises(RuntimeError, match="cancelled"):
        safe_extract(archive, dest, progress=stop_after_first)
    _assert_untouched(tmp_path, dest, archive)
