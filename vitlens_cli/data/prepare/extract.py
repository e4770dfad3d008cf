"""Safe, bounded, all-or-nothing archive extraction.

``safe_extract`` lists and checks every entry before writing a byte: unsafe paths, links and devices,
duplicate names, a name that is both a file and a folder, names the file system cannot hold, encrypted or
unsupported-compression zip entries, and an extraction budget (total bytes, entry count, compression ratio,
free disk space) that stops archive bombs. It then writes the entries itself (regular files and folders only)
into a hidden sibling directory and renames that into place, so ``dest`` is either absent or complete.
"""
from __future__ import annotations

import gzip
import lzma
import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from vitlens_cli.errors import VitlensError, os_reason

__all__ = ["ArchiveError", "Budget", "UnsafeArchiveError", "archive_kind", "looks_like_html", "safe_extract"]

_CHUNK = 1 << 20
_CORRUPT = (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, lzma.LZMAError, gzip.BadGzipFile, OSError)
# zip compression methods zipfile can read, and names for the common ones it cannot.
_ZIP_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
_ZIP_METHOD_NAMES = {9: "deflate64", 10: "PKWARE implode", 93: "zstandard", 95: "xz", 96: "JPEG", 97: "WavPack",
                     98: "PPMd", 6: "implode", 1: "shrink"}
_ZIP_AES = 99  # WinZip AES encryption is recorded as a compression method
# A ratio limit only means something once an entry is big enough to hurt.
_RATIO_FLOOR = 1 << 20
_MAGIC = ((b"PK\x03\x04", "zip"), (b"PK\x05\x06", "zip"), (b"PK\x07\x08", "zip"), (b"\x1f\x8b", "r:gz"),
          (b"\xfd7zXZ\x00", "r:xz"), (b"BZh", "r:bz2"))


@dataclass(frozen=True)
class Budget:
    """What one extraction may write. Real releases stay far inside it (ModelNet40's zip expands about 3:1)."""

    max_bytes: int = 256 << 30
    max_entries: int = 2_000_000
    max_ratio: float = 200.0


class ArchiveError(VitlensError):
    """An archive cannot be read or extracted; ``entry`` names the entry at fault when there is one."""

    def __init__(self, archive: object, reason: str, entry: str | None = None) -> None:
        super().__init__(f"{archive}: {reason}")
        self.archive = archive
        self.reason = reason
        self.entry = entry


class UnsafeArchiveError(ArchiveError):
    """An archive entry would write outside the destination or create a link or device."""

    def __init__(self, archive: object, entry: str, reason: str) -> None:
        super().__init__(archive, f"refusing unsafe entry {entry!r}: {reason}", entry)


def looks_like_html(head: bytes) -> bool:
    """True for the start of an HTML page (what a login or error page served in place of a file is)."""
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return text.startswith((b"<!doctype html", b"<html", b"<head", b"<body", b"<!--"))


def _sniff(archive: Path) -> str | None:
    try:
        with open(archive, "rb") as fh:
            head = fh.read(512)
    except OSError as exc:
        raise ArchiveError(archive, f"cannot read ({os_reason(exc, archive)})") from None
    if not head:
        raise ArchiveError(archive, "empty file, not an archive")
    if looks_like_html(head):
        raise ArchiveError(archive, "is an HTML page (a login or error page?), not an archive; download the "
                                    "file itself")
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "r:"
    return None


def archive_kind(archive: str | Path) -> str:
    """``"zip"`` or a ``tarfile`` read mode (``"r:gz"``…), from the content (a file's name can lie)."""
    archive = Path(archive)
    kind = _sniff(archive)
    if kind is not None:
        return kind
    try:
        if tarfile.is_tarfile(archive):  # old (pre-POSIX) tar headers have no magic
            return "r:"
    except OSError:
        pass
    raise ArchiveError(archive, "not a supported archive (.zip, .tar, .tar.gz/.tgz, .tar.xz, .tar.bz2)")


