"""safe_extract(): malicious, broken or bomb archives are refused before anything is written; all-or-nothing."""
from __future__ import annotations

import io
import stat
import tarfile
import time
import warnings
import zipfile
from pathlib import Path

import pytest

from vitlens_cli.data.prepare.extract import ArchiveError, Budget, UnsafeArchiveError, archive_kind, safe_extract
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
    named_zip = tmp_path / "junk.zip"  # the name says zip; the content decides
    named_zip.write_bytes(b"definitely not an archive" * 40)
    with pytest.raises(ArchiveError, match="not a supported archive"):
        safe_extract(named_zip, tmp_path / "out1")
    truncated = tmp_path / "trunc.tar.gz"
    data = make_tar(tmp_path / "full.tar.gz", GOOD).read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArchiveError, match=r"trunc\.tar\.gz"):
        safe_extract(truncated, tmp_path / "out2")
    with pytest.raises(ArchiveError, match="not found"):
        safe_extract(tmp_path / "absent.zip", tmp_path / "out3")
    assert not any(p.name.startswith((".out", "out")) for p in tmp_path.iterdir())


# --- bad archives: one error naming the archive and the entry, nothing written ------------------------------


def _patch_zip_field(archive: Path, local_offset: int, central_offset: int, value: int, width: int = 2) -> None:
    """Overwrite one field of every local and central header (a real archive damaged the way a tool would)."""
    data = bytearray(archive.read_bytes())
    for signature, offset in ((b"PK\x03\x04", local_offset), (b"PK\x01\x02", central_offset)):
        at = data.find(signature)
        while at >= 0:
            data[at + offset:at + offset + width] = value.to_bytes(width, "little")
            at = data.find(signature, at + 4)
    archive.write_bytes(bytes(data))


def _zip_with(path: Path, entries: list[tuple[str, bytes]], compression: int = zipfile.ZIP_STORED) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate names some cases need
        with zipfile.ZipFile(path, "w", compression) as zf:
            for name, data in entries:
                zf.writestr(name, data)
    return path


def _bad_zip(kind: str, path: Path) -> tuple[Path, str, str]:
    """``(archive, entry named in the error, message fragment)``."""
    if kind == "encrypted":
        _zip_with(path, [("ok.txt", b"x"), ("secret.txt", b"y")])
        _patch_zip_field(path, 6, 8, 0x1)  # general-purpose flag bit 0: encrypted
        return path, "ok.txt", "encrypted"
    if kind == "deflate64":
        _zip_with(path, [("big.bin", b"z" * 1000)], zipfile.ZIP_DEFLATED)
        _patch_zip_field(path, 8, 10, 9)  # compression method 9
        return path, "big.bin", "deflate64"
    if kind == "duplicate":
        return _zip_with(path, [("a/x.txt", b"1"), ("a/y.txt", b"2"), ("a/x.txt", b"3")]), "a/x.txt", "duplicate"
    if kind == "duplicate-after-normalising":
        return _zip_with(path, [("a/x.txt", b"1"), ("./a//x.txt", b"3")]), "./a//x.txt", "duplicate"
    if kind == "file-folder-clash":
        return _zip_with(path, [("data", b"a file"), ("data/inner.txt", b"in a folder")]), "data", "folder"
    if kind == "long-name":
        name = "d/" + "n" * 300 + ".txt"
        return _zip_with(path, [("ok.txt", b"x"), (name, b"y")]), name, "255 bytes"
    if kind == "empty":
        return _zip_with(path, []), "", "no files"
    if kind == "only-folders":
        return _zip_with(path, [("a/", b""), ("a/b/", b"")]), "", "no files"
    raise AssertionError(kind)


BAD_ZIPS = ["encrypted", "deflate64", "duplicate", "duplicate-after-normalising", "file-folder-clash",
            "long-name", "empty", "only-folders"]


