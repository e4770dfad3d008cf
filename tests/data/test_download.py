"""download(): against a real HTTP server on 127.0.0.1 that can cut connections and ignore Range."""
from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path

import pytest

from vitlens_cli.data.prepare import download as download_mod
from vitlens_cli.data.prepare.download import DownloadError, download, part_path, sha256_file
from vitlens_cli.errors import VitlensError

from .conftest import ServerState

PAYLOAD = bytes(range(256)) * 400  # 102_400 bytes
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture
def server(http_server: tuple[str, ServerState]) -> tuple[str, ServerState]:
    http_server[1].files["/data.bin"] = PAYLOAD
    return http_server


def test_full_download_with_checksum(server: tuple[str, ServerState], tmp_path: Path) -> None:
    base, state = server
    seen: list[tuple[int, int | None]] = []
    dest = tmp_path / "sub" / "data.bin"
    out = download(f"{base}/data.bin", dest, PAYLOAD_SHA, progress=lambda d, t: seen.append((d, t)))
    assert out == dest
    assert dest.read_bytes() == PAYLOAD
    assert not part_path(dest).exists()
    assert seen[-1] == (len(PAYLOAD), len(PAYLOAD))
    assert state.requests == [("/data.bin", None)]
    assert sha256_file(dest) == PAYLOAD_SHA


def test_download_without_checksum(server: tuple[str, ServerState], tmp_path: Path) -> None:
    base, _ = server
    dest = download(f"{base}/data.bin", tmp_path / "data.bin")
    assert dest.read_bytes() == PAYLOAD


def test_checksum_mismatch_leaves_nothing(server: tuple[str, ServerState], tmp_path: Path) -> None:
    base, _ = server
    dest = tmp_path / "data.bin"
    wrong = "0" * 64
    with pytest.raises(DownloadError) as info:
        download(f"{base}/data.bin", dest, wrong)
    message = str(info.value)
    assert f"{base}/data.bin" in message and wrong in message and PAYLOAD_SHA in message
    assert isinstance(info.value, VitlensError)
    assert not dest.exists()
    assert not part_path(dest).exists()
    assert list(tmp_path.iterdir()) == []


def test_interrupted_download_is_resumed_by_next_call(server: tuple[str, ServerState], tmp_path: Path) -> None:
    base, state = server
    dest = tmp_path / "data.bin"
    state.cut_first = 1
    with pytest.raises(DownloadError, match="resume"):
        download(f"{base}/data.bin", dest, PAYLOAD_SHA, retries=0)
    assert not dest.exists()
    half = len(PAYLOAD) // 2
    assert part_path(dest).read_bytes() == PAYLOAD[:half]

    download(f"{base}/data.bin", dest, PAYLOAD_SHA)
    assert dest.read_bytes() == PAYLOAD
    assert not part_path(dest).exists()
    assert state.requests == [("/data.bin", None), ("/data.bin", f"bytes={half}-")]


def test_retries_resume_within_one_call(server: tuple[str, ServerState], tmp_path: Path) -> None:
    base, state = server
    dest = tmp_path / "data.bin"
    state.cut_first = 2  # full body cut at 1/2, then the resumed remainder cut at its half
    download(f"{base}/data.bin", dest, PAYLOAD_SHA, retries=3)
    assert dest.read_bytes() == PAYLOAD
    half = len(PAYLOAD) // 2
    three_quarters = half + (len(PAYLOAD) - half) // 2
    assert [r for _, r in state.requests] == [None, f"bytes={half}-", f"bytes={three_quarters}-"]


def test_server_ignoring_range_restarts_from_zero(server: tuple[str, ServerState], tmp_path: Path) -> None:
    base, state = server
    dest = tmp_path / "data.bin"
    part_path(dest).write_bytes(b"garbage that is not the start of the file")
    state.ignore_range = True
    download(f"{base}/data.bin", dest, PAYLOAD_SHA)
    assert dest.read_bytes() == PAYLOAD
    assert state.requests[0][1] is not None and state.requests[0][1].startswith("bytes=")
    assert len(state.requests) == 1


def test_complete_part_file_gets_416_and_is_verified(server: tuple[str, ServerState], tmp_path: Path) -> None:
    base, state = server
    dest = tmp_path / "data.bin"
    part_path(dest).write_bytes(PAYLOAD)  # e.g. a crash between the last byte and the rename
    download(f"{base}/data.bin", dest, PAYLOAD_SHA)
    assert dest.read_bytes() == PAYLOAD
    assert state.requests == [("/data.bin", f"bytes={len(PAYLOAD)}-")]


def test_second_call_is_idempotent_and_offline(server: tuple[str, ServerState], tmp_path: Path) -> None:
    base, state = server
    dest = tmp_path / "data.bin"
    download(f"{base}/data.bin", dest, PAYLOAD_SHA)
    mtime = os.stat(dest).st_mtime_ns
    assert len(state.requests) == 1
    assert download(f"{base}/data.bin", dest, PAYLOAD_SHA) == dest
    assert download(f"{base}/data.bin", dest) == dest
    assert len(state.requests) == 1
    assert os.stat(dest).st_mtime_ns == mtime


