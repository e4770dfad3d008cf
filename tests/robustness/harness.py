"""Run the CLI as a hostile user would and check that it fails cleanly.

Every robustness case goes through :func:`invoke` (in-process, bounded by SIGALRM) or :func:`run` (a real
subprocess, bounded by a timeout: for hangs, signals and anything that must not share the test process), then
asserts with :func:`assert_clean_failure` / :func:`assert_no_temp_files` / :class:`Snapshot`.
"""
from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[2]
TEMP_PATTERNS = ("*.tmp", ".*.tmp", "*.partial", "*.part")


@dataclass
class Outcome:
    exit_code: int
    stdout: str
    stderr: str
    exception: BaseException | None = None

    @property
    def lines(self) -> list[str]:
        return [ln for ln in self.stderr.splitlines() if ln.strip()]


class CaseTimeout(AssertionError):
    pass


@contextmanager
def _alarm(seconds: float) -> Iterator[None]:
    def _fire(signum, frame):  # noqa: ARG001
        raise CaseTimeout(f"command did not finish within {seconds} s")

    previous = signal.signal(signal.SIGALRM, _fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextmanager
def as_nobody() -> Iterator[None]:
    """Root ignores file permissions; an effective uid of nobody makes them hold for this process."""
    if os.geteuid() != 0:
        yield
        return
    os.setegid(65534)
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


def invoke(args: Sequence[str], *, timeout: float = 60, input: str | None = None) -> Outcome:
    """``vitlens ARGS`` in this process through Typer's CliRunner, stdout and stderr apart."""
    from vitlens_cli.cli.app import app

    runner = CliRunner()
    with _alarm(timeout):
        res = runner.invoke(app, [str(a) for a in args], input=input, catch_exceptions=True)
    exc = res.exception
    if isinstance(exc, CaseTimeout):
        raise exc
    if isinstance(exc, SystemExit):
        exc = None
    return Outcome(res.exit_code, res.stdout, res.stderr, exc)


def run(args: Sequence[str], *, timeout: float = 120, env: dict[str, str] | None = None,
        cwd: Path | None = None) -> Outcome:
    """``python -m vitlens_cli ARGS`` in a subprocess; a hang fails the case instead of the suite."""
    full_env = {**os.environ, **(env or {})}
    try:
        proc = subprocess.run([sys.executable, "-m", "vitlens_cli", *map(str, args)], capture_output=True,
                              text=True, timeout=timeout, env=full_env, cwd=cwd, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise CaseTimeout(f"vitlens {' '.join(map(str, args))} did not finish within {timeout} s") from exc
    return Outcome(proc.returncode, proc.stdout, proc.stderr)


def assert_clean_failure(outcome: Outcome, *, exit_code: int, names: str | Sequence[str] = (),
                         prefix: str = "error:") -> str:
    """The documented exit code, no traceback, and exactly one ``prefix`` line that names each of ``names``.

    Returns that line. Raw control characters (ESC, NUL) must never reach the terminal.
    """
    names = [names] if isinstance(names, str) else list(names)
    assert outcome.exception is None, f"uncaught {type(outcome.exception).__name__}: {outcome.exception}"
    text = outcome.stdout + outcome.stderr
    assert "Traceback (most recent call last)" not in text, text
    assert outcome.exit_code == exit_code, f"exit {outcome.exit_code}, expected {exit_code}:\n{text}"
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", text.replace("\r", "")), f"control bytes echoed: {text!r}"
    hits = [ln for ln in outcome.lines if ln.startswith(prefix)]
    assert len(hits) == 1, f"expected one {prefix!r} line, got {hits!r}:\n{outcome.stderr}"
    for name in names:
        assert name in hits[0], f"{name!r} not named in {hits[0]!r}"
    return hits[0]


def temp_files(folder: Path) -> list[Path]:
    found: set[Path] = set()
    for pattern in TEMP_PATTERNS:
        found.update(folder.rglob(pattern))
    return sorted(found)


def assert_no_temp_files(folder: Path) -> None:
    left = temp_files(folder)
    assert not left, f"temporary files left behind: {left}"


class Snapshot:
    """The bytes of every file under a folder, to show a failed command changed nothing."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.files = self._read(folder)

    @staticmethod
    def _read(folder: Path) -> dict[str, str]:
        return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()}

    def assert_unchanged(self, *, ignore: Sequence[str] = ()) -> None:
        now = {k: v for k, v in self._read(self.folder).items() if k not in ignore}
        before = {k: v for k, v in self.files.items() if k not in ignore}
        assert now == before, f"files changed under {self.folder}"