@pytest.mark.parametrize("kind", BAD_ZIPS)
def test_bad_zip_is_one_error_naming_archive_and_entry(tmp_path: Path, kind: str) -> None:
    archive, entry, fragment = _bad_zip(kind, tmp_path / "bad.zip")
    dest = tmp_path / "out"
    with pytest.raises(ArchiveError) as info:
        safe_extract(archive, dest)
    message = str(info.value)
    assert message.startswith(f"{archive}: ") and fragment in message
    if entry:
        assert info.value.entry == entry and repr(entry) in message
    _assert_untouched(tmp_path, dest, archive)


def test_duplicate_tar_entries_and_clash_are_refused(tmp_path: Path) -> None:
    dup = make_tar(tmp_path / "dup.tar", {"a.txt": b"1"})
    with tarfile.open(dup, "a") as tf:
        _add_file(tf, "a.txt", b"2")
    with pytest.raises(ArchiveError, match="duplicate") as info:
        safe_extract(dup, tmp_path / "out")
    assert info.value.entry == "a.txt"
    clash = make_tar(tmp_path / "clash.tar", {"x": b"file", "x/y": b"under x"})
    with pytest.raises(ArchiveError, match="folder") as info:
        safe_extract(clash, tmp_path / "out")
    assert info.value.entry == "x"
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clash.tar", "dup.tar"]


def test_repeated_folder_entries_are_harmless(tmp_path: Path) -> None:
    archive = _zip_with(tmp_path / "dirs.zip", [("a/", b""), ("a/", b""), ("a/f.txt", b"ok"), ("./", b"")])
    safe_extract(archive, tmp_path / "out")
    _assert_tree(tmp_path / "out", {"a/f.txt": b"ok"})


MIB = 1 << 20


def test_zip_bomb_is_refused_before_writing(tmp_path: Path) -> None:
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("bomb.bin", bytes(100 * MIB))
    assert archive.stat().st_size < 200_000  # 100 MiB from about 100 KiB
    start = time.perf_counter()
    with pytest.raises(ArchiveError, match="ratio above 200:1") as info:
        safe_extract(archive, tmp_path / "out")
    assert time.perf_counter() - start < 5  # refused from the listing, not after inflating 100 MiB to disk
    assert info.value.entry == "bomb.bin"
    _assert_untouched(tmp_path, tmp_path / "out", archive)


def test_overlapping_entry_zip_bomb_is_refused(tmp_path: Path) -> None:
    archive = _zip_with(tmp_path / "overlap.zip", [("a.bin", bytes(range(256)) * 64), ("b.bin", b"x")])
    data = bytearray(archive.read_bytes())
    central = data.find(b"PK\x01\x02")
    second = data.find(b"PK\x01\x02", central + 4)
    data[second + 42:second + 46] = data[central + 42:central + 46]  # b's local-header offset := a's
    archive.write_bytes(bytes(data))
    with pytest.raises(ArchiveError, match="shares its data") as info:
        safe_extract(archive, tmp_path / "out")
    assert info.value.entry == "b.bin"


def test_tar_gz_bomb_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "bomb.tar.gz"
    with tarfile.open(archive, "w:gz", compresslevel=9) as tf:
        info = tarfile.TarInfo("zeros.bin")
        info.size = 100 * MIB
        tf.addfile(info, io.BytesIO(bytes(info.size)))
    assert archive.stat().st_size < 500_000
    with pytest.raises(ArchiveError, match="an archive bomb") as err:
        safe_extract(archive, tmp_path / "out")
    assert err.value.entry == "zeros.bin"
    _assert_untouched(tmp_path, tmp_path / "out", archive)


@pytest.mark.parametrize("budget, fragment", [(Budget(max_entries=2), "more than 2 entries"),
                                              (Budget(max_bytes=1000), "more than 1000 bytes")])
@pytest.mark.parametrize("name", ["good.zip", "good.tar"])
def test_budget_limits_entries_and_bytes(tmp_path: Path, name: str, budget: Budget, fragment: str) -> None:
    archive = tmp_path / name
    make_zip(archive, GOOD) if name.endswith(".zip") else make_tar(archive, GOOD)
    with pytest.raises(ArchiveError, match=fragment):
        safe_extract(archive, tmp_path / "out", budget=budget)
    _assert_untouched(tmp_path, tmp_path / "out", archive)
    safe_extract(archive, tmp_path / "out")  # the default budget takes the same archive
    _assert_tree(tmp_path / "out", GOOD)


