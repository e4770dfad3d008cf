"""The ``vitlens`` command: one Typer app, one module per subcommand."""
from __future__ import annotations

import typer

from . import embed, index, models, prepare
from .errors import OneLineErrors
from .eval import eval_command
from .qa import qa_command
from .search import search
from .show import show
from .train import train_command

app = typer.Typer(
    name="vitlens",
    cls=OneLineErrors,
    help="ViT-Lens: 3D, depth, audio, tactile, EEG and images in one CLIP space, through a lens per modality "
    "on a frozen CLIP ViT.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command("embed")(embed.embed)
app.command("models")(models.models)
app.command("prepare")(prepare.prepare)
app.command("eval")(eval_command)
app.command("train")(train_command)
app.command("qa")(qa_command)
app.add_typer(index.app, name="index")
app.command("search")(search)
app.command("show")(show)


def _print_version(value: bool) -> None:
    if value:
        from .. import __version__

        # The package's own version, which the wheel's metadata is built from: right in a source tree or an
        # editable install too, where the installed metadata may be absent or stale.
        print(f"vitlens {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="Print the installed version and exit."),
) -> None:
    """Options of the vitlens command itself (each subcommand has its own --help)."""


def main() -> None:
    app()
