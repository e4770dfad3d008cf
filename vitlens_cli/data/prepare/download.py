"""Resumable, checksummed downloads with nothing but the standard library.

``download`` streams into ``<dest>.part``, resumes it with an HTTP ``Range`` request after an interruption,
verifies the SHA-256 when one is given and only then renames the file into place, so ``dest`` is either
absent or complete and verified. An HTML page served in place of the file (a login or error page) is
refused and nothing of it is kept. Every socket operation has a time-out, so nothing waits forever.
The SHA-256 of every file downloaded is recorded in ``downloads.json`` beside it and checked whenever the
file is used again; a file that no longer matches is fetched anew.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from vitlens_cli.atomic import write_text_atomic
from vitlens_cli.errors import VitlensError

from .extract import looks_like_html

__all__ = ["DownloadError", "MANIFEST", "download", "forget", "part_path", "recorded_sha256", "sha256_file"]

MANIFEST = "downloads.json"  # beside the downloads: {"files": {name: {"url", "sha256", "size"}}}

_CHUNK = 1 << 20
# Seconds to wait before retry ``n`` is ``_BACKOFF_S * 2 ** (n - 1)``, capped at ``_BACKOFF_MAX_S``.
_BACKOFF_S = 1.0
_BACKOFF_MAX_S = 30.0
_USER_AGENT = "vitlens-cli"
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", re.IGNORECASE)
_UNSATISFIED_RANGE = re.compile(r"bytes\s+\*/(\d+)", re.IGNORECASE)
_HTML = "the server sent an HTML page (a login or error page?) instead of the file; nothing was kept"


class DownloadError(VitlensError):
    """A file could not be downloaded, or what arrived is not what was expected."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"{url}: {reason}")
        self.url = url
        self.reason = reason


class _Retryable(Exception):
    """A transient failure: the ``.part`` file is kept and the transfer is tried again."""


def sha256_file(path: str | Path, *, chunk_size: int = _CHUNK) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk_size), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_manifest(folder: Path) -> dict:
    try:
        data = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):  # none yet, or unreadable: no file has a record, each is hashed and recorded anew
        return {"files": {}}
    files = data.get("files") if isinstance(data, dict) else None
    return {"files": {k: v for k, v in files.items() if isinstance(v, dict)}} if isinstance(files, dict) else {"files": {}}


def recorded_sha256(dest: str | Path) -> str | None:
    """The SHA-256 recorded when ``dest`` was downloaded (None when it has no record)."""
    dest = Path(dest)
    sha = _read_manifest(dest.parent)["files"].get(dest.name, {}).get("sha256")
    return sha if isinstance(sha, str) else None


