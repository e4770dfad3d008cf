"""``vitlens models``: the zoo with each model's card."""
from __future__ import annotations

import json
from dataclasses import asdict

import typer
from rich.console import Console
from rich.table import Table



def models(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """List the named models: source file, CLIP backbone, points/channels/up-axis and published accuracy."""
    from ..models import get_spec, list_models
    
    specs = [get_spec(n) for n in list_models()]
    if as_json:
        print(json.dumps([{"name": s.card.name, "card": asdict(s.card), "preprocess": asdict(s.preprocess)}
                          for s in specs], indent=2))
        return
    table = Table(title="vitlens model zoo")
    for col in ("name", "file", "CLIP", "points", "ch", "up", "ModelNet40 top-1"):
        table.add_column(col)
    for s in specs:
        mn = s.card.published.get("modelnet40", {}).get("top1")
        clip = f"{s.card.clip_model} {s.card.clip_pretrained}" if s.card.clip_model else "-"
        table.add_row(s.card.name, s.card.hf_filename or "(random init)", clip, str(s.preprocess.num_points),
                      str(s.preprocess.channels), s.preprocess.up_axis, f"{mn}" if mn is not None else "-")
    Console().print(table)
