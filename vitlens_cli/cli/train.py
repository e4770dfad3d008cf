"""``vitlens train``: run a recipe (``torchrun … -m vitlens_cli train …`` for several processes)."""
from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Optional

import typer
from rich.console import Console
from rich.progress import TextColumn

from .errors import run_or_exit
from .output import QUIET, VERBOSE, bar_columns, output
from .render import markup, plain

if TYPE_CHECKING:
    from ..training.loop import StepLog

DEFAULT_RECIPES = {"3d": "tiny-cpu", "depth": "tiny-depth-cpu", "audio": "tiny-audio-cpu",
                   "tactile": "tiny-tactile-cpu", "eeg": "tiny-eeg-cpu"}


def train_command(
    overrides: list[str] = typer.Argument(None, help="key=value overrides, e.g. max_steps=100 optim.lr=1e-4"),
    recipe: Optional[str] = typer.Option(None, "--recipe", "-r",
                                         help="A shipped recipe's name (see --list-recipes) or a recipe YAML."),
    modality: Optional[str] = typer.Option(None, "--modality",
                                           help="Modality to train a lens for (3d, depth, audio, tactile, eeg); "
                                                "without --recipe its tiny CPU recipe. Default: 3d."),
    resume: Optional[str] = typer.Option(None, "--resume", help="'latest' or a checkpoint path."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    list_recipes: bool = typer.Option(False, "--list-recipes", help="List the shipped recipes and exit."),
    quiet: bool = QUIET,
    verbose: bool = VERBOSE,
) -> None:
    """Train a lens in front of a frozen CLIP ViT; writes checkpoints, metrics, loss.png and final/."""
    from ..training.recipe import load_recipe, resolve_recipe, shipped_recipes

    out = output(quiet, verbose)
    if list_recipes:
        for name in shipped_recipes():
            print(name)
        return
    from ..errors import ConfigError

    def recipe_for() -> object:
        name = modality or "3d"
        if recipe is None and name not in DEFAULT_RECIPES:
            raise ConfigError(f"--modality: no default recipe for '{name}' "
                              f"(known: {', '.join(DEFAULT_RECIPES)}); give --recipe")
        path = resolve_recipe(recipe if recipe is not None else DEFAULT_RECIPES[name])
        out.detail(f"recipe: {path}" + (f" with {' '.join(overrides)}" if overrides else ""))
        loaded = load_recipe(path, overrides or [])
        if modality is not None and modality != loaded.model.modality:
            raise ConfigError(f"--modality: {path} trains a {loaded.model.modality} lens (model.modality), "
                              f"not {modality}")
        return loaded

    cfg = run_or_exit(recipe_for)

    from ..training.loop import train

    main_rank = os.environ.get("RANK", "0") == "0"  # under torchrun only rank 0 reports
    console = Console(stderr=True, quiet=not main_rank)
    out.detail(f"output folder: {os.path.abspath(cfg.output_dir)}; device: {device}")
    with out.progress(*bar_columns(TextColumn("{task.fields[status]}")), console=console, transient=False) \
            as progress, out.timed("training"):
        task = progress.add_task(f"train {markup(cfg.name)}", total=None, status="")

        def on_step(log: StepLog) -> None:
            status = f"loss {log.loss:.4f}  lr {log.lr:.2e}  {log.samples_per_s:.1f} samples/s"
            if log.val_top1 is not None:
                status += f"  val top-1 {100 * log.val_top1:.1f}"
            progress.update(task, completed=log.step, total=log.total, status=status)

        def on_warning(line: str) -> None:
            print(f"warning: {plain(line)}", file=sys.stderr)

        result = run_or_exit(lambda: train(cfg, resume=resume, device=device, on_step=on_step,
                                           on_warning=on_warning))
    if main_rank and not out.quiet:
        held_out = "" if result.val_top1 is None else f"; validation top-1 {100 * result.val_top1:.1f}%"
        print(f"trained {result.steps} steps; final loss {result.last_loss:.4f}{held_out}; "
              f"lens saved to {plain(result.final_dir)}")
