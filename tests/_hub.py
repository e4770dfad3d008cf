"""A Hugging Face Hub-compatible HTTP server on 127.0.0.1, for huggingface_hub downloads in tests.

It answers HEAD/GET ``resolve/`` for model repos (``/<owner>/<name>/resolve/<rev>/<file>``) or dataset repos
(``/datasets/<owner>/<name>/resolve/<rev>/<file>``) with ``X-Repo-Commit`` and the body's sha256 as ``ETag``
(or a lying one from ``etags``), and logs every request with its ``Authorization`` header.
"""
from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import NamedTuple

import pytest

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class Request(NamedTuple):
    method: str
    path: str
    auth: str | None


class Hub(BaseHTTPRequestHandler):
    """The server's handler; each server gets a subclass of its own, so its state starts empty."""

    prefix: str  # "" for model repos, "/datasets" for dataset repos: only the one kind is served
    files: dict[str, bytes]  # "<owner>/<name>/<file>" -> body
    etags: dict[str, str]  # same keys: an ETag that is not the body's sha256 (a lying or corrupting mirror)
    requests: list[Request]

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def _key(self) -> str | None:
        if not self.path.startswith(self.prefix + "/"):
            return None
        owner, name, resolve, _revision, filename = (self.path[len(self.prefix) + 1:].split("/", 4) + [""] * 5)[:5]
        return f"{owner}/{name}/{filename}" if resolve == "resolve" else None

    def _answer(self, method: str) -> bytes | None:
        self.requests.append(Request(method, self.path, self.headers.get("Authorization")))
        key = self._key()
        body = None if key is None else self.files.get(key)
        self.send_response(404 if body is None else 200)
        self.send_header("X-Repo-Commit", COMMIT)
        if body is None:
            self.send_header("X-Error-Code", "EntryNotFound")
            self.send_header("Content-Length", "0")
        else:
            self.send_header("ETag", f'"{self.etags.get(key) or hashlib.sha256(body).hexdigest()}"')
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        return body

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer("HEAD")

    def do_GET(self) -> None:  # noqa: N802
        body = self._answer("GET")
        if body is not None:
            self.wfile.write(body)


@contextlib.contextmanager
def running_hub(monkeypatch: pytest.MonkeyPatch, *, datasets: bool = False) -> Iterator[tuple[type[Hub], str]]:
    """A server of model repos (or ``datasets`` repos): the handler class (its ``files``, ``etags``,
    ``requests``) and the endpoint URL, with no proxy in the way and no ``HF_TOKEN`` of the machine sent."""
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy", "HF_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    handler = type("LocalHub", (Hub,), {"prefix": "/datasets" if datasets else "", "files": {}, "etags": {},
                                          "requests": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield handler, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
