"""``vitlens models``: the zoo with each model's card."""
from __future__ import annotations

import json
from dataclasses import asdict

import typer
from rich.console import Console
from rich.table import Table

from .render import markup


def models(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """List the named models: source file, CLIP backbone, points/channels/up-axis and published accuracy."""
    from ..models import get_spec, list_models

    specs = [get_spec(n) for n in list_models()]
    if as_json:
        from ..models.factory import cached_checkpoint

        def downloaded(spec) -> dict | None:  # the released file in the Hub cache, with the Hub's sha256
            found = cached_checkpoint(spec)
            return None if found is None else {"path": str(found.path), "sha256": found.sha256}

        print(json.dumps([{"name": s.card.name, "modalities": list(s.modalities), "card": asdict(s.card),
                           "preprocess": None if s.preprocess is None else asdict(s.preprocess),
                           "downloaded": downloaded(s)}
                          for s in specs], indent=2))
        return
    table = Table(title="vitlens model zoo")
    for col in ("name", "modalities", "file", "CLIP", "points", "ch", "up", "ModelNet40 top-1"):
        table.add_column(col)
    for s in specs:
        mn = s.card.published.get("modelnet40", {}).get("top1")
        clip = f"{s.card.clip_model} {s.card.clip_pretrained}" if s.card.clip_model else "-"
        pre = s.preprocess  # the 3D contract; models without a 3D tower have none
        points = (pre.num_points, pre.channels, pre.up_axis) if pre is not None else ("-", "-", "-")
        table.add_row(*map(markup, (s.card.name, " ".join(s.modalities), s.card.hf_filename or "(random init)", clip,
                                    *points, mn if mn is not None else "-")))
    Console().print(table)
