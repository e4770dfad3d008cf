"""Turn vitlens errors into one line on stderr and an exit code."""
from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import NoReturn, TypeVar

import typer
import typer.core

from ..errors import VitlensError
from .render import plain

T = TypeVar("T")
EXIT_FAILED_ITEMS = 1
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for an interrupted command


class OneLineErrors(typer.core.TyperGroup):
    """The top-level group: a usage error (unknown command, ``--batch-size ten``) is one ``error:`` line, exit 2.

    Typer's own handler draws a multi-line box; running the group with ``standalone_mode=False`` hands us the
    exception instead. The help that ``vitlens`` or ``vitlens index`` print without arguments is raised the same
    way and has already been shown when it arrives, so it only sets the exit code.
    """

    def main(self, *args, standalone_mode: bool = True, **kwargs):  # type: ignore[override]
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except typer.TyperException as exc:
            # Typer tells this one apart by name too: the class is not exported.
            if type(exc).__name__ != "NoArgsIsHelpError":
                ctx = getattr(exc, "ctx", None)
                hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
                where = f"{ctx.command_path}: " if ctx is not None else ""
                print(f"error: {plain(where)}{plain(exc.format_message())}{plain(hint)}", file=sys.stderr)
            sys.exit(exc.exit_code)
        except typer.Abort:
            print("error: aborted", file=sys.stderr)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


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
