"""`vitlens --version` reports the installed distribution; Typer's shell completion is on."""
from __future__ import annotations

from importlib.metadata import version

from typer.testing import CliRunner

import vitlens_cli
from vitlens_cli.cli.app import app


def test_version_is_the_installed_one():
    res = CliRunner().invoke(app, ["--version"])
    assert res.exit_code == 0
    assert res.stdout.strip() == f"vitlens {version('vitlens')}" == f"vitlens {vitlens_cli.__version__}"


def test_completion_script_for_bash():
    res = CliRunner().invoke(app, ["--show-completion", "bash"])
    assert res.exit_code == 0 and "_vitlens_completion" in res.stdout and "complete " in res.stdout
