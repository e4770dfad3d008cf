"""Turn vitlens errors into one line on stderr and an exit code."""
from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TypeVar

import typer

from ..errors import VitlensError
from .render import plain

T = TypeVar("T")
EXIT_FAILED_ITEMS = 1
EXIT_ERROR = 2


def run_or_exit(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except VitlensError as exc:
        print(f"error: {plain(exc)}", file=sys.stderr)
        raise typer.Exit(EXIT_ERROR) from None
