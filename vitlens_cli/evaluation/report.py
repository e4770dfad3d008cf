"""Evaluation reports on disk: metrics.json, per_class.csv, predictions.parquet, confusion.png and (given
thumbnails) worst_errors.html for classification; metrics.json and per_query.parquet for retrieval.

Every file is written atomically, so a crashed or concurrent run never leaves half a report. The
predictions file holds enough (label index and top-5 indices) to recompute every metric later with
:func:`metrics_from_predictions`; the per-query file holds every relevant rank of every query, enough to
recompute R@k, AP and the ranks of both retrieval directions.
"""
from __future__ import annotations

import html
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vitlens_cli.atomic import write_atomic
from vitlens_cli.errors import VitlensError
from vitlens_cli.evaluation.metrics import MAX_K, Metrics, MetricsInputError, compute_metrics

METRICS_JSON = "metrics.json"
PER_CLASS_CSV = "per_class.csv"
PREDICTIONS_PARQUET = "predictions.parquet"
CONFUSION_PNG = "confusion.png"
PER_QUERY_PARQUET = "per_query.parquet"
WORST_ERRORS_HTML = "worst_errors.html"
# Each error costs one thumbnail render (a 3D scatter is ~0.1-0.5 s): a page to read, not a full dump.
DEFAULT_WORST_ERRORS = 16
# How many best gallery entries per query the per-query table lists (to read the errors, not to score).
TOP_LISTED = 10

PREDICTION_COLUMNS = ("path", "label", "label_index", "top5_labels", "top5_indices", "top5_scores")

# Beyond this many classes tick labels overlap into an unreadable smear, so the plot drops them.
MAX_TICK_LABELS = 60


def json_default(obj: Any) -> Any:
    # Callers build ``meta`` from numpy results and paths; make those serialise instead of failing late.
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"meta value of type {type(obj).__name__} is not JSON-serialisable")


def _metrics_document(metrics: Metrics, meta: Mapping[str, Any]) -> dict[str, Any]:
    summary = metrics.summary()
    clash = sorted(set(meta) & set(summary))
    if clash:
        # Silently letting either side win would publish a number nobody computed.
        raise MetricsInputError(f"meta keys {clash} collide with metric names")
    return {**meta, **summary}


def _per_class_csv(metrics: Metrics) -> str:
    return metrics.per_class_frame().to_csv(index=False, lineterminator="\n", na_rep="")


def predictions_table(
    names: Sequence[str],
    labels: np.ndarray,
    topk_idx: np.ndarray,
    topk_scores: np.ndarray,
    classnames: Sequence[str],
) -> Any:
    """The predictions as a pyarrow Table (written as predictions.parquet; ``.to_pandas()`` for the API)."""
    import pyarrow as pa  # lazy: keeps `import vitlens_cli` fast for commands that never write reports

    k = min(MAX_K, topk_idx.shape[1])
    idx = topk_idx[:, :k].astype(np.int64, copy=False)
    scores = np.asarray(topk_scores)[:, :k].astype(np.float32, copy=False)
    cls = np.asarray([str(c) for c in classnames], dtype=object)
    n = len(labels)
    offsets = np.arange(0, (n + 1) * k, k, dtype=np.int32)

    def list_col(values: np.ndarray, typ: Any) -> Any:
        # Build list columns from one flat buffer + offsets rather than N Python lists.
        return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values.reshape(-1), type=typ))

    schema = pa.schema(
        [
            ("path", pa.string()),
            ("label", pa.string()),
            ("label_index", pa.int64()),
            ("top5_labels", pa.list_(pa.string())),
            ("top5_indices", pa.list_(pa.int64())),
            ("top5_scores", pa.list_(pa.float32())),
        ]
    )
    return pa.Table.from_arrays(
        [
            pa.array([str(s) for s in names], type=pa.string()),
            pa.array(cls[labels].tolist(), type=pa.string()),
            pa.array(labels.astype(np.int64), type=pa.int64()),
            list_col(cls[idx], pa.string()),
            list_col(idx, pa.int64()),
            list_col(scores, pa.float32()),
        ],
        schema=schema,
    )


