"""One self-contained HTML page of search results: every thumbnail is a data URI, nothing is fetched."""
from __future__ import annotations

import html
import json
from pathlib import Path
from typing import TYPE_CHECKING

from ..atomic import write_text_atomic
from ..thumbnails import data_uri, thumbnail

if TYPE_CHECKING:
    from .index import Index, Query, SearchResult

_STYLE = """
body{font-family:system-ui,sans-serif;margin:16px;background:#fafafa;color:#222}
h1{font-size:18px;margin:0 0 4px} .meta{color:#666;font-size:12px;margin-bottom:12px}
section{margin:14px 0 22px} h2{font-size:15px;margin:0 0 8px;display:flex;align-items:center;gap:10px}
h2 img{width:64px;height:64px;border:1px solid #ccc;background:#fff}
.grid{display:flex;flex-wrap:wrap;gap:10px}
.hit{width:196px;background:#fff;border:1px solid #ddd;border-radius:6px;padding:4px;font-size:11px}
.hit img{width:192px;height:192px;display:block}
.score{font-weight:600} .path{color:#555;word-break:break-all}
"""


def _preview(index: Index, path: str, modality: str, item: str | None) -> str:
    settings = index.record.settings.get("embed", {})
    up = "y"
    if modality == "3d":
        try:
            up = json.loads(index.frame()["preprocessing"].iloc[0]).get("contract", {}).get("up_axis", "y")
        except (ValueError, IndexError, AttributeError):
            up = "y"
    png = thumbnail(path, modality, item, up_axis=up, mesh_points=settings.get("mesh_points", 10_000),
                    seed=settings.get("seed", 0))
    return data_uri(png)


def _query_modality(index: Index, kind: str, source: str) -> str:
    from ..errors import VitlensError
    from .sources import modality_of

    if kind == "image":
        return "image"
    try:
        return modality_of(Path(source), sorted(set(index.frame()["modality"])))
    except VitlensError:
        return "3d"  # only the preview depends on it: an unreadable file gets a placeholder either way


def render_page(index: Index, queries: list[Query], result: SearchResult) -> str:
    """The page's HTML: one section per query (with its own thumbnail when it is a file), hits in rank order."""
    esc = html.escape
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>vitlens search</title>",
             f"<style>{_STYLE}</style></head><body>",
             f"<h1>vitlens search: {esc(str(index.folder))}</h1>",
             f"<div class='meta'>model {esc(str(index.record.model.get('name') or index.record.model.get('card')))}"
             f" · {index.rows} rows · {esc(index.record.ann['kind'])} index</div>"]
    hits = result.hits
    kinds = {q.value: q for q in queries}
    for label in dict.fromkeys(result.queries):
        rows = hits[hits["query"] == label]
        kind = rows["kind"].iloc[0] if len(rows) else "text"
        head = ""
        query = kinds.get(label)
        if kind != "text":
            source = query.value if query is not None else label.split("#", 1)[0]
            head = f"<img alt='query' src='{_preview(index, source, _query_modality(index, kind, source), label)}'>"
        parts.append(f"<section><h2>{head}<span>{esc(kind)}: {esc(label)}</span></h2><div class='grid'>")
        for hit in rows.itertuples(index=False):
            src = _preview(index, hit.path, hit.modality, hit.item)
            shown = hit.item if hit.item != hit.path else hit.path
            parts.append(f"<div class='hit'><img alt='{esc(hit.modality)}' src='{src}'>"
                         f"<div><span class='score'>#{hit.rank} · {hit.score:.4f}</span> · {esc(hit.modality)}</div>"
                         f"<div class='path'>{esc(shown)}</div></div>")
        if not len(rows):
            parts.append("<div class='meta'>no results</div>")
        parts.append("</div></section>")
    for failure in result.failures:
        parts.append(f"<div class='meta'>skipped: {esc(failure.path)}: {esc(failure.reason)}</div>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_page(path: str | Path, index: Index, queries: list[Query], result: SearchResult) -> Path:
    return write_text_atomic(path, render_page(index, queries, result))
