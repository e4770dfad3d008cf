"""``vitlens eval``: zero-shot classification on a benchmark or your own labelled shapes, multi-label scoring
(AudioSet), or cross-modal retrieval over a captions CSV (the CSV's header decides: ``path,label`` or
``path,caption``) or a caption benchmark (Clotho, AudioCaps)."""
from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from ..precision import HELP as PRECISION_HELP
from .errors import EXIT_FAILED_ITEMS, fail, run_or_exit
from .output import QUIET, VERBOSE, Output, output
from .render import markup, plain


def eval_command(
    benchmark: str = typer.Argument(..., help="A prepared benchmark (modelnet40, scanobjectnn, esc50, "
                                    "sunrgbd-depth, nyu-depth, clotho, audiocaps, audioset, vggsound, touch-and-go, "
                                    "imagenet-eeg, …), or a folder of class sub-folders or a CSV of "
                                    "path,label of one modality (classification), or a CSV of path,caption "
                                    "(text↔file retrieval, files of any modality)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Zoo name; default 'tiny' without --checkpoint."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", "-c", help="A released .pt or a vitlens save."),
    config: Optional[Path] = typer.Option(None, "--config", help="JSON lens config for a checkpoint without one."),
    data_root: Optional[Path] = typer.Option(None, "--data-root", help="Where `vitlens prepare` wrote the "
                                             "benchmarks (default $VITLENS_DATA or ~/.cache/vitlens/data)."),
    variant: Optional[str] = typer.Option(None, "--variant", help="ScanObjectNN: obj_only, obj_bg or pb_t50_rs; "
                                          "clotho, audiocaps: test or val; touch-and-go: material, hard or rough; "
                                          "imagenet-eeg: val or test."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Evaluate only the first N shapes (retrieval: "
                                        "the first N files of the captions CSV, with their captions)."),
    batch_size: int = typer.Option(32, "--batch-size", "-b", min=1),
    workers: int = typer.Option(2, "--workers", min=0, help="DataLoader processes preparing items "
                                "(classification)."),
    device: str = typer.Option("cpu", "--device"),
    precision: str = typer.Option("auto", "--precision", help="The towers' forward pass (prompts and captions "
                                  "stay fp32): " + PRECISION_HELP),
    seed: int = typer.Option(0, "--seed"),
    template: list[str] = typer.Option([], "--template", help="Prompt template with {} for the class name "
                                       "(repeatable); default: the benchmark's official set (3D: the 64 ULIP "
                                       "templates)."),
    modality: list[str] = typer.Option([], "--modality", help="The modality of files whose extension several "
                                       "modalities read (.npy is 3d or depth, .png depth or image); "
                                       "classification: one; retrieval: repeatable, first match wins."),
    out: Path = typer.Option(Path("eval-out"), "--out", "-o", help="Folder for metrics.json, per_class.csv, "
                             "predictions.parquet, confusion.png and worst_errors.html (retrieval: metrics.json "
                             "and per_query.parquet)."),
    worst_errors: int = typer.Option(16, "--worst-errors", min=0, help="Show the N most "
                                     "confident wrong predictions, with thumbnails, in worst_errors.html "
                                     "(classification; 0: no page)."),
    as_json: bool = typer.Option(False, "--json", help="Print metrics.json instead of a table."),
    quiet: bool = QUIET,
    verbose: bool = VERBOSE,
) -> None:
    """Zero-shot classify every item of any modality (prompts: the benchmark's official templates averaged per
    class; 3D: the 64 ULIP ones), or, given a CSV of path,caption, rank files by caption and captions by file:
    R@1/5/10, mAP and median rank both ways."""
    import torch

    from ..evaluation.captions import is_captions_csv

    shown = output(quiet, verbose)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise typer.BadParameter("CUDA is not available on this machine", param_hint="--device")
    from ..precision import resolve_precision

    chosen = run_or_exit(lambda: resolve_precision(precision, device))
    from ..data.lists import LISTED, MULTILABEL, RETRIEVAL

    listed = LISTED[benchmark].task if benchmark in LISTED else None
    if listed == RETRIEVAL or run_or_exit(lambda: is_captions_csv(benchmark)):
        for name, given in (("--template", template), ("--variant", None if listed else variant),
                            ("--modality", modality if listed else None)):
            if given:
                fail(name, "applies to classification; a CSV of path,caption is evaluated by retrieval" if not listed
                     else f"does not apply to {benchmark}, a retrieval benchmark of audio clips")
        _retrieval(Path(benchmark), bench=benchmark if listed else None, data_root=data_root, variant=variant,
                   model=model, checkpoint=checkpoint, config=config, modality=modality, limit=limit,
                   batch_size=batch_size, workers=workers, device=device, seed=seed, precision=chosen.name, out=out,
                   as_json=as_json, shown=shown)
        return
    if listed == MULTILABEL:
        if modality:
            fail("--modality", f"does not apply to {benchmark}: its clips are audio")
        _multilabel(benchmark, model=model, checkpoint=checkpoint, config=config, data_root=data_root,
                    variant=variant, template=template, limit=limit, batch_size=batch_size, workers=workers,
                    device=device, seed=seed, precision=chosen, out=out, as_json=as_json, shown=shown)
        return
    if len(modality) > 1:
        fail("--modality", "classification evaluates one modality; give it once")

    from ..data.benchmarks import open_source
    from ..data.meta import templates as load_templates
    from ..evaluation.report import check_out_dir, source_preview, write_report
    from ..evaluation.runner import evaluate
    from ..evaluation.zeroshot import check_templates

    # Everything a user can get wrong is checked before the model loads and the items are read.
    given = run_or_exit(lambda: check_templates(template)) if template else None
    run_or_exit(lambda: check_out_dir(out))
    source = run_or_exit(lambda: open_source(benchmark, data_root, variant, modality[0] if modality else None))
    prompts = given or run_or_exit(lambda: load_templates(source.templates))
    shown.detail(f"{source.benchmark}: {source.protocol}")
    net = _load(model, checkpoint, config, device, shown)
    shown.detail(f"model: {net.cfg.card.name} ({net.cfg.card.source}); device: {device}; precision: "
                 f"{chosen.name} ({chosen.reason}); {len(prompts)} templates; outputs in {os.path.abspath(out)}")
    result = _with_batches(f"eval {source.benchmark}", as_json, shown, lambda on_batch: evaluate(
        net, source, prompts, batch_size=batch_size, workers=workers, limit=limit, seed=seed, precision=chosen.name,
        on_batch=on_batch))
    _print_skipped(result.failures)
    meta = {"benchmark": source.benchmark, "variant": source.variant, "protocol": source.protocol,
            "modality": source.modality, "model": net.cfg.card.name, "model_source": net.cfg.card.source,
            "templates": len(template) if template else source.templates,
            "prompts_encoded": result.prompts_encoded, "failed": len(result.failures),
            "precision": result.precision, "precision_reason": chosen.reason,
            "shapes_per_second": round(result.shapes_per_second, 3),
            "share_outside_model": round(result.share_outside_model, 3)}
    files = run_or_exit(lambda: write_report(out, result.metrics, names=result.names, labels=result.labels,
                                             topk_idx=result.topk_idx, topk_scores=result.topk_scores,
                                             classnames=result.classes, meta=meta,
                                             preview=source_preview(source), worst=worst_errors))
    if as_json:
        print(Path(files["metrics"]).read_text())
    else:
        _render(result, meta, out, shown)
    if result.failures:
        raise typer.Exit(EXIT_FAILED_ITEMS)


def _load(model: str | None, checkpoint: Path | None, config: Path | None, device: str, shown: Output):
    from ..models import load_model

    with shown.timed("loading the model"):
        return run_or_exit(lambda: load_model(model or ("tiny" if checkpoint is None else None),
                                              checkpoint=checkpoint, config=config, device=device))


def _with_batches(label: str, as_json: bool, shown: Output, run: Callable[[Callable[[int, int], None]], Any]):
    """``run(on_batch)`` under a progress bar that the runner's ``on_batch(done, total)`` moves."""
    with shown.progress(disable=as_json) as progress, shown.timed("evaluating"):
        task = progress.add_task(label, total=None)
        return run_or_exit(lambda: run(lambda done, total: progress.update(task, completed=done, total=total)))


def _print_skipped(failures: list[tuple[str, str]]) -> None:
    for path, reason in failures:
        print(f"skipped: {plain(path)}: {plain(reason)}", file=sys.stderr)


def _render(result, meta: dict, out: Path, shown: Output) -> None:
    m = result.metrics
    title = f"zero-shot {meta['benchmark']}" + (f" ({meta['variant']})" if meta["variant"] else "") + \
        f" — {meta['model']}"
    table = Table(title=markup(title))
    for col in ("n", "top-1", "top-3", "top-5", "mean class acc", "prompts encoded"):
        table.add_column(col, justify="right")
    table.add_row(str(m.n), f"{100 * m.top1:.2f}", f"{100 * m.top3:.2f}", f"{100 * m.top5:.2f}",
                  f"{100 * m.mean_class_acc:.2f}", str(meta["prompts_encoded"]))
    Console().print(table)
    shown.info(f"{meta['shapes_per_second']:.1f} shapes/s; outputs in {markup(out)}/")


def _retrieval(csv: Path, *, bench: str | None, data_root, variant, model, checkpoint, config, modality, limit,
               batch_size, workers, device, seed, precision, out, as_json, shown: Output) -> None:
    """A captions CSV (``bench`` None) or a prepared caption benchmark."""
    from ..evaluation.caption_benchmarks import evaluate_caption_benchmark, open_caption_benchmark
    from ..evaluation.captions import read_captions
    from ..evaluation.crossmodal import PROTOCOL, evaluate_retrieval
    from ..evaluation.report import check_out_dir, write_retrieval_report
    from ..retrieval.sources import check_modality

    if bench is None:
        modalities = [run_or_exit(lambda m=m: check_modality(m)) for m in modality]
        captions = run_or_exit(lambda: read_captions(csv, modalities))
        described = {"benchmark": "custom", "captions_csv": str(csv),
                     "protocol": {"source": f"your captions: {csv}", **PROTOCOL}}
    else:
        captions, described = run_or_exit(lambda: open_caption_benchmark(bench, data_root, variant))
    name = csv.name if bench is None else bench
    if limit is not None:
        captions = captions.head(limit)
    run_or_exit(lambda: check_out_dir(out))
    net = _load(model, checkpoint, config, device, shown)
    shown.detail(f"{os.path.abspath(csv) if bench is None else bench}: {len(captions.items)} files; model: "
                 f"{net.cfg.card.name} "
                 f"({net.cfg.card.source}); device: {device}; precision: {precision}; "
                 f"outputs in {os.path.abspath(out)}")
    with shown.progress(disable=as_json) as progress, shown.timed("evaluating"):
        task = progress.add_task(f"retrieval {name}", total=len(captions.items))
        if bench is None:
            result = run_or_exit(lambda: evaluate_retrieval(net, captions, batch_size=batch_size, seed=seed,
                                                            precision=precision,
                                                            on_file=lambda _: progress.advance(task)))
        else:
            result, used = run_or_exit(lambda: evaluate_caption_benchmark(
                net, captions, bench, batch_size=batch_size, seed=seed, workers=workers, precision=precision,
                on_file=lambda _: progress.advance(task)))
            described = {**described, **used}
    _print_skipped(result.failures)
    meta = {"task": "retrieval", **described, "model": net.cfg.card.name, "model_source": net.cfg.card.source,
            "items": len(result.items), "captions": len(result.texts), "pairs": int(result.relevance.sum()),
            "modalities": dict(sorted(Counter(result.modalities).items())),
            "captions_encoded": result.captions_encoded, "dropped_captions": result.dropped_captions,
            "failed": len(result.failures), "precision": result.precision, "items_per_second": round(result.items_per_second, 3)}
    files = run_or_exit(lambda: write_retrieval_report(out, result, meta))
    if as_json:
        print(Path(files["metrics"]).read_text(encoding="utf-8"))
    else:
        table = Table(title=markup(f"retrieval {name} — {meta['model']}: {meta['items']} files, "
                                   f"{meta['captions']} captions"))
        for col in ("direction", "queries", "R@1", "R@5", "R@10", "mAP", "median rank"):
            table.add_column(col, justify="left" if col == "direction" else "right")
        for name, m in (("text → file", result.text_to_item), ("file → text", result.item_to_text)):
            table.add_row(name, str(m.n_queries), *(f"{100 * m.recall[k]:.2f}" for k in (1, 5, 10)),
                          f"{100 * m.mean_ap:.2f}", f"{m.median_rank:g}")
        Console().print(table)
        shown.info(f"{meta['captions_encoded']} captions encoded; outputs in {markup(out)}/")
    if result.failures:
        raise typer.Exit(EXIT_FAILED_ITEMS)


def _multilabel(name: str, *, model, checkpoint, config, data_root, variant, template, limit, batch_size, workers,
                device, seed, precision, out, as_json, shown: Output) -> None:
    """AudioSet: every class scored for every clip, macro mAP."""
    from ..data.lists import list_source
    from ..data.meta import templates as load_templates
    from ..evaluation.multilabel import MAP_PROTOCOL, evaluate_multilabel, write_multilabel_report
    from ..evaluation.report import check_out_dir
    from ..evaluation.zeroshot import check_templates

    given = run_or_exit(lambda: check_templates(template)) if template else None
    run_or_exit(lambda: check_out_dir(out))
    source = run_or_exit(lambda: list_source(name, data_root, variant))
    prompts = given or run_or_exit(lambda: load_templates(source.templates))
    net = _load(model, checkpoint, config, device, shown)
    result = _with_batches(f"eval {name}", as_json, shown, lambda on_batch: evaluate_multilabel(
        net, source, prompts, batch_size=batch_size, workers=workers, limit=limit, seed=seed,
        precision=precision.name, on_batch=on_batch))
    _print_skipped(result.failures)
    meta = {"task": "multilabel", "benchmark": name, "variant": source.variant, "protocol": source.protocol,
            "metric": MAP_PROTOCOL, "modality": source.modality, "model": net.cfg.card.name,
            "model_source": net.cfg.card.source, "templates": len(template) if template else source.templates,
            "prompts_encoded": result.prompts_encoded, "failed": len(result.failures),
            "precision": result.precision, "precision_reason": precision.reason}
    files = run_or_exit(lambda: write_multilabel_report(out, result, meta))
    if as_json:
        print(Path(files["metrics"]).read_text(encoding="utf-8"))
    else:
        m = result.metrics
        table = Table(title=markup(f"zero-shot {name} — {meta['model']}"))
        for col in ("n", "mAP", "mAP (absent = 0)", "classes scored", "prompts encoded"):
            table.add_column(col, justify="right")
        table.add_row(str(m.n), f"{100 * m.mean_ap:.2f}", f"{100 * m.mean_ap_absent_as_zero:.2f}",
                      f"{m.classes_scored} of {len(result.classes)}", str(result.prompts_encoded))
        Console().print(table)
        shown.info(f"outputs in {markup(out)}/")
    if result.failures:
        raise typer.Exit(EXIT_FAILED_ITEMS)
