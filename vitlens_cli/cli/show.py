"""``vitlens show``: a picture of files as a model is fed them (after its preprocessing), several as a grid."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from .errors import EXIT_FAILED_ITEMS, run_or_exit
from .render import plain


def show(
    paths: list[Path] = typer.Argument(..., help="Point clouds, meshes, depth maps, audio clips, images, EEG files."),
    out: Path = typer.Option(Path("show.png"), "--out", "-o", help="The PNG to write."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Zoo name whose preprocessing contract to "
                                        "apply (see `vitlens models`); default: each modality's released one."),
    modality: Optional[str] = typer.Option(None, "--modality", help="Modality of files whose extension several "
                                           "read (.npy, .png, .jpg, …)."),
) -> None:
    """Draw files as the model sees them: sampled and normalised clouds, disparity maps, log-mel clips, images.

    Bad files are reported one line each and left out; the exit code is 1 when any input failed.
    """
    from ..atomic import check_writable, write_atomic
    from ..preview import preview

    run_or_exit(lambda: check_writable(out))
    result = run_or_exit(lambda: preview(paths, model=model, modality=modality))
    for failure in result.failures:
        print(f"skipped: {plain(failure.path)}: {plain(failure.reason)}", file=sys.stderr)
    if result.png is not None:
        png = result.png
        run_or_exit(lambda: write_atomic(out, lambda tmp: tmp.write_bytes(png)))
        print(f"wrote {plain(out)}: {len(result.shown)} file(s), {result.columns}x{result.rows} grid")
    else:
        print("nothing to show: no file could be read", file=sys.stderr)
    if result.failures:
        raise typer.Exit(EXIT_FAILED_ITEMS)