def _confusion_figure(metrics: Metrics, classnames: Sequence[str], meta: Mapping[str, Any]) -> Any:
    # Figure + Agg canvas directly, not pyplot: no global backend switch and no figure registry to leak.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    conf = metrics.confusion.astype(np.float64)
    rows = conf.sum(axis=1, keepdims=True)
    # Row-normalise so each row reads as "where did samples of this class go"; empty rows stay zero.
    norm = np.divide(conf, rows, out=np.zeros_like(conf), where=rows > 0)
    c = conf.shape[0]
    side = float(np.clip(3.0 + 0.2 * c, 5.0, 16.0))
    fig = Figure(figsize=(side + 1.0, side), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest", aspect="equal")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    if c <= MAX_TICK_LABELS:
        size = float(np.clip(220.0 / max(c, 1), 4.0, 10.0))
        ticks = np.arange(c)
        ax.set_xticks(ticks, [str(s) for s in classnames], rotation=90, fontsize=size)
        ax.set_yticks(ticks, [str(s) for s in classnames], fontsize=size)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    ax.set_xlabel("predicted (top-1)", fontsize=max(10.0, 0.8 * side))
    ax.set_ylabel("true", fontsize=max(10.0, 0.8 * side))
    parts = [str(meta[key]) for key in ("benchmark", "model") if meta.get(key)]
    top1 = metrics.top1
    parts.append(f"top-1 {top1:.1%}" if isinstance(top1, float) and math.isfinite(top1) else "top-1 n/a")
    ax.set_title(" · ".join(parts), fontsize=max(10.0, side))
    fig.tight_layout()
    return fig


def worst_errors(labels: np.ndarray, topk_idx: np.ndarray, topk_scores: np.ndarray, n: int) -> np.ndarray:
    """Rows whose top-1 class is wrong, the most confident (highest top-1 score) first, at most ``n``;
    equal scores keep row order."""
    wrong = np.flatnonzero(np.asarray(topk_idx)[:, 0] != np.asarray(labels))
    order = np.argsort(-np.asarray(topk_scores)[wrong, 0], kind="stable")
    return wrong[order[:max(0, n)]]


def source_preview(source: Any) -> Callable[[str], bytes]:
    """PNG thumbnails of an eval source's items by name: the file itself where the name is one (the same
    thumbnails as the retrieval page), else the cloud read from the source (a prepared cache keeps no file
    per item); anything else gets a placeholder that says why."""
    from vitlens_cli.thumbnails import placeholder, render_points, thumbnail

    up = source.up_axis or "y"
    names = getattr(source.dataset, "names", None)
    position = {name: i for i, name in enumerate(names)} if names is not None else {}

    def preview(name: str) -> bytes:
        if Path(name).is_file():
            return thumbnail(name, source.modality, up_axis=up)
        i = position.get(name)
        if i is not None and source.modality == "3d" and not source.prepared:
            points = np.asarray(source.dataset[i][0])
            return render_points(points[:, :3], points[:, 3:6] if points.shape[1] >= 6 else None, up)
        return placeholder(f"no preview: {name} is not a file")

    return preview


_WORST_STYLE = """
body{font-family:system-ui,sans-serif;margin:16px;background:#fafafa;color:#222}
h1{font-size:18px;margin:0 0 4px} .meta{color:#666;font-size:12px;margin-bottom:12px}
.grid{display:flex;flex-wrap:wrap;gap:10px}
.err{width:196px;background:#fff;border:1px solid #ddd;border-radius:6px;padding:4px;font-size:11px}
.err img{width:192px;height:192px;display:block} .pred{font-weight:600;color:#a00} .path{color:#555;word-break:break-all}
"""


def worst_errors_page(rows: np.ndarray, names: Sequence[str], labels: np.ndarray, topk_idx: np.ndarray,
                      topk_scores: np.ndarray, classnames: Sequence[str], previews: Sequence[bytes],
                      meta: Mapping[str, Any]) -> str:
    """One self-contained HTML page (thumbnails as data URIs) of the given error rows, in that order."""
    from vitlens_cli.thumbnails import data_uri

    esc = html.escape
    title = " · ".join(str(meta[key]) for key in ("benchmark", "model") if meta.get(key))
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>vitlens eval: worst errors</title>",
             f"<style>{_WORST_STYLE}</style></head><body>",
             f"<h1>Most confident wrong predictions{': ' + esc(title) if title else ''}</h1>",
             f"<div class='meta'>{len(rows)} of {int((topk_idx[:, 0] != labels).sum())} errors in {len(names)} "
             "items, highest top-1 score first</div><div class='grid'>"]
    for row, png in zip(rows, previews):
        truth, hits = int(labels[row]), np.flatnonzero(topk_idx[row] == labels[row])
        rank = f"#{int(hits[0]) + 1}" if len(hits) else f"not in top {topk_idx.shape[1]}"
        parts.append(f"<div class='err'><img alt='{esc(str(names[row]))}' src='{data_uri(png)}'>"
                     f"<div class='pred'>predicted: {esc(str(classnames[int(topk_idx[row, 0])]))} · "
                     f"{float(topk_scores[row, 0]):.4f}</div>"
                     f"<div>true: {esc(str(classnames[truth]))} (rank {rank})</div>"
                     f"<div class='path'>{esc(str(names[row]))}</div></div>")
    if not len(rows):
        parts.append("<div class='meta'>no errors</div>")
    parts.append("</div></body></html>")
    return "\n".join(parts)


