"""``vitlens search``: query an index by text, image or file (any modality), ranked by cosine similarity."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from .errors import EXIT_FAILED_ITEMS, run_or_exit
from .render import markup, plain


def search(
    index: Path = typer.Argument(..., help="An index folder written by `vitlens index build`."),
    text: list[str] = typer.Option([], "--text", "-t", help="A text query (repeatable)."),
    image: list[Path] = typer.Option([], "--image", help="An image query (repeatable; needs an image tower)."),
    file: list[Path] = typer.Option([], "--file", "-f", help="A query file of any indexed modality (repeatable)."),
    queries: Optional[Path] = typer.Option(None, "--queries", "-q", help="A file of queries, one per line: "
                                           "'text: …', 'image: PATH', 'file: PATH' (a bare line is text)."),
    k: int = typer.Option(10, "-k", "--top-k", help="Hits per query."),
    modality_filter: list[str] = typer.Option([], "--modality-filter", help="Only rows of this modality "
                                              "(repeatable)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Only to check: must have the index's weights."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", "-c", help="Where the index's checkpoint "
                                              "is now, if it moved (its weights are checked)."),
    config: Optional[Path] = typer.Option(None, "--config"),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda or cuda:N."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
    html: Optional[Path] = typer.Option(None, "--html", help="Also write a self-contained results page "
                                        "with thumbnails."),
) -> None:
    """Search an index with the model it was built with.

    A query file that cannot be read is reported (`skipped:`) and the other queries are answered (exit 1).
    """
    from ..errors import VitlensError
    from ..retrieval.index import Index, Query, read_queries

    def prepare():
        if k < 1:
            raise VitlensError(f"-k: must be at least 1, got {k}")
        if html is not None and (html.is_dir() or html.suffix.lower() not in (".html", ".htm")):
            raise VitlensError(f"{html}: --html needs a file name ending in .html")
        idx = Index(index)
        qs = [Query("text", t) for t in text] + [Query("image", str(p)) for p in image]
        qs += [Query("file", str(p)) for p in file]
        if queries is not None:
            qs += read_queries(queries)
        if not qs:
            raise VitlensError("search: give a query (--text, --image, --file or --queries)")
        idx.model(model, checkpoint=checkpoint, config=config, device=device)
        return idx, qs

    idx, qs = run_or_exit(prepare)
    result = run_or_exit(lambda: idx.search_many(qs, k=k, modality=modality_filter or None))
    for failure in result.failures:
        print(f"skipped: {plain(failure.path)}: {plain(failure.reason)}", file=sys.stderr)
    if html is not None:
        from ..retrieval.page import write_page

        run_or_exit(lambda: write_page(html, idx, qs, result))
    if as_json:
        out = {"index": str(idx.folder), "model": idx.record.model.get("name") or idx.record.model.get("card"),
               "k": k, "queries": [], "skipped": [{"path": f.path, "reason": f.reason} for f in result.failures]}
        for label in dict.fromkeys(result.queries):
            rows = result.hits[result.hits["query"] == label]
            out["queries"].append({"query": label, "kind": rows["kind"].iloc[0] if len(rows) else None,
                                   "results": rows.drop(columns=["query", "kind"]).to_dict(orient="records")})
        print(json.dumps(out, indent=2))
    else:
        _render(result, html)
    if result.failures:
        raise typer.Exit(EXIT_FAILED_ITEMS)


def _render(result, html: Path | None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for label in dict.fromkeys(result.queries):
        rows = result.hits[result.hits["query"] == label]
        table = Table(title=markup(label), title_justify="left")
        for col, justify in (("rank", "right"), ("score", "right"), ("modality", "left"), ("path", "left")):
            table.add_column(col, justify=justify)
        for hit in rows.itertuples(index=False):
            table.add_row(str(hit.rank), f"{hit.score:.4f}", markup(hit.modality), markup(hit.item))
        console.print(table)
    if html is not None:
        console.print(f"wrote {markup(html)}")
