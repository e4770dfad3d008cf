"""`vitlens --version` reports the installed distribution; Typer's shell completion is on."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

from typer.testing import CliRunner

import vitlens_cli
from vitlens_cli.cli.app import app


def test_version_is_the_installed_one():
    res = CliRunner().invoke(app, ["--version"])
    assert res.exit_code == 0
    assert res.stdout.strip() == f"vitlens {version('vitlens')}" == f"vitlens {vitlens_cli.__version__}"


def test_completion_script_for_bash():
    # With shellingham installed, Typer's --show-completion is a flag and the shell is the nearest shell among
    # the process's ancestors (under `make` that can be /bin/sh, which Typer does not support). So the script
    # runs as the child of a bash that stays alive (a second command keeps bash from exec-ing it).
    exe = shutil.which("vitlens", path=str(Path(sys.executable).parent))
    assert exe, "the vitlens console script is not installed beside this interpreter"
    env = {k: v for k, v in os.environ.items() if not k.startswith("_")}
    res = subprocess.run(["bash", "-c", '"$0" --show-completion; exit $?', exe], capture_output=True, text=True,
                         timeout=120, env=env)
    assert res.returncode == 0, res.stderr
    assert "_vitlens_completion()" in res.stdout and "complete -o default -F _vitlens_completion vitlens" in res.stdout