def safe_extract(archive: Path, dest: Path, *, progress: Callable[[int, int | None], None] | None = None,
                 budget: Budget = Budget()) -> Path:
    """Extract ``archive`` into the directory ``dest`` and return ``dest``.

    Refuses (:class:`ArchiveError` / :class:`UnsafeArchiveError` naming the entry; nothing written) an archive
    that breaks a rule in the module docstring. If ``dest`` already exists it is taken as a complete earlier
    extraction and returned as is. ``progress(done_bytes, total_bytes)`` is called after each entry.
    """
    archive, dest = Path(archive), Path(dest)
    if dest.exists():
        if not dest.is_dir():
            raise ArchiveError(archive, f"destination {dest} exists and is not a directory")
        return dest
    try:
        st = os.stat(archive)
    except OSError as exc:
        raise ArchiveError(archive, "archive not found" if isinstance(exc, FileNotFoundError)
                           else os_reason(exc, archive)) from None
    if not stat.S_ISREG(st.st_mode):
        raise ArchiveError(archive, "not a regular file")
    kind = archive_kind(archive)
    try:
        if kind == "zip":
            with zipfile.ZipFile(archive) as zf:
                entries = _zip_entries(archive, zf, st.st_size, budget)
                _check_space(archive, dest, entries)
                return _into_place(archive, dest, lambda tmp: _write_all(
                    archive, tmp, entries, lambda e: zf.open(e.info), progress))
        with tarfile.open(archive, kind) as tf:
            entries = _tar_entries(archive, tf, st.st_size, budget)
            _check_space(archive, dest, entries)
            return _into_place(archive, dest, lambda tmp: _write_all(
                archive, tmp, entries, lambda e: _tar_stream(archive, tf, e), progress))
    except _CORRUPT as exc:
        if isinstance(exc, OSError) and not isinstance(exc, (EOFError, gzip.BadGzipFile)) and exc.errno:
            raise ArchiveError(archive, f"cannot read ({os_reason(exc, archive)})") from None
        raise ArchiveError(archive, f"corrupt or truncated archive ({_first_line(exc)})") from None


@dataclass
class _Entry:
    name: str  # as stored in the archive, for messages
    parts: tuple[str, ...]  # normalised path below the destination
    is_dir: bool
    size: int
    info: object  # ZipInfo or TarInfo


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _parts(archive: Path, name: str) -> tuple[str, ...]:
    if not name or "\x00" in name:
        raise UnsafeArchiveError(archive, name, "empty name or NUL byte")
    unified = name.replace("\\", "/")
    if unified.startswith("/") or PurePosixPath(unified).is_absolute():
        raise UnsafeArchiveError(archive, name, "absolute path")
    first = unified.split("/", 1)[0]
    if len(first) >= 2 and first[1] == ":":
        raise UnsafeArchiveError(archive, name, "absolute path (drive letter)")
    parts = tuple(p for p in unified.split("/") if p not in ("", "."))
    if ".." in parts:
        raise UnsafeArchiveError(archive, name, "'..' component escapes the destination")
    for part in parts:
        if len(os.fsencode(part)) > 255:
            raise ArchiveError(archive, f"entry {name!r}: a name in its path is longer than 255 bytes, which "
                                        "file systems cannot hold", name)
    if len(os.fsencode("/".join(parts))) > 3800:  # PATH_MAX is 4096, and the destination needs room too
        raise ArchiveError(archive, f"entry {name!r}: path longer than 3800 bytes", name)
    return parts


