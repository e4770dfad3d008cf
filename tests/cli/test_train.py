"""``vitlens train`` through the real app: --quiet and --verbose on a two-step tiny recipe."""
from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from vitlens_cli.cli.app import app

SMALL = ["data.options.size=16", "batch_size=8", "log_every=1", "optim.warmup_steps=1", "max_steps=2",
         "save_every=2"]


def test_quiet_prints_nothing_verbose_names_the_recipe_folder_and_time(tmp_path: Path) -> None:
    runner = CliRunner()
    quiet = runner.invoke(app, ["train", *SMALL, f"output_dir={tmp_path / 'q'}", "--quiet"])
    assert quiet.exit_code == 0, quiet.output
    assert quiet.stdout == "" and quiet.stderr == ""
    assert (tmp_path / "q" / "final" / "model.safetensors").is_file()

    verbose = runner.invoke(app, ["train", *SMALL, f"output_dir={tmp_path / 'v'}", "--verbose"])
    assert verbose.exit_code == 0, verbose.output
    assert verbose.stdout.startswith("trained 2 steps; final loss ")
    details = [ln for ln in verbose.stderr.splitlines() if ln.startswith("· ")]
    assert any(ln.startswith("· recipe: ") and ln.split(" with ")[0].endswith("tiny-cpu.yaml") for ln in details)
    assert f"· output folder: {tmp_path / 'v'}; device: auto" in details
    assert any(ln.startswith("· training: ") and ln.endswith(" s") for ln in details)
