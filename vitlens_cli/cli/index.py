"""``vitlens index build|add|info``: embed files of any modality into a searchable index folder."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer

from ..precision import HELP as PRECISION_HELP
from .errors import EXIT_FAILED_ITEMS, run_or_exit
from .output import QUIET, VERBOSE, Output, output
from .render import markup, plain

app = typer.Typer(help="Build, extend and inspect an embedding index (Parquet shards + FAISS).",
                  no_args_is_help=True, add_completion=False)

_INPUTS_HELP = ("Files, folders (searched recursively) or globs of any modality: 3D (ply pcd xyz txt npy h5 off "
                "obj stl glb …), depth, audio, images, …")
_MODALITY_HELP = ("Modality of files whose extension several modalities read (.npy is 3d or depth, .png depth "
                  "or image); repeatable, first match wins. Other files follow their extension.")


def _report(report, as_json: bool, verb: str, shown: Output) -> None:
    if not report.is_main:
        return
    for failure in report.failures:
        print(f"skipped: {plain(failure.path)}: {plain(failure.reason)}", file=sys.stderr)
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        ann = report.ann
        extra = {k: v for k, v in ann.get("params", {}).items() if k in ("nlist", "nprobe", "calibrated_recall_at_10")}
        shown.info(
            f"{verb} {markup(report.folder)}: {report.rows} rows with [bold]{markup(report.model)}[/]; "
            f"{report.embedded_rows} embedded in {report.embedded_shards} new shard(s), "
            f"{report.reused_shards} shard(s) reused"
            + (f", {report.unchanged_files} unchanged file(s) skipped" if report.unchanged_files else "")
            + (f", {report.replaced_files} changed file(s) replaced" if report.replaced_files else "")
            + f"; {ann.get('kind')} index" + (f" {markup(json.dumps(extra))}" if extra else "")
            + (f"; {len(report.failures)} skipped" if report.failures else ""))
    if report.failures:
        raise typer.Exit(EXIT_FAILED_ITEMS)


def _run(inputs, out, add: bool, model, checkpoint, config, modality, batch_size, workers, shard_files, ann,
         exact_max_rows, recall_target, seed, mesh_points, device, as_json, shown: Output,
         precision: str = "auto") -> None:
    from ..retrieval.build import BuildOptions, build_index
    from ..retrieval.model_ref import ModelRef

    ref = None
    if model is not None or checkpoint is not None or not add:
        ref = ModelRef(None if checkpoint is not None else (model or "tiny"),
                       None if checkpoint is None else str(checkpoint), None if config is None else str(config))
    options = dict(modalities=tuple(modality), batch_size=batch_size, workers=workers, shard_files=shard_files,
                   ann=ann, exact_max_rows=exact_max_rows, recall_target=recall_target, seed=seed,
                   mesh_points=mesh_points, device=device, precision=precision)
    if add:  # the embedding settings of an existing index are its own
        options.pop("seed"), options.pop("mesh_points"), options.pop("precision")
    shown.detail(f"index folder: {os.path.abspath(out)}; model: "
                 f"{'the index' if ref is None else ref.checkpoint or ref.name}; device: {device}")
    with shown.progress(disable=as_json) as progress, shown.timed("embedding and indexing"):
        task = progress.add_task("embedding", total=None)
        report = run_or_exit(lambda: build_index(
            inputs, out, ref, BuildOptions(**options), add=add,
            on_plan=lambda n: progress.update(task, total=n),
            on_file=lambda _: progress.advance(task)))
    _report(report, as_json, "added to" if add else "built", shown)


@app.command("build")
def build(
    inputs: list[str] = typer.Argument(..., help=_INPUTS_HELP),
    out: Path = typer.Option(..., "--out", "-o", help="Index folder (created; a re-run resumes or updates it)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Zoo name (see `vitlens models`); default "
                                        "'tiny' when no --checkpoint is given."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", "-c", help="A released .pt, or a folder / "
                                              ".safetensors saved by vitlens."),
    config: Optional[Path] = typer.Option(None, "--config", help="JSON config for a checkpoint that has none."),
    modality: list[str] = typer.Option([], "--modality", help=_MODALITY_HELP),
    batch_size: int = typer.Option(8, "--batch-size", "-b", help="Items per forward pass."),
    workers: int = typer.Option(1, "--workers", "-w", help="Local processes embedding shards in parallel "
                                "(CPU; under torchrun each rank is one)."),
    shard_files: int = typer.Option(256, "--shard-files", help="Input files per Parquet shard (the unit of "
                                    "resuming and of work per rank)."),
    ann: str = typer.Option("auto", "--ann", help="auto (exact FAISS IndexFlatIP up to --exact-max-rows rows, "
                            "IVF above), flat or ivf."),
    exact_max_rows: int = typer.Option(100_000, "--exact-max-rows", help="Largest index searched exactly "
                                       "under --ann auto."),
    recall_target: float = typer.Option(0.95, "--recall-target", help="recall@10 an approximate index is "
                                        "calibrated to reach."),
    seed: int = typer.Option(0, "--seed", help="Seed for mesh sampling and random resampling."),
    mesh_points: int = typer.Option(10_000, "--mesh-points", help="Points sampled from each mesh surface."),
    device: str = typer.Option("auto", "--device", help="auto (cuda:LOCAL_RANK when CUDA is there), cpu, cuda."),
    precision: str = typer.Option("auto", "--precision", help="The towers' forward pass, recorded in the index "
                                  "(`index add` keeps it): " + PRECISION_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary."),
    quiet: bool = QUIET,
    verbose: bool = VERBOSE,
) -> None:
    """Embed files into an index folder; resumes an interrupted build.

    `torchrun --nproc-per-node N -m vitlens_cli index build ...` shares the shards among N processes (gloo on
    CPU, nccl on GPUs) and gives the same index as one process. Bad files are reported and skipped (exit 1).
    """
    _run(inputs, out, False, model, checkpoint, config, modality, batch_size, workers, shard_files, ann,
         exact_max_rows, recall_target, seed, mesh_points, device, as_json, output(quiet, verbose), precision)


@app.command("add")
def add(
    index: Path = typer.Argument(..., help="An index folder written by `vitlens index build`."),
    inputs: list[str] = typer.Argument(..., help=_INPUTS_HELP),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Only to check: must be the index's model."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", "-c", help="Where the index's checkpoint "
                                              "is now, if it moved."),
    config: Optional[Path] = typer.Option(None, "--config"),
    modality: list[str] = typer.Option([], "--modality", help=_MODALITY_HELP),
    batch_size: int = typer.Option(8, "--batch-size", "-b"),
    workers: int = typer.Option(1, "--workers", "-w"),
    shard_files: int = typer.Option(256, "--shard-files"),
    device: str = typer.Option("auto", "--device"),
    as_json: bool = typer.Option(False, "--json"),
    quiet: bool = QUIET,
    verbose: bool = VERBOSE,
) -> None:
    """Append new files to an index; unchanged files (same path and sha256) are skipped, changed ones replaced."""
    from ..retrieval.store import read_record

    record = run_or_exit(lambda: read_record(index))
    kind = record.ann["kind"]
    _run(inputs, index, True, model, checkpoint, config, modality, batch_size, workers, shard_files,
         "auto" if kind == "flat" else kind, record.ann.get("params", {}).get("exact_max_rows", 100_000),
         record.ann.get("params", {}).get("recall_target", 0.95), 0, 1, device, as_json, output(quiet, verbose))


@app.command("info")
def info(
    index: Path = typer.Argument(..., help="An index folder."),
    verify: bool = typer.Option(True, "--verify/--no-verify", help="Check every file's sha256."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Summarise an index: rows, files, modalities, model, ANN parameters."""
    from ..retrieval.index import Index

    summary = run_or_exit(lambda: Index(index, verify=verify).info())
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"index {markup(summary['folder'])}", show_header=False)
    for key in ("rows", "files", "dim", "model", "fingerprint", "shards"):
        table.add_row(key, markup(summary[key]))
    table.add_row("modalities", markup(", ".join(f"{k}: {v}" for k, v in summary["modalities"].items())))
    table.add_row("ann", markup(f"{summary['ann']['kind']} {json.dumps(summary['ann']['params'])}"))
    table.add_row("skipped at last build", markup(summary["failures_at_last_build"]))
    Console().print(table)
