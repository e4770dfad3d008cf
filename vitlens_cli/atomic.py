"""The one output writer: a reader sees the old file or the new one, never half of one.

Every file is written to a temporary file beside its target (``.<name>.<pid>-<random>.tmp``), flushed to disk
and renamed into place. A data file and its manifest are committed as one unit by :func:`write_pair`: the
manifest names the data file's sha256 and size and is renamed first, and only then the data file; a run killed
between the two renames leaves the new data staged under the name the manifest records, and
:func:`verify_pair` (or the next :func:`write_pair`) finishes that commit. So the folder always holds the
previous pair or the new one. Interrupts (SIGINT, SIGTERM, SIGHUP) are held back while the renames and the
clean-up run; temporary files of an earlier killed run are removed by the next write of the same target.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import signal
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .errors import VitlensError

_DEFERRED_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
# A file name may be 255 bytes; the temporary name adds a dot, the pid, randomness and ".tmp".
_MAX_STEM = 200


class OutputError(VitlensError, OSError):
    """An output cannot be written (or a written pair does not match). Also an ``OSError`` for older callers."""

    def __init__(self, path: object, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def _reason(exc: OSError) -> str:
    return (exc.strerror or str(exc)).lower() if exc.errno else str(exc)


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """Hold SIGINT/SIGTERM/SIGHUP until the block ends; they are delivered (and act) right after it.

    The Python-level handlers are swapped, not the thread's signal mask: a process signal may land on any
    of torch's threads, but Python always runs its handlers in the main thread, so this holds in all cases.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {}
    for sig in _DEFERRED_SIGNALS:
        with contextlib.suppress(ValueError, OSError):
            previous[sig] = signal.signal(sig, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sig in dict.fromkeys(received):
            signal.raise_signal(sig)


def _temp_prefix(name: str) -> str:
    return f".{name[:_MAX_STEM]}."


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def stale_temp_files(path: str | Path) -> list[Path]:
    """Temporary files of ``path`` left by writers that are no longer running (killed runs)."""
    path = Path(path)
    prefix = _temp_prefix(path.name)
    stale = []
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return []
    for entry in entries:
        name = entry.name
        if not (name.startswith(prefix) and name.endswith(".tmp")):
            continue
        pid_part = name[len(prefix):-len(".tmp")].split("-", 1)[0]
        if pid_part.isdigit() and _pid_alive(int(pid_part)):
            continue
        stale.append(Path(entry.path))
    return stale


def _clean_stale(path: Path, keep: set[str] = frozenset()) -> None:
    for tmp in stale_temp_files(path):
        if tmp.name not in keep:
            with contextlib.suppress(OSError):
                tmp.unlink()


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every file system lets a folder be opened or synced
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def check_writable(path: str | Path) -> Path:
    """Refuse, before any slow work, a target that :func:`write_atomic` could not create.

    The target must not be a folder, no part of its parent may be a regular file, and the nearest existing
    folder must accept a new file (probed by creating one, which also catches read-only mounts).
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(path, "is a folder; give a file name")
    folder = path.parent
    while True:
        try:
            st = folder.stat()
        except (FileNotFoundError, NotADirectoryError):  # created later; an ancestor may be a file
            folder = folder.parent
            continue
        except OSError as exc:
            raise OutputError(path, f"cannot use folder {folder} ({_reason(exc)})") from None
        if not stat.S_ISDIR(st.st_mode):
            raise OutputError(path, f"{folder} is a file, not a folder")
        break
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=f"{_temp_prefix(path.name)}{os.getpid()}-", suffix=".tmp")
    except OSError as exc:
        raise OutputError(path, f"folder {folder} is not writable ({_reason(exc)})") from None
    os.close(fd)
    os.unlink(probe)
    return path


def _mkstemp(path: Path) -> Path:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        check_writable(path)  # names the part of the path that is a file, or the folder that refuses
        raise OutputError(path, f"cannot create its folder ({_reason(exc)})") from None
    if path.is_dir():
        raise OutputError(path, "is a folder; give a file name")
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{_temp_prefix(path.name)}{os.getpid()}-",
                                   suffix=".tmp")
    except OSError as exc:
        raise OutputError(path, f"cannot write in {path.parent} ({_reason(exc)})") from None
    os.close(fd)
    # mkstemp creates 0600; give the file the mode a plain open() would (0666 less the umask).
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    return Path(tmp)


def _write_temp(path: Path, write: Callable[[Path], None]) -> Path:
    """``write`` into a fresh temporary file beside ``path``, flushed to disk; removed again on any failure."""
    tmp = _mkstemp(path)
    try:
        write(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException as exc:
        with deferred_signals():
            tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and not isinstance(exc, VitlensError):
            raise OutputError(path, f"cannot write ({_reason(exc)})") from None
        raise
    return tmp


def _replace(tmp: Path, path: Path) -> None:
    try:
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.errno in (errno.EISDIR, errno.ENOTEMPTY, errno.EEXIST):
            raise OutputError(path, "is a folder; give a file name") from None
        raise OutputError(path, f"cannot replace ({_reason(exc)})") from None


def write_atomic(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` on a temporary file next to ``path``, flush it and rename it into place."""
    path = Path(path)
    _clean_stale(path)
    tmp = _write_temp(path, write)
    with deferred_signals():
        _replace(tmp, path)
        _fsync_dir(path.parent)
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_atomic(path, lambda p: p.write_text(text, encoding="utf-8"))


def file_digest(path: str | Path) -> tuple[str, int]:
    """``(sha256 hex, size in bytes)`` of a file."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def write_pair(data_path: str | Path, write_data: Callable[[Path], None], manifest_path: str | Path,
               manifest: dict[str, Any] | Callable[[], dict[str, Any]]) -> tuple[Path, Path]:
    """Commit a data file and its JSON manifest as one unit.

    ``manifest`` (or what it returns, called once the data is written: a writer that streams learns its
    content as it goes) gets a ``"data"`` entry (file name, sha256, bytes, the staged name). The manifest is
    renamed into place first: from then on the new pair is committed, and the data file follows; a run killed
    in between is completed by :func:`verify_pair` or the next write. The previous pair stays intact until then.
    """
    data_path, manifest_path = Path(data_path), Path(manifest_path)
    if data_path.parent != manifest_path.parent:
        raise ValueError("a data file and its manifest must share a folder")
    _finish_pending(data_path, manifest_path)
    _clean_stale(data_path)
    _clean_stale(manifest_path)
    data_tmp = _write_temp(data_path, write_data)
    try:
        sha, size = file_digest(data_tmp)
        body = manifest() if callable(manifest) else manifest
        record = {**body, "data": {"file": data_path.name, "sha256": sha, "bytes": size, "staged": data_tmp.name}}
        man_tmp = _write_temp(manifest_path, lambda p: p.write_text(json.dumps(record, indent=2), encoding="utf-8"))
    except BaseException:
        with deferred_signals():
            data_tmp.unlink(missing_ok=True)
        raise
    with deferred_signals():
        try:
            if data_path.is_dir():
                raise OutputError(data_path, "is a folder; give a file name")
            _replace(man_tmp, manifest_path)
        except BaseException:
            data_tmp.unlink(missing_ok=True)
            man_tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(manifest_path.parent)
        _replace(data_tmp, data_path)
        _fsync_dir(data_path.parent)
    return data_path, manifest_path


def _read_manifest(manifest_path: Path) -> dict[str, Any]:
    try:
        record = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise OutputError(manifest_path, "no such manifest") from None
    except OSError as exc:
        raise OutputError(manifest_path, f"cannot read ({_reason(exc)})") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise OutputError(manifest_path, "not a JSON manifest") from None
    data = record.get("data") if isinstance(record, dict) else None
    if not (isinstance(data, dict) and isinstance(data.get("sha256"), str) and isinstance(data.get("bytes"), int)):
        raise OutputError(manifest_path, "manifest records no sha256 and size of its data file")
    return record


def _staged(data_path: Path, record: dict[str, Any]) -> Path | None:
    name = record["data"].get("staged")
    if not isinstance(name, str) or "/" in name or os.sep in name or not name.startswith(
            _temp_prefix(data_path.name)) or not name.endswith(".tmp"):
        return None
    return data_path.parent / name


def _matches(path: Path, record: dict[str, Any]) -> bool:
    try:
        if path.stat().st_size != record["data"]["bytes"]:
            return False
        return file_digest(path)[0] == record["data"]["sha256"]
    except OSError:
        return False


def _finish_pending(data_path: Path, manifest_path: Path) -> None:
    """Complete a commit that a killed run left between its two renames (quietly: nothing to do is normal)."""
    try:
        record = _read_manifest(manifest_path)
    except OutputError:
        return
    staged = _staged(data_path, record)
    if staged is None or not staged.exists() or _matches(data_path, record) or not _matches(staged, record):
        return
    with deferred_signals():
        with contextlib.suppress(OSError):
            os.replace(staged, data_path)
            _fsync_dir(data_path.parent)


def verify_pair(data_path: str | Path, manifest_path: str | Path) -> dict[str, Any]:
    """The manifest of a pair written by :func:`write_pair`, after checking the data file against it.

    A commit cut short between its two renames is finished first. A data file whose sha256 or size differs
    from its manifest's record is an :class:`OutputError`.
    """
    data_path, manifest_path = Path(data_path), Path(manifest_path)
    _finish_pending(data_path, manifest_path)
    record = _read_manifest(manifest_path)
    if not data_path.is_file():
        raise OutputError(data_path, f"missing: its manifest {manifest_path.name} describes a file that is not there")
    if not _matches(data_path, record):
        raise OutputError(data_path, f"does not match its manifest {manifest_path.name} (sha256 or size differs); "
                                     "the pair is from different runs")
    return record
