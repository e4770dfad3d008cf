"""``vitlens prepare``: turn a dataset release into the cache that ``eval`` reads."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer

from .errors import EXIT_FAILED_ITEMS, run_or_exit
from .output import QUIET, VERBOSE, Output, output
from .render import markup, plain

# Stages whose progress counts bytes; the others (convert, find files, download files) count items.
_BYTE_STAGES = ("download", "extract")


def prepare(
    dataset: str = typer.Argument(..., help="modelnet40, scanobjectnn, modelnet40-openshape, "
                                  "scanobjectnn-openshape, objaverse-lvis, shapenet55, openshape-meta, objaverse, "
                                  "esc50, sunrgbd-depth, nyu-depth, clotho, audiocaps, audioset, vggsound, "
                                  "touch-and-go or imagenet-eeg."),
    root: Optional[Path] = typer.Option(None, "--root", help="Data folder (default $VITLENS_DATA or "
                                        "~/.cache/vitlens/data)."),
    from_path: Optional[Path] = typer.Option(None, "--from", help="An already downloaded archive or folder "
                                             "(no network needed); required where the terms need a sign-up."),
    variant: Optional[str] = typer.Option(None, "--variant", help="ScanObjectNN: obj_only, obj_bg or pb_t50_rs "
                                          "(default pb_t50_rs); shapenet55: test or train; clotho, audiocaps: "
                                          "test or val (default test); touch-and-go: material, hard or rough; "
                                          "imagenet-eeg: val or test (default test)."),
    categories: Optional[str] = typer.Option(None, "--categories", help="objaverse: comma-separated LVIS "
                                             "categories (default all)."),
    per_category: Optional[int] = typer.Option(None, "--per-category", min=1, help="objaverse: at most N "
                                               "objects per category."),
    download_processes: int = typer.Option(1, "--download-processes", min=1, help="objaverse: parallel downloads."),
    quiet: bool = QUIET,
    verbose: bool = VERBOSE,
) -> None:
    """Download (or take with --from), extract safely and convert a benchmark; re-runs skip finished work.

    Releases on the Hugging Face Hub are fetched with huggingface_hub: its cache (HF_HUB_CACHE), token
    (HF_TOKEN or `hf auth login`) and offline mode (HF_HUB_OFFLINE=1) apply. Where no source can be
    downloaded, --from takes the release you got yourself."""
    from ..data.benchmarks import default_data_root
    from ..data.imagenet_eeg import prepare_imagenet_eeg
    from ..data.lists import LISTED, prepare_listed
    from ..data.prepare.pipeline import prepare_dataset, prepare_objaverse

    shown = output(quiet, verbose)
    # abspath, not resolve(): a --from that is a symlink loop must reach the one-line error below
    shown.detail(f"data folder: {os.path.abspath(root or default_data_root())}"
                 + (f"; from {os.path.abspath(from_path)}" if from_path is not None else ""))
    with shown.progress() as bar, shown.timed(f"prepare {dataset}"):
        tasks: dict[str, int] = {}

        def progress(stage: str, done: int, total: int | None) -> None:
            if stage not in tasks:
                in_bytes = stage.split(" ")[0] in _BYTE_STAGES and stage != "download files"
                tasks[stage] = bar.add_task(stage, total=total, in_bytes=in_bytes)
                shown.detail(f"{stage} started")
            bar.update(tasks[stage], completed=done, total=total)

        if dataset == "imagenet-eeg":
            summary = run_or_exit(lambda: prepare_imagenet_eeg(root or default_data_root(), from_path=from_path,
                                                               variant=variant, progress=progress))
        elif dataset in LISTED:
            summary = run_or_exit(lambda: prepare_listed(dataset, root or default_data_root(), from_path=from_path,
                                                         variant=variant, progress=progress))
        elif dataset == "objaverse":
            cats = [c.strip() for c in categories.split(",") if c.strip()] if categories else None
            summary = run_or_exit(lambda: prepare_objaverse(root or default_data_root(), categories=cats,
                                                            per_category=per_category,
                                                            download_processes=download_processes, progress=progress))
        else:
            summary = run_or_exit(lambda: prepare_dataset(dataset, root or default_data_root(), from_path=from_path,
                                                          variant=variant, progress=progress))
    name = markup(summary.benchmark + (f" ({summary.variant})" if summary.variant else ""))
    if dataset == "imagenet-eeg":
        state = "already prepared: " if summary.already_done else ""
        shown.info(f"{name}: {state}{summary.kept} of {summary.listed} split trials kept (the official "
                   f"trial-length filter) in {markup(summary.dest)}")
        shown.info(f"protocol: {markup(summary.protocol)}")
        return
    if dataset in LISTED:
        _render_listed(name, summary, shown)
        return
    dest = markup(summary.dest)
    if summary.already_done:
        shown.info(f"{name}: already prepared, {summary.count} shapes in {dest}")
    else:
        shown.info(f"{name}: {summary.count} shapes in {dest} "
                   f"({summary.converted} converted, {summary.skipped} kept from an earlier run)")
    shown.info(f"protocol: {markup(summary.protocol)}")
    for item in summary.skipped_items:
        print(f"skipped: {plain(item['name'])}: {plain(item['reason'])}", file=sys.stderr)
    if summary.skipped_items:
        raise typer.Exit(EXIT_FAILED_ITEMS)


def _render_listed(name: str, summary, shown: Output) -> None:
    state = "already prepared: " if summary.already_done else ""
    shown.info(f"{name}: {state}{summary.present} of {summary.listed} listed files found; "
               f"list in {markup(summary.dest)}")
    shown.info(f"protocol: {markup(summary.protocol)}")
    if summary.missing:
        print(f"missing: {summary.missing} listed file(s), the rows with present=0 of "
              f"{plain(summary.presence_csv)}", file=sys.stderr)
        raise typer.Exit(EXIT_FAILED_ITEMS)