def _plan(archive: Path, entries: Iterable[_Entry], archive_size: int, budget: Budget) -> list[_Entry]:
    """Duplicates, file/folder clashes and the budget, checked as entries are listed (a bomb stops early)."""
    kept: list[_Entry] = []
    seen: dict[tuple[str, ...], _Entry] = {}
    total = 0
    for entry in entries:
        if len(kept) >= budget.max_entries:
            raise ArchiveError(archive, f"more than {budget.max_entries} entries (the extraction limit)", entry.name)
        if not entry.parts:
            if entry.is_dir:
                continue  # "./": the destination itself
            raise UnsafeArchiveError(archive, entry.name, "a file without a name")
        other = seen.get(entry.parts)
        if other is not None and not (other.is_dir and entry.is_dir):
            raise ArchiveError(archive, f"entry {entry.name!r}: duplicate of entry {other.name!r}", entry.name)
        seen[entry.parts] = entry
        total += entry.size
        if total > budget.max_bytes:
            raise ArchiveError(archive, f"entry {entry.name!r}: the archive expands to more than "
                                        f"{_size(budget.max_bytes)} (the extraction limit)", entry.name)
        if total > _RATIO_FLOOR and total > budget.max_ratio * max(archive_size, 1):
            raise ArchiveError(archive, f"entry {entry.name!r}: expands {_size(total)} or more from "
                                        f"{_size(archive_size)}, a ratio above {budget.max_ratio:.0f}:1 "
                                        "(an archive bomb?)", entry.name)
        kept.append(entry)
    if not any(not e.is_dir for e in kept):
        raise ArchiveError(archive, "the archive holds no files")
    folders = {e.parts[:i] for e in kept for i in range(1, len(e.parts))}
    for entry in kept:
        if not entry.is_dir and entry.parts in folders:
            raise ArchiveError(archive, f"entry {entry.name!r} is a file, but other entries need a folder of that "
                                        "name", entry.name)
    return kept