def test_existing_dest_with_wrong_checksum_is_replaced(server: tuple[str, ServerState], tmp_path: Path) -> None:
    base, state = server
    dest = tmp_path / "data.bin"
    dest.write_bytes(b"stale")
    download(f"{base}/data.bin", dest, PAYLOAD_SHA)
    assert dest.read_bytes() == PAYLOAD
    assert len(state.requests) == 1


def test_404_raises_download_error(server: tuple[str, ServerState], tmp_path: Path) -> None:
    base, state = server
    dest = tmp_path / "missing.bin"
    with pytest.raises(DownloadError, match=r"missing\.bin: HTTP 404"):
        download(f"{base}/missing.bin", dest, retries=3)
    assert len(state.requests) == 1  # a 404 is not retried
    assert not dest.exists() and not part_path(dest).exists()


def test_connection_refused_raises_after_retries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(download_mod, "_BACKOFF_S", 0.0)
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    with socket.socket() as sock:  # a port that was free a moment ago and has no listener now
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/x.bin"
    with pytest.raises(DownloadError, match="gave up after 2 attempt"):
        download(url, tmp_path / "x.bin", retries=1, timeout=2)
    assert not (tmp_path / "x.bin").exists()


LOGIN_PAGE = b"<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body><form>login</form></body></html>\n"


@pytest.mark.parametrize("content_type", ["text/html; charset=utf-8", "application/octet-stream"])
def test_html_page_is_refused_and_nothing_is_kept(server: tuple[str, ServerState], tmp_path: Path,
                                                  content_type: str) -> None:
    base, state = server
    state.files["/data.bin"] = LOGIN_PAGE  # what a server behind a sign-in wall sends with 200 OK
    state.content_types["/data.bin"] = content_type  # declared, or only recognisable from the body
    dest = tmp_path / "data.bin"
    with pytest.raises(DownloadError, match="HTML page") as info:
        download(f"{base}/data.bin", dest, retries=3)
    assert f"{base}/data.bin" in str(info.value)
    assert len(state.requests) == 1  # not retried: asking again gets the same page
    assert list(tmp_path.iterdir()) == []  # neither the file nor a .part to "resume" later

    state.files["/data.bin"] = PAYLOAD  # the server is fine now: the next call asks it again
    state.content_types.pop("/data.bin")
    download(f"{base}/data.bin", dest)
    assert dest.read_bytes() == PAYLOAD and len(state.requests) == 2


def test_body_without_content_length_is_read_to_the_end(server: tuple[str, ServerState], tmp_path: Path) -> None:
    base, state = server
    state.no_length.add("/data.bin")
    seen: list[tuple[int, int | None]] = []
    download(f"{base}/data.bin", tmp_path / "data.bin", progress=lambda d, t: seen.append((d, t)))
    assert (tmp_path / "data.bin").read_bytes() == PAYLOAD
    assert seen[-1] == (len(PAYLOAD), None)  # no length announced: progress has no total


def test_stalled_server_times_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(download_mod, "_BACKOFF_S", 0.0)
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    with socket.socket() as listener:  # accepts connections (the kernel's backlog) and never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/x.bin"
        with pytest.raises(DownloadError, match="timed out"):
            download(url, tmp_path / "x.bin", retries=1, timeout=0.5)
    assert not (tmp_path / "x.bin").exists()


def test_sha256_is_recorded_beside_the_download(server: tuple[str, ServerState], tmp_path: Path) -> None:
    import json

    from vitlens_cli.data.prepare.download import MANIFEST, recorded_sha256

    base, _ = server
    dest = download(f"{base}/data.bin", tmp_path / "data.bin")  # no checksum given: the one that arrived
    record = json.loads((tmp_path / MANIFEST).read_text())["files"]["data.bin"]
    assert record == {"url": f"{base}/data.bin", "sha256": PAYLOAD_SHA, "size": len(PAYLOAD)}
    assert recorded_sha256(dest) == PAYLOAD_SHA


def test_damaged_download_is_fetched_again_on_use(server: tuple[str, ServerState], tmp_path: Path) -> None:
    base, state = server
    dest = download(f"{base}/data.bin", tmp_path / "data.bin")
    dest.write_bytes(PAYLOAD[:-1] + b"\x00")  # same size, one byte off: only the recorded hash tells
    assert download(f"{base}/data.bin", dest) == dest
    assert dest.read_bytes() == PAYLOAD and len(state.requests) == 2


def test_unreadable_manifest_means_no_record(server: tuple[str, ServerState], tmp_path: Path) -> None:
    from vitlens_cli.data.prepare.download import MANIFEST, recorded_sha256

    base, state = server
    dest = download(f"{base}/data.bin", tmp_path / "data.bin")
    (tmp_path / MANIFEST).write_text("{not json")
    assert recorded_sha256(dest) is None
    assert download(f"{base}/data.bin", dest) == dest and len(state.requests) == 1  # kept, and recorded anew
    assert recorded_sha256(dest) == PAYLOAD_SHA
