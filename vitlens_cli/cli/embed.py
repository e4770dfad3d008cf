"""``vitlens embed``: files of any modality → CLIP-space embeddings (+ optional item/text similarity table)."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from ..precision import HELP as PRECISION_HELP
from .errors import EXIT_FAILED_ITEMS, check_device, fail, interruptible, run_or_exit
from .output import QUIET, VERBOSE, Output, output
from .render import markup, plain

if TYPE_CHECKING:
    from ..embedding import EmbedResult

MAX_BATCH = 4096
MAX_WORKERS = 64


_PATHS_HELP = ("Files, folders (searched recursively) or globs of any modality: 3D (ply pcd xyz pts txt off obj stl "
               "glb gltf h5, npy npz), audio (wav flac ogg mp3 …), depth (exr; png npy npz pt), tactile / image "
               "(png jpg …), EEG (npy npz pt). Folders and globs take the files the model's towers read.")
_MODALITY_HELP = ("Modality of files whose extension several modalities read (.npy: 3d, depth or eeg; .png/.jpg: "
                  "depth, tactile or image): 3d, depth, audio, tactile, eeg or image. Repeatable; the first that "
                  "reads a file's extension wins, other files follow their extension.")


def embed(
    paths: list[str] = typer.Argument(..., metavar="PATHS", help=_PATHS_HELP),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Zoo name (see `vitlens models`); "
                                        "default 'tiny' (3D only) when no --checkpoint is given; 'tiny-omni' "
                                        "holds every modality."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", "-c", help="A released .pt, or a folder / "
                                              ".safetensors saved by vitlens."),
    config: Optional[Path] = typer.Option(None, "--config", help="JSON lens config for a checkpoint that has "
                                          "none (vitlens or official-parity config.json format)."),
    modality: list[str] = typer.Option([], "--modality", help=_MODALITY_HELP),
    prepared: bool = typer.Option(False, "--prepared", help="Inputs are ready lens inputs (.npy/.npz/.pt "
                                  "arrays of one item, or views × item), fed to the --modality tower as they "
                                  "are: no reading or preprocessing of the modality."),
    text: list[str] = typer.Option([], "--text", "-t", help="Prompt to compare every item with (repeatable)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write embeddings to FILE.npy or FILE.parquet "
                                       "(+ FILE.manifest.json: each row's modality and preprocessing)."),
    no_normalize: bool = typer.Option(False, "--no-normalize", help="Embeddings are not L2-normalised; 3D points "
                                      "are fed exactly as read: no centring, no axis change, no resampling "
                                      "when the count already matches."),
    up_axis: Optional[str] = typer.Option(None, "--up-axis", help="Up-axis of the 3D input files (y or z) when it "
                                          "differs from the model's; converted before normalising."),
    batch_size: int = typer.Option(8, "--batch-size", "-b", help=f"Items per forward pass (1-{MAX_BATCH})."),
    workers: int = typer.Option(2, "--workers", "-w", help="Processes reading and preparing files while the "
                                f"model encodes (0-{MAX_WORKERS}; 0: all in this process)."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda or cuda:N."),
    precision: str = typer.Option("auto", "--precision", help="The towers' forward pass: " + PRECISION_HELP),
    seed: int = typer.Option(0, "--seed", help="Seed for mesh sampling and random resampling of 3D files."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary instead of tables."),
    quiet: bool = QUIET,
    verbose: bool = VERBOSE,
) -> None:
    """Embed files of every modality into CLIP space, rows in input order.

    Each file's modality follows from its extension (for .npy, .png, .jpg and the like: from --modality,
    or from the one tower of the model that reads it). A file whose modality stays ambiguous stops the
    run before any embedding with one error line naming it. Bad files are reported one line each and
    skipped; the exit code is 1 when any input failed, 2 on a fatal error.
    """
    shown = output(quiet, verbose)
    with interruptible("embed"):
        import torch

        from ..allocator import pin_malloc_thresholds
        from ..embedding import check_output, embed_files, embed_to_file
        from ..models import load_model
        from ..precision import resolve_precision

        if up_axis not in (None, "y", "z"):
            fail("--up-axis", f"'{up_axis}' is not an axis; use y or z")
        if not 1 <= batch_size <= MAX_BATCH:
            fail("--batch-size", f"{batch_size} is outside 1-{MAX_BATCH}")
        if not 0 <= workers <= MAX_WORKERS:
            fail("--workers", f"{workers} is outside 0-{MAX_WORKERS}")
        check_device(torch, device)
        run_or_exit(lambda: resolve_precision(precision, device))
        if out is not None:  # before the model and the embedding work: a bad target fails at once
            run_or_exit(lambda: check_output(out, paths))
        net = run_or_exit(lambda: load_model(model or ("tiny" if checkpoint is None else None),
                                             checkpoint=checkpoint, config=config, device=device))
        pin_malloc_thresholds()  # this process streams every file through the towers: fixed, high thresholds
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        shown.detail(f"model: {net.cfg.card.name} ({net.cfg.card.source}); device: {device}; workers: {workers}"
                     + (f"; output: {os.path.abspath(out)}" if out is not None else ""))
        with Progress(*columns, console=Console(stderr=True), transient=True, disable=as_json or quiet) as progress, \
                shown.timed("embedding"):
            task = progress.add_task("embedding", total=None)
            options = dict(modalities=modality, prepared=prepared, texts=text, normalize_points=not no_normalize,
                           l2_normalize=not no_normalize, batch_size=batch_size, seed=seed, source_up_axis=up_axis,
                           precision=precision, workers=workers,
                           on_progress=lambda done, total: progress.update(task, completed=done, total=total))
            if out is not None:  # rows stream into the file as they are encoded
                result, written = run_or_exit(lambda: embed_to_file(net, paths, out, **options))
            else:
                result, written = run_or_exit(lambda: embed_files(net, paths, **options)), None
        for failure in result.failures:
            print(f"skipped: {plain(failure.path)}: {plain(failure.reason)}", file=sys.stderr)
        if as_json:
            print(json.dumps(_summary(result, written), indent=2))
        else:
            _render(result, written, shown)
        if result.failures:
            raise typer.Exit(EXIT_FAILED_ITEMS)


def _summary(result: EmbedResult, written) -> dict:
    summary = {"model": result.settings.get("model"), "embedded": len(result.items), "modalities": result.counts(),
               "failed": [{"path": f.path, "reason": f.reason} for f in result.failures],
               "precision": result.settings.get("precision"), "dim": int(result.embeddings.shape[1]),
               "output": None if written is None else [str(p) for p in written]}
    if result.texts:
        sim = result.similarity()
        summary["similarity"] = {i.item: dict(zip(result.texts, map(float, row)))
                                 for i, row in zip(result.items, sim)}
    return summary


def _render(result: EmbedResult, written, shown: Output) -> None:
    console = Console()
    counts = ", ".join(f"{n} {m}" for m, n in result.counts().items())
    shown.info(f"embedded {len(result.items)} item(s)" + (f" ({counts})" if counts else "")
               + f" with [bold]{markup(result.settings.get('model'))}[/] "
               f"→ dim {result.embeddings.shape[1]}" + (f"; {len(result.failures)} skipped" if result.failures else ""))
    if written is not None:
        shown.info(f"wrote {markup(written[0])} and {markup(written[1])}")
    if result.texts and result.items:
        table = Table(title="softmax(100 · cos) over the texts")
        table.add_column("item")
        table.add_column("modality")
        for t in result.texts:
            table.add_column(markup(t), justify="right")
        for item, row in zip(result.items, result.similarity()):
            best = int(row.argmax())
            cells = [f"[bold]{v:.3f}[/]" if j == best else f"{v:.3f}" for j, v in enumerate(row)]
            table.add_row(markup(Path(item.item).name), item.modality, *cells)
        console.print(table)