def _record(dest: Path, url: str, sha256: str) -> None:
    manifest = _read_manifest(dest.parent)
    manifest["files"][dest.name] = {"url": url, "sha256": sha256, "size": dest.stat().st_size}
    write_text_atomic(dest.parent / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def forget(dest: str | Path) -> None:
    """Delete a download, its ``.part`` and its record (the manifest goes with its last record)."""
    dest = Path(dest)
    dest.unlink(missing_ok=True)
    part_path(dest).unlink(missing_ok=True)
    manifest = _read_manifest(dest.parent)
    if manifest["files"].pop(dest.name, None) is None:
        return
    if manifest["files"]:
        write_text_atomic(dest.parent / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    else:
        (dest.parent / MANIFEST).unlink(missing_ok=True)


def part_path(dest: str | Path) -> Path:
    """Where ``download`` keeps the partial file for ``dest``."""
    dest = Path(dest)
    return dest.with_name(dest.name + ".part")


def download(
    url: str,
    dest: Path,
    sha256: str | None = None,
    *,
    progress: Callable[[int, int | None], None] | None = None,
    timeout: float = 60,
    retries: int = 3,
) -> Path:
    """Download ``url`` to ``dest`` and return ``dest``.

    * If ``dest`` already exists and matches ``sha256`` (or, none given, the SHA-256 recorded when it was
      downloaded; or it has no record) nothing is fetched. The file's SHA-256 is then (and after every download)
      recorded in the folder's ``downloads.json``.
    * Bytes go to ``dest.part``; an existing ``.part`` is resumed with ``Range: bytes=N-``. A server that
      answers ``200`` instead of ``206`` ignored the range, and the transfer restarts from zero.
    * Connection errors, time-outs and 5xx replies are retried up to ``retries`` times, resuming each time;
      after the last one a :class:`DownloadError` is raised and the ``.part`` is kept for a later call.
    * A checksum mismatch deletes the ``.part`` and raises :class:`DownloadError` naming both digests.
    * A reply that is an HTML page (``Content-Type: text/html``, or a body that starts like one) raises
      :class:`DownloadError` and leaves no ``.part``: it is never the file, and keeping it would make every
      later call fail on it.
    * ``progress(done_bytes, total_bytes_or_None)`` is called as bytes arrive.
    """
    dest = Path(dest)
    expected = sha256.strip().lower() if sha256 else None
    if dest.is_file():
        recorded = recorded_sha256(dest)
        have = sha256_file(dest)
        if have == (expected or recorded) or (expected is None and recorded is None):
            if have != recorded:
                _record(dest, url, have)
            return dest
    if dest.exists() and not dest.is_file():
        raise DownloadError(url, f"destination {dest} exists and is not a regular file")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(dest)

    attempt = 0
    while True:
        try:
            _fetch_into(url, part, progress=progress, timeout=timeout)
            break
        except _Retryable as exc:
            if attempt >= retries:
                have = part.stat().st_size if part.exists() else 0
                raise DownloadError(
                    url,
                    f"{exc} (gave up after {attempt + 1} attempt(s); {have} bytes kept in {part}, "
                    "run again to resume)",
                ) from exc.__cause__
            attempt += 1
            time.sleep(min(_BACKOFF_S * 2 ** (attempt - 1), _BACKOFF_MAX_S))

    got = sha256_file(part)
    if expected is not None and got != expected:
        part.unlink(missing_ok=True)
        raise DownloadError(url, f"SHA-256 mismatch: expected {expected}, got {got} (partial file deleted)")
    os.replace(part, dest)
    _record(dest, url, got)
    return dest


def _fetch_into(
    url: str, part: Path, *, progress: Callable[[int, int | None], None] | None, timeout: float
) -> None:
    """One transfer attempt into ``part``; returns when the body is complete, raises ``_Retryable`` otherwise."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        with exc:
            if exc.code == 416 and offset:
                _handle_unsatisfiable(url, part, offset, exc.headers.get("Content-Range"))
                return
            if exc.code >= 500 or exc.code in (408, 429):
                raise _Retryable(f"HTTP {exc.code} {exc.reason}") from exc
            raise DownloadError(url, f"HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise _Retryable(f"connection failed: {reason}") from exc

    with response:
        status = getattr(response, "status", None) or 200
        if (response.headers.get("Content-Type") or "").split(";")[0].strip().lower() in ("text/html",
                                                                                         "application/xhtml+xml"):
            part.unlink(missing_ok=True)
            raise DownloadError(url, _HTML)
        length_header = response.headers.get("Content-Length")
        length = int(length_header) if length_header and length_header.isdigit() else None
        if offset and status == 206:
            match = _CONTENT_RANGE.match(response.headers.get("Content-Range") or "")
            if match is None or int(match.group(1)) != offset:
                # A range we did not ask for: start again cleanly rather than splice bytes.
                part.unlink(missing_ok=True)
                raise _Retryable(f"server answered an unexpected range {response.headers.get('Content-Range')!r}")
            total = int(match.group(3)) if match.group(3) != "*" else None
            mode = "ab"
        else:
            # 200 (server ignored Range, or there was nothing to resume): the body is the whole file.
            offset = 0
            total = length
            mode = "wb"
        expected_end = offset + length if length is not None else total

        done = offset
        if progress is not None:
            progress(done, total)
        try:
            fh = open(part, mode)
        except OSError as exc:
            raise DownloadError(url, f"cannot write {part}: {exc}") from exc
        with fh:
            while True:
                try:
                    block = response.read(_CHUNK)
                except (http.client.HTTPException, OSError) as exc:
                    raise _Retryable(f"connection lost after {done} bytes: {exc!r}") from exc
                if not block:
                    break
                if done == 0 and looks_like_html(block[:512]):
                    fh.close()
                    part.unlink(missing_ok=True)
                    raise DownloadError(url, _HTML)
                try:
                    fh.write(block)
                except OSError as exc:
                    raise DownloadError(url, f"cannot write {part}: {exc}") from exc
                done += len(block)
                if progress is not None:
                    progress(done, total)
    if expected_end is not None and done < expected_end:
        raise _Retryable(f"connection closed after {done} of {expected_end} bytes")
    if expected_end is not None and done > expected_end:
        part.unlink(missing_ok=True)
        raise _Retryable(f"received {done} bytes, more than the announced {expected_end}")


def _handle_unsatisfiable(url: str, part: Path, offset: int, content_range: str | None) -> None:
    """``416`` on resume: the ``.part`` is either already complete or longer than the file."""
    match = _UNSATISFIED_RANGE.match(content_range or "")
    if match is not None and int(match.group(1)) == offset:
        return  # nothing left to fetch; the checksum (if any) decides
    part.unlink(missing_ok=True)
    raise _Retryable(f"cannot resume from byte {offset} (HTTP 416); restarting from zero")
