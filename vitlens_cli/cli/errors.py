"""Turn vitlens errors into one line on stderr and an exit code."""
from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import NoReturn, TypeVar

import typer

from ..errors import VitlensError
from .render import plain

T = TypeVar("T")
EXIT_FAILED_ITEMS = 1
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for an interrupted command


def fail(subject: object, reason: object) -> NoReturn:
    """Stop with the one-line ``error: <subject>: <reason>`` and exit code 2 (a bad option value, say)."""
    print(f"error: {plain(subject)}: {plain(reason)}", file=sys.stderr)
    raise typer.Exit(EXIT_ERROR)


def run_or_exit(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except VitlensError as exc:
        print(f"error: {plain(exc)}", file=sys.stderr)
        raise typer.Exit(EXIT_ERROR) from None


def check_device(torch, device: str) -> None:
    """``--device`` must name a device torch has here: cpu, cuda or cuda:N."""
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        fail("--device", f"unknown device '{device}'; use cpu, cuda or cuda:N")
    if dev.type not in ("cpu", "cuda"):
        fail("--device", f"unsupported device '{device}'; use cpu, cuda or cuda:N")
    if dev.type == "cuda" and not torch.cuda.is_available():
        fail("--device", "CUDA is not available on this machine")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        fail("--device", f"no CUDA device {dev.index} (this machine has {torch.cuda.device_count()})")


@contextlib.contextmanager
def interruptible(command: str) -> Iterator[None]:
    """Ctrl-C ends ``command`` with one line and exit 130 instead of a traceback (outputs are atomic)."""
    try:
        yield
    except KeyboardInterrupt:
        print(f"error: {command}: interrupted; earlier outputs are left as they were", file=sys.stderr)
        raise typer.Exit(EXIT_INTERRUPTED) from None