def test_html_page_saved_as_zip_is_named_as_such(tmp_path: Path) -> None:
    page = tmp_path / "h5_files.zip"
    page.write_bytes(b"\n<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body>login</body></html>")
    with pytest.raises(ArchiveError, match="HTML page") as info:
        archive_kind(page)
    assert str(page) in str(info.value)
    empty = tmp_path / "empty.zip"
    empty.write_bytes(b"")
    with pytest.raises(ArchiveError, match="empty file"):
        safe_extract(empty, tmp_path / "out")


def test_content_decides_the_kind_not_the_name(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "actually_a_zip.tar.gz", GOOD)
    assert archive_kind(archive) == "zip"
    safe_extract(archive, tmp_path / "out")
    _assert_tree(tmp_path / "out", GOOD)
    gz = tmp_path / "plain.tar.gz"
    gz.write_bytes(b"\x1f\x8b" + b"not really gzip" * 10)
    with pytest.raises(ArchiveError, match=r"plain\.tar\.gz: corrupt or truncated"):
        safe_extract(gz, tmp_path / "out2")


def test_non_regular_archive_is_refused_without_opening(tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "pipe.zip"
    os.mkfifo(fifo)
    with pytest.raises(ArchiveError, match="not a regular file"):
        safe_extract(fifo, tmp_path / "out")  # opening it would block until a writer came


# --- failures during extraction ---------------------------------------------------------------------------


def test_corrupt_entry_data_leaves_no_dest(tmp_path: Path) -> None:
    archive = _zip_with(tmp_path / "crc.zip", [("first.txt", b"intact"), ("second.bin", b"A" * 4000)])
    data = bytearray(archive.read_bytes())
    at = data.find(b"A" * 4000)
    data[at + 2000] ^= 0xFF  # a flipped byte: the stored CRC-32 no longer matches
    archive.write_bytes(bytes(data))
    with pytest.raises(ArchiveError, match="corrupt") as info:
        safe_extract(archive, tmp_path / "out")
    assert info.value.entry == "second.bin"  # the first entry had been written, into the temp folder
    _assert_untouched(tmp_path, tmp_path / "out", archive)


def test_truncated_tar_leaves_no_dest(tmp_path: Path) -> None:
    full = make_tar(tmp_path / "full.tar", {"a.bin": b"a" * 3000, "b.bin": b"b" * 5000}).read_bytes()
    archive = tmp_path / "cut.tar"
    archive.write_bytes(full[:512 + 3072 + 512 + 1000])  # inside b.bin's data
    (tmp_path / "full.tar").unlink()
    with pytest.raises(ArchiveError, match=r"cut\.tar: .*truncated"):
        safe_extract(archive, tmp_path / "out")
    _assert_untouched(tmp_path, tmp_path / "out", archive)


@pytest.mark.parametrize("name", ["good.zip", "good.tar.gz"])
def test_interrupt_mid_extraction_leaves_no_dest_and_a_retry_completes(tmp_path: Path, name: str) -> None:
    archive = tmp_path / name
    make_zip(archive, GOOD) if name.endswith(".zip") else make_tar(archive, GOOD)
    dest = tmp_path / "out"
    seen: list[int] = []

    def interrupt_after_first_entry(done: int, total: int | None) -> None:
        seen.append(done)
        if done > 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        safe_extract(archive, dest, progress=interrupt_after_first_entry)
    assert seen == [0, len(GOOD["top/a.txt"])]  # one entry really was written, into the temp dir
    _assert_untouched(tmp_path, dest, archive)
    safe_extract(archive, dest)
    _assert_tree(dest, GOOD)


def test_unwritable_destination_is_an_archive_error(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "good.zip", GOOD)
    blocker = tmp_path / "file"
    blocker.write_text("a file where the destination's parent should be")
    with pytest.raises(ArchiveError, match="cannot write into") as info:
        safe_extract(archive, blocker / "out")
    assert str(archive) in str(info.value)
