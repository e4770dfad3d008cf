"""``--quiet`` / ``--verbose`` of the long commands, defined once, and the progress bar they all draw.

Three levels, the same in every command:

* normal: a progress bar (total, done, ETA) on stderr while it runs, then the summary lines.
* ``--quiet``: no bar and no summary; only what the command is for (``--json``, eval's table, qa's answers),
  errors and skipped items. For scripts and cron jobs.
* ``--verbose``: also ``· `` lines on stderr with the resolved paths, settings and the time each stage took.
"""
from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import typer
from rich.console import Console
from rich.progress import (BarColumn, DownloadColumn, MofNCompleteColumn, Progress, ProgressColumn, Task,
                           TextColumn, TimeRemainingColumn)
from rich.text import Text

from .errors import fail
from .render import plain

QUIET = typer.Option(False, "--quiet", help="No progress bar and no summary lines: only the result (--json, "
                     "tables, answers), errors and skipped items.")
VERBOSE = typer.Option(False, "--verbose", help="Also show resolved paths, settings and how long each stage "
                       "took (on stderr).")


@dataclass(frozen=True)
class Output:
    """What one run of a command shows."""

    quiet: bool = False
    verbose: bool = False

    def progress(self, *columns: ProgressColumn, disable: bool = False, transient: bool = True,
                 console: Console | None = None) -> Progress:
        """A bar on stderr; ``columns`` default to :func:`bar_columns` (description, bar, done/total, ETA)."""
        return Progress(*(columns or bar_columns()), console=console or Console(stderr=True),
                        transient=transient, disable=disable or self.quiet)

    def info(self, text: str) -> None:
        """A summary line (rich markup: escape what came from outside with ``markup``), hidden by --quiet."""
        if not self.quiet:
            Console().print(text)

    def detail(self, text: str) -> None:
        """A ``--verbose`` line on stderr (plain text)."""
        if self.verbose:
            print(f"· {plain(text)}", file=sys.stderr)

    @contextlib.contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        """Under --verbose, say how long ``stage`` took (also when it fails)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.detail(f"{stage}: {time.perf_counter() - start:.2f} s")


def output(quiet: bool, verbose: bool) -> Output:
    if quiet and verbose:
        fail("--quiet", "cannot be combined with --verbose")
    return Output(quiet, verbose)


class DoneColumn(ProgressColumn):
    """``done/total``, or bytes for a task added with ``in_bytes=True`` (a download beside a conversion)."""

    def __init__(self) -> None:
        super().__init__()
        self._count, self._bytes = MofNCompleteColumn(), DownloadColumn()

    def render(self, task: Task) -> Text:
        return (self._bytes if task.fields.get("in_bytes") else self._count).render(task)


def bar_columns(*extra: ProgressColumn) -> tuple[ProgressColumn, ...]:
    """Every long command's bar: what, bar, done/total (or bytes), time remaining, then ``extra``."""
    return (TextColumn("{task.description}"), BarColumn(), DoneColumn(), TimeRemainingColumn(), *extra)
