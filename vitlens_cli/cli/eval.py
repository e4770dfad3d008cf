"""``vitlens eval``: zero-shot classification on a benchmark or your own labelled shapes."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from .errors import EXIT_FAILED_ITEMS, run_or_exit
from .render import markup, plain


def eval_command(
    benchmark: str = typer.Argument(..., help="modelnet40, scanobjectnn, or a folder of class sub-folders, "
                                    "or a CSV of path,label."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Zoo name; default 'tiny' without --checkpoint."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", "-c", help="A released .pt or a vitlens save."),
    config: Optional[Path] = typer.Option(None, "--config", help="JSON lens config for a checkpoint without one."),
    data_root: Optional[Path] = typer.Option(None, "--data-root", help="Where `vitlens prepare` wrote the "
                                             "benchmarks (default $VITLENS_DATA or ~/.cache/vitlens/data)."),
    variant: Optional[str] = typer.Option(None, "--variant", help="ScanObjectNN: obj_only, obj_bg or pb_t50_rs."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Evaluate only the first N shapes."),
    batch_size: int = typer.Option(32, "--batch-size", "-b", min=1),
    workers: int = typer.Option(2, "--workers", min=0, help="DataLoader processes preparing clouds."),
    device: str = typer.Option("cpu", "--device"),
    seed: int = typer.Option(0, "--seed"),
    template: list[str] = typer.Option([], "--template", help="Prompt template with {} for the class name "
                                       "(repeatable); default: the 64 ULIP templates."),
    out: Path = typer.Option(Path("eval-out"), "--out", "-o", help="Folder for metrics.json, per_class.csv, "
                             "predictions.parquet and confusion.png."),
    as_json: bool = typer.Option(False, "--json", help="Print metrics.json instead of a table."),
) -> None:
    """Zero-shot classify every shape; prompts are the 64 ULIP templates averaged per class."""
    import torch

    from ..data.benchmarks import open_source
    from ..data.meta import templates as load_templates
    from ..evaluation.report import check_out_dir, write_report
    from ..evaluation.runner import evaluate
    from ..evaluation.zeroshot import check_templates
    from ..models import load_model

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise typer.BadParameter("CUDA is not available on this machine", param_hint="--device")
    # Everything a user can get wrong is checked before the model loads and the shapes are read.
    prompts = run_or_exit(lambda: check_templates(template or load_templates()))
    run_or_exit(lambda: check_out_dir(out))
    source = run_or_exit(lambda: open_source(benchmark, data_root, variant))
    net = run_or_exit(lambda: load_model(model or ("tiny" if checkpoint is None else None),
                                         checkpoint=checkpoint, config=config, device=device))
    console = Console(stderr=True)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True, disable=as_json) as progress:
        task = progress.add_task(f"eval {source.benchmark}", total=None)
        result = run_or_exit(lambda: evaluate(
            net, source, prompts, batch_size=batch_size, workers=workers, limit=limit, seed=seed,
            on_batch=lambda done, total: progress.update(task, completed=done, total=total)))
    for path, reason in result.failures:
        print(f"skipped: {plain(path)}: {plain(reason)}", file=sys.stderr)
    meta = {"benchmark": source.benchmark, "variant": source.variant, "protocol": source.protocol,
            "model": net.cfg.card.name, "model_source": net.cfg.card.source,
            "templates": len(template) if template else "ulip_64",
            "prompts_encoded": result.prompts_encoded, "failed": len(result.failures),
            "shapes_per_second": round(result.shapes_per_second, 3),
            "share_outside_model": round(result.share_outside_model, 3)}
    files = run_or_exit(lambda: write_report(out, result.metrics, names=result.names, labels=result.labels,
                                             topk_idx=result.topk_idx, topk_scores=result.topk_scores,
                                             classnames=result.classes, meta=meta))
    if as_json:
        print(Path(files["metrics"]).read_text())
    else:
        _render(result, meta, out)
    if result.failures:
        raise typer.Exit(EXIT_FAILED_ITEMS)


def _render(result, meta: dict, out: Path) -> None:
    m = result.metrics
    title = f"zero-shot {meta['benchmark']}" + (f" ({meta['variant']})" if meta["variant"] else "") + \
        f" — {meta['model']}"
    table = Table(title=markup(title))
    for col in ("n", "top-1", "top-3", "top-5", "mean class acc", "prompts encoded"):
        table.add_column(col, justify="right")
    table.add_row(str(m.n), f"{100 * m.top1:.2f}", f"{100 * m.top3:.2f}", f"{100 * m.top5:.2f}",
                  f"{100 * m.mean_class_acc:.2f}", str(meta["prompts_encoded"]))
    console = Console()
    console.print(table)
    console.print(f"{meta['shapes_per_second']:.1f} shapes/s; outputs in {markup(out)}/")

