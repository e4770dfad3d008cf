"""Safe, all-or-nothing archive extraction.

``safe_extract`` checks every entry before writing a byte, extracts into a hidden sibling directory and
renames that into place at the end, so ``dest`` is either absent or complete.
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
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath

from vitlens_cli.errors import VitlensError

__all__ = ["ArchiveError", "UnsafeArchiveError", "archive_kind", "safe_extract"]

_TAR_SUFFIXES = {
    ".tar": "r:",
    ".tar.gz": "r:gz",
    ".tgz": "r:gz",
    ".tar.xz": "r:xz",
    ".txz": "r:xz",
    ".tar.bz2": "r:bz2",
    ".tbz2": "r:bz2",
}
_CORRUPT = (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, lzma.LZMAError, gzip.BadGzipFile)


class ArchiveError(VitlensError):
    """An archive cannot be read or extracted."""

    def __init__(self, archive: object, reason: str) -> None:
        super().__init__(f"{archive}: {reason}")
        self.archive = archive
        self.reason = reason


class UnsafeArchiveError(ArchiveError):
    """An archive entry would write outside the destination or create a link or device."""

    def __init__(self, archive: object, entry: str, reason: str) -> None:
        super().__init__(archive, f"refusing unsafe entry {entry!r}: {reason}")
        self.entry = entry


def archive_kind(archive: str | Path) -> str:
    """``"zip"`` or a ``tarfile`` read mode (``"r:gz"``…), from the suffix, else from the content."""
    name = Path(archive).name.lower()
    if name.endswith(".zip"):
        return "zip"
    for suffix in sorted(_TAR_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return _TAR_SUFFIXES[suffix]
    if zipfile.is_zipfile(archive):
        return "zip"
    if tarfile.is_tarfile(archive):
        return "r:*"
    raise ArchiveError(archive, "not a supported archive (.zip, .tar, .tar.gz/.tgz, .tar.xz, .tar.bz2)")


def safe_extract(
    archive: Path, dest: Path, *, progress: Callable[[int, int | None], None] | None = None
) -> Path:
    """Extract ``archive`` into the directory ``dest`` and return ``dest``.

    Refuses (:class:`UnsafeArchiveError`, nothing written) archives with an entry that has an absolute path,
    a ``..`` component, or is a symlink, hard link, device or fifo. If ``dest`` already exists it is taken as
    a complete earlier extraction and returned as is. ``progress(done_bytes, total_bytes)`` is called after
    each entry.
    """
    archive, dest = Path(archive), Path(dest)
    if dest.exists():
        if not dest.is_dir():
            raise ArchiveError(archive, f"destination {dest} exists and is not a directory")
        return dest
    if not archive.is_file():
        raise ArchiveError(archive, "archive not found")
    kind = archive_kind(archive)
    try:
        if kind == "zip":
            with zipfile.ZipFile(archive) as zf:
                infos = zf.infolist()
                for info in infos:
                    _check_zip_entry(archive, info)
                total = sum(info.file_size for info in infos)
                return _into_place(dest, lambda tmp: _extract_zip(zf, infos, tmp, total, progress))
        with tarfile.open(archive, kind) as tf:
            members = tf.getmembers()
            for member in members:
                _check_tar_entry(archive, member)
            total = sum(m.size for m in members)
            return _into_place(dest, lambda tmp: _extract_tar(tf, members, tmp, total, progress))
    except _CORRUPT as exc:
        raise ArchiveError(archive, f"corrupt or truncated archive: {exc}") from exc


def _check_name(archive: Path, name: str) -> None:
    if not name or "\x00" in name:
        raise UnsafeArchiveError(archive, name, "empty name or NUL byte")
    unified = name.replace("\\", "/")
    if unified.startswith("/") or PurePosixPath(unified).is_absolute():
        raise UnsafeArchiveError(archive, name, "absolute path")
    first = unified.split("/", 1)[0]
    if len(first) >= 2 and first[1] == ":":
        raise UnsafeArchiveError(archive, name, "absolute path (drive letter)")
    if ".." in unified.split("/"):
        raise UnsafeArchiveError(archive, name, "'..' component escapes the destination")


def _check_tar_entry(archive: Path, member: tarfile.TarInfo) -> None:
    _check_name(archive, member.name)
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


def _check_zip_entry(archive: Path, info: zipfile.ZipInfo) -> None:
    _check_name(archive, info.filename)
    mode = info.external_attr >> 16
    if not mode:
        return  # no unix mode recorded (e.g. made on Windows): a plain file or directory
    if stat.S_ISLNK(mode):
        raise UnsafeArchiveError(archive, info.filename, "symbolic link")
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        raise UnsafeArchiveError(archive, info.filename, "device file")
    if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
        raise UnsafeArchiveError(archive, info.filename, "fifo or socket")


def _into_place(dest: Path, fill: Callable[[Path], None]) -> Path:
    """Run ``fill(tmp_dir)`` in a hidden sibling of ``dest``, then rename it to ``dest``; clean up on failure."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".extracting"))
    try:
        fill(tmp)
        try:
            os.rename(tmp, dest)
        except OSError:
            if dest.is_dir():  # another process finished the same extraction first
                return dest
            raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _extract_zip(
    zf: zipfile.ZipFile,
    infos: list[zipfile.ZipInfo],
    tmp: Path,
    total: int,
    progress: Callable[[int, int | None], None] | None,
) -> None:
    done = 0
    if progress is not None:
        progress(done, total)
    for info in infos:
        zf.extract(info, tmp)
        done += info.file_size
        if progress is not None:
            progress(done, total)


def _extract_tar(
    tf: tarfile.TarFile,
    members: list[tarfile.TarInfo],
    tmp: Path,
    total: int,
    progress: Callable[[int, int | None], None] | None,
) -> None:
    def reporting() -> Iterator[tarfile.TarInfo]:
        done = 0
        if progress is not None:
            progress(done, total)
        for member in members:
            yield member
            done += member.size
            if progress is not None:
                progress(done, total)

    if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4 / 3.10.12: defence in depth on top of our checks
        tf.extractall(tmp, members=reporting(), filter="data")
    else:  # pragma: no cover - older interpreters; every entry was already vetted
        tf.extractall(tmp, members=reporting())