def write_all(out_dir: Path, writes: Sequence[tuple[Path, Any]]) -> None:
    """``(path, write(tmp))`` in order, each atomically; the last should be metrics.json, which marks a
    complete report for anyone polling the folder."""
    check_out_dir(out_dir)
    try:
        for path, write in writes:
            write_atomic(path, write)
    except OSError as exc:
        if isinstance(exc, VitlensError):
            raise
        raise VitlensError(f"{out_dir}: cannot write the report ({(exc.strerror or str(exc)).lower()})") from None


def check_out_dir(out_dir: Path) -> Path:
    """Refuse, before any slow work, an output folder the report could not be written into."""
    out_dir = Path(out_dir)
    folder = out_dir
    while not os.path.lexists(folder) and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        where = "is not a folder" if folder == out_dir else f"cannot be created: {folder} is not a folder"
        raise VitlensError(f"{out_dir}: {where}; the output must be a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise VitlensError(f"{out_dir}: cannot be written ({folder} is not writable)")
    return out_dir


def write_report(
    out_dir: Path,
    metrics: Metrics,
    *,
    names: Sequence[str],
    labels: np.ndarray,
    topk_idx: np.ndarray,
    topk_scores: np.ndarray,
    classnames: Sequence[str],
    meta: Mapping[str, Any],
    preview: Callable[[str], bytes] | None = None,
    worst: int = DEFAULT_WORST_ERRORS,
) -> dict[str, Path]:
    """Write the four report files into ``out_dir`` and return their paths by kind.

    ``meta`` (benchmark, variant, model, prompts_encoded, …) comes first in metrics.json, followed by
    n, top1, top3, top5, mean_class_acc and per_class. Given ``preview`` (item name → PNG, e.g.
    :func:`source_preview`), worst_errors.html shows the ``worst`` most confident wrong predictions too.
    Existing files are replaced atomically.
    """
    out_dir = Path(out_dir)
    labels = np.asarray(labels)
    topk_idx = np.asarray(topk_idx)
    topk_scores = np.asarray(topk_scores)
    n = len(names)
    if labels.ndim != 1 or labels.shape[0] != n:
        raise MetricsInputError(f"labels must have shape ({n},) to match names, got {labels.shape}")
    if topk_idx.ndim != 2 or topk_idx.shape[0] != n:
        raise MetricsInputError(f"topk_idx must have shape ({n}, k), got {topk_idx.shape}")
    if topk_scores.shape != topk_idx.shape:
        raise MetricsInputError(f"topk_scores shape {topk_scores.shape} != topk_idx shape {topk_idx.shape}")
    c = len(classnames)
    if metrics.n != n or metrics.confusion.shape != (c, c):
        raise MetricsInputError(
            f"metrics describe n={metrics.n}, C={metrics.confusion.shape[0]} but got {n} samples and {c} classes"
        )
    if n and (labels.min() < 0 or labels.max() >= c or topk_idx.min() < 0 or topk_idx.max() >= c):
        raise MetricsInputError(f"labels or topk_idx hold class indices outside [0, {c})")
    labels = labels.astype(np.int64, copy=False)
    topk_idx = topk_idx.astype(np.int64, copy=False)

    # Build everything that can fail on bad input before the first write, so a bad call writes nothing.
    document = json.dumps(_metrics_document(metrics, meta), indent=2, default=json_default) + "\n"
    table = predictions_table(names, labels, topk_idx, topk_scores, classnames)

    import pyarrow.parquet as pq

    paths = {
        "metrics": out_dir / METRICS_JSON,
        "per_class": out_dir / PER_CLASS_CSV,
        "predictions": out_dir / PREDICTIONS_PARQUET,
        "confusion": out_dir / CONFUSION_PNG,
    }
    fig = _confusion_figure(metrics, classnames, meta)
    writes: list[tuple[Path, Any]] = []
    if preview is not None and worst > 0:
        rows = worst_errors(labels, topk_idx, topk_scores, worst)
        page = worst_errors_page(rows, names, labels, topk_idx, topk_scores, classnames,
                                 [preview(str(names[i])) for i in rows], meta)
        paths["worst_errors"] = out_dir / WORST_ERRORS_HTML
        writes.append((paths["worst_errors"], lambda p: p.write_text(page, encoding="utf-8")))
    write_all(out_dir, [
        *writes,
        (paths["predictions"], lambda p: pq.write_table(table, p)),
        (paths["per_class"], lambda p: p.write_text(_per_class_csv(metrics), encoding="utf-8")),
        # The temp file has a .tmp suffix, so the format must be named rather than guessed from it.
        (paths["confusion"], lambda p: fig.savefig(p, format="png")),
        (paths["metrics"], lambda p: p.write_text(document, encoding="utf-8")),
    ])
    return paths


def metrics_from_predictions(parquet: Path, classnames: Sequence[str]) -> Metrics:
    """Recompute :class:`Metrics` from a ``predictions.parquet`` written by :func:`write_report`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    needed = ["label", "label_index", "top5_indices"]
    missing = [c for c in needed if c not in pq.read_schema(Path(parquet)).names]
    if missing:
        raise MetricsInputError(f"{parquet}: missing column(s) {missing}; is it a vitlens predictions file?")
    table = pq.read_table(Path(parquet), columns=needed)
    n = table.num_rows
    labels = table.column("label_index").to_numpy().astype(np.int64, copy=False)
    col = table.column("top5_indices").combine_chunks()
    if isinstance(col, pa.ChunkedArray):  # older pyarrow returns a ChunkedArray from combine_chunks
        col = col.chunk(0) if col.num_chunks else pa.array([], type=pa.list_(pa.int64()))
    lengths = col.value_lengths().to_numpy(zero_copy_only=False) if n else np.zeros(0, np.int64)
    if n and (lengths.min() != lengths.max()):
        raise MetricsInputError(f"{parquet}: rows of top5_indices have different lengths")
    k = int(lengths[0]) if n else 0
    topk_idx = col.flatten().to_numpy(zero_copy_only=False).astype(np.int64).reshape(n, k)

    c = len(classnames)
    if n and labels.size and 0 <= labels.min() and labels.max() < c:
        # The stored names must match the class list given now, or the indices mean other classes.
        stored = table.column("label").to_pylist()
        expected = [str(classnames[i]) for i in labels]
        if stored != expected:
            bad = next(i for i, (a, b) in enumerate(zip(stored, expected)) if a != b)
            raise MetricsInputError(
                f"{parquet}: row {bad} is labelled {stored[bad]!r} but classnames[{labels[bad]}] is "
                f"{expected[bad]!r}; pass the class list the predictions were written with"
            )
    return compute_metrics(labels, topk_idx, classnames)


def _per_query_table(result: Any) -> Any:
    import pyarrow as pa

    from vitlens_cli.evaluation.crossmodal import ITEM_TO_TEXT, TEXT_TO_ITEM
    from vitlens_cli.evaluation.metrics import topk

    columns: dict[str, list] = {name: [] for name in (
        "direction", "query", "query_modality", "n_relevant", "relevant_ranks", "first_rank", "average_precision",
        f"top{TOP_LISTED}", f"top{TOP_LISTED}_scores")}
    texts, items = list(result.texts), list(result.items)
    for direction, metrics, scores, queries, kinds, gallery in (
            (TEXT_TO_ITEM, result.text_to_item, result.scores, texts, ["text"] * len(texts), items),
            (ITEM_TO_TEXT, result.item_to_text, result.scores.T, items, result.modalities, texts)):
        idx, vals = topk(scores, TOP_LISTED)  # the tie rule of the metrics, so top[0] is the rank-1 entry
        columns["direction"] += [direction] * len(queries)
        columns["query"] += queries
        columns["query_modality"] += list(kinds)
        columns["n_relevant"] += [len(r) for r in metrics.relevant_ranks]
        columns["relevant_ranks"] += [r.tolist() for r in metrics.relevant_ranks]
        columns["first_rank"] += metrics.first_rank.tolist()
        columns["average_precision"] += metrics.average_precision.tolist()
        columns[f"top{TOP_LISTED}"] += [[gallery[j] for j in row] for row in idx.tolist()]
        columns[f"top{TOP_LISTED}_scores"] += vals.tolist()
    types = {"n_relevant": pa.int64(), "relevant_ranks": pa.list_(pa.int64()), "first_rank": pa.int64(),
             "average_precision": pa.float64(), f"top{TOP_LISTED}": pa.list_(pa.string()),
             f"top{TOP_LISTED}_scores": pa.list_(pa.float32())}
    return pa.table({k: pa.array(v, type=types.get(k, pa.string())) for k, v in columns.items()})


def write_retrieval_report(out_dir: Path, result: Any, meta: Mapping[str, Any]) -> dict[str, Path]:
    """Write ``per_query.parquet`` and ``metrics.json`` (last) of a retrieval evaluation into ``out_dir``.

    ``result`` is a :class:`vitlens_cli.evaluation.crossmodal.RetrievalResult`. metrics.json holds ``meta``,
    then ``text_to_item`` and ``item_to_text`` (``n_queries``, ``n_gallery``, ``R@k``, ``mAP``,
    ``median_rank``, ``mean_rank``). The per-query table has one row per query of each direction: the query
    (caption or file), its relevant entries' ranks (1-based, sorted), first rank, AP and its best entries.
    """
    import pyarrow.parquet as pq

    from vitlens_cli.evaluation.crossmodal import ITEM_TO_TEXT, TEXT_TO_ITEM

    out_dir = Path(out_dir)
    summary = {TEXT_TO_ITEM: result.text_to_item.summary(), ITEM_TO_TEXT: result.item_to_text.summary()}
    clash = sorted(set(meta) & set(summary))
    if clash:
        raise MetricsInputError(f"meta keys {clash} collide with metric names")
    document = json.dumps({**meta, **summary}, indent=2, default=json_default) + "\n"
    table = _per_query_table(result)
    paths = {"per_query": out_dir / PER_QUERY_PARQUET, "metrics": out_dir / METRICS_JSON}
    write_all(out_dir, [(paths["per_query"], lambda p: pq.write_table(table, p)),
                         (paths["metrics"], lambda p: p.write_text(document, encoding="utf-8"))])
    return paths