def _size(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _zip_entries(archive: Path, zf: zipfile.ZipFile, archive_size: int, budget: Budget) -> list[_Entry]:
    def listed() -> Iterable[_Entry]:
        offsets: dict[int, str] = {}
        for info in zf.infolist():
            parts = _parts(archive, info.filename)
            mode = info.external_attr >> 16
            if mode:  # a unix mode is recorded (archives made on Windows have none: plain files and folders)
                if stat.S_ISLNK(mode):
                    raise UnsafeArchiveError(archive, info.filename, "symbolic link")
                if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                    raise UnsafeArchiveError(archive, info.filename, "device file")
                if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
                    raise UnsafeArchiveError(archive, info.filename, "fifo or socket")
            if info.flag_bits & 0x1 or info.compress_type == _ZIP_AES:
                raise ArchiveError(archive, f"entry {info.filename!r} is encrypted; password-protected archives "
                                            "are not supported (extract it yourself and pass the folder)",
                                   info.filename)
            if info.compress_type not in _ZIP_METHODS:
                method = _ZIP_METHOD_NAMES.get(info.compress_type, f"method {info.compress_type}")
                raise ArchiveError(archive, f"entry {info.filename!r} uses {method} compression, which is not "
                                            "supported (re-pack with deflate, or extract it yourself and pass the "
                                            "folder)", info.filename)
            if not info.is_dir():
                if info.header_offset in offsets:
                    raise ArchiveError(archive, f"entry {info.filename!r} shares its data with "
                                                f"{offsets[info.header_offset]!r} (an overlapping-entry bomb?)",
                                       info.filename)
                offsets[info.header_offset] = info.filename
                if info.file_size > _RATIO_FLOOR and info.file_size > budget.max_ratio * max(info.compress_size, 1):
                    raise ArchiveError(archive, f"entry {info.filename!r} expands {_size(info.file_size)} from "
                                                f"{_size(info.compress_size)}, a ratio above "
                                                f"{budget.max_ratio:.0f}:1 (an archive bomb?)", info.filename)
            yield _Entry(info.filename, parts, info.is_dir(), 0 if info.is_dir() else info.file_size, info)

    return _plan(archive, listed(), archive_size, budget)


def _tar_entries(archive: Path, tf: tarfile.TarFile, archive_size: int, budget: Budget) -> list[_Entry]:
    def listed() -> Iterable[_Entry]:
        for member in tf:  # lazily: the budget can stop a bomb before the rest is decompressed
            parts = _parts(archive, member.name)
            if member.issym():
                raise UnsafeArchiveError(archive, member.name, f"symbolic link (-> {member.linkname!r})")
            if member.islnk():
                raise UnsafeArchiveError(archive, member.name, f"hard link (-> {member.linkname!r})")
            if member.ischr() or member.isblk():
                raise UnsafeArchiveError(archive, member.name, "device file")
            if member.isfifo():
                raise UnsafeArchiveError(archive, member.name, "fifo")
            if not (member.isfile() or member.isdir()):
                raise UnsafeArchiveError(archive, member.name, f"unsupported entry type {member.type!r}")
            yield _Entry(member.name, parts, member.isdir(), member.size if member.isfile() else 0, member)

    return _plan(archive, listed(), archive_size, budget)


def _tar_stream(archive: Path, tf: tarfile.TarFile, entry: _Entry) -> BinaryIO:
    stream = tf.extractfile(entry.info)  # type: ignore[arg-type]
    if stream is None:  # only for non-files, which were refused above
        raise ArchiveError(archive, f"entry {entry.name!r} has no data", entry.name)
    return stream


def _check_space(archive: Path, dest: Path, entries: list[_Entry]) -> None:
    need = sum(e.size for e in entries)
    folder = dest.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return  # the write itself will say what is wrong
    if need > free:
        raise ArchiveError(archive, f"needs {_size(need)} to extract, but {folder} has {_size(free)} free")


def _into_place(archive: Path, dest: Path, fill: Callable[[Path], None]) -> Path:
    """Run ``fill(tmp_dir)`` in a hidden sibling of ``dest``, then rename it to ``dest``; clean up on failure."""
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".extracting"))
    except OSError as exc:
        raise ArchiveError(archive, f"cannot write into {dest.parent} ({os_reason(exc)})") from None
    try:
        fill(tmp)
        try:
            os.rename(tmp, dest)
        except OSError as exc:
            if dest.is_dir():  # another process finished the same extraction first
                return dest
            raise ArchiveError(archive, f"cannot create {dest} ({os_reason(exc)})") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _write_all(archive: Path, tmp: Path, entries: list[_Entry], open_entry: Callable[[_Entry], BinaryIO],
               progress: Callable[[int, int | None], None] | None) -> None:
    total = sum(e.size for e in entries)
    done = 0
    if progress is not None:
        progress(done, total)
    for entry in entries:
        target = tmp.joinpath(*entry.parts)
        try:
            if entry.is_dir:
                target.mkdir(parents=True, exist_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                _copy(archive, entry, open_entry(entry), target)
        except ArchiveError:
            raise
        except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, lzma.LZMAError, gzip.BadGzipFile,
                ValueError) as exc:
            raise ArchiveError(archive, f"entry {entry.name!r}: corrupt or truncated data ({_first_line(exc)})",
                               entry.name) from None
        except OSError as exc:
            raise ArchiveError(archive, f"entry {entry.name!r}: cannot write it ({os_reason(exc)})",
                               entry.name) from None
        done += entry.size
        if progress is not None:
            progress(done, total)


def _copy(archive: Path, entry: _Entry, source: BinaryIO, target: Path) -> None:
    written = 0
    with source, open(target, "xb") as out:
        while True:
            block = source.read(_CHUNK)
            if not block:
                break
            written += len(block)
            if written > entry.size:  # never more than the listing promised (the budget was checked on it)
                raise ArchiveError(archive, f"entry {entry.name!r} holds more data than its header says",
                                   entry.name)
            out.write(block)
    if written != entry.size:
        raise ArchiveError(archive, f"entry {entry.name!r}: truncated data ({written} of {entry.size} bytes)",
                           entry.name)

