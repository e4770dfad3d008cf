"""``--quiet`` / ``--verbose`` as every long command takes them (cli/output.py), through the real app.

quiet: nothing on stderr and no summary lines, only the command's result; verbose: ``· `` lines with resolved
paths and stage timings on stderr, the same stdout as a normal run.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rich.progress import Progress, TimeRemainingColumn
from typer.testing import CliRunner

from vitlens_cli.cli.app import app
from vitlens_cli.cli.output import DoneColumn, Output, bar_columns

runner = CliRunner()


def _details(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.startswith("· ")]


@pytest.fixture
def shapes(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    for cls in ("mug", "lamp"):
        (tmp_path / "shapes" / cls).mkdir(parents=True)
        for i in range(2):
            np.save(tmp_path / "shapes" / cls / f"{i}.npy", rng.normal(size=(600, 3)).astype(np.float32))
    return tmp_path / "shapes"


def test_every_bar_has_a_total_and_an_eta() -> None:
    cols = bar_columns()
    assert any(isinstance(c, TimeRemainingColumn) for c in cols)
    done = next(c for c in cols if isinstance(c, DoneColumn))
    bar = Progress(*cols)
    items = bar.add_task("convert", total=40, completed=3)
    download = bar.add_task("download x.zip", total=3 * 2**20, completed=2**20, in_bytes=True)
    assert str(done.render(bar.tasks[items])) == " 3/40"
    assert str(done.render(bar.tasks[download])) == "1.0/3.1 MB"
    assert Output(quiet=True).progress().disable and not Output().progress().disable


def test_prepare_quiet_verbose_and_a_release_without_a_source(tmp_path: Path) -> None:
    from tests.data.test_pipeline import _synthetic_tree

    tree = _synthetic_tree(tmp_path / "release")
    base = ["prepare", "modelnet40", "--from", str(tree)]
    quiet = runner.invoke(app, [*base, "--root", str(tmp_path / "q"), "--quiet"])
    assert quiet.exit_code == 0, quiet.output
    assert quiet.stdout == "" and quiet.stderr == ""
    assert (tmp_path / "q" / "modelnet40" / "index.json").is_file()
    verbose = runner.invoke(app, [*base, "--root", str(tmp_path / "v"), "--verbose"])
    assert verbose.exit_code == 0, verbose.output
    assert verbose.stdout.startswith("modelnet40: 6 shapes in ")
    details = _details(verbose.stderr)
    assert f"· data folder: {tmp_path / 'v'}; from {tree}" in details
    assert "· convert started" in details
    assert any(ln.startswith("· prepare modelnet40: ") and ln.endswith(" s") for ln in details)

    # no source to download from: at once, one line, and --quiet does not hide it
    none = runner.invoke(app, ["prepare", "scanobjectnn", "--root", str(tmp_path / "n"), "--quiet"])
    assert none.exit_code == 2 and none.stdout == ""
    lines = none.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot be downloaded automatically" in lines[0] and "--from" in lines[0]


def test_every_long_command_takes_both_flags() -> None:
    for command in (["prepare"], ["train"], ["eval"], ["index", "build"], ["index", "add"], ["embed"], ["qa"]):
        res = runner.invoke(app, [*command, "--help"], terminal_width=200)
        assert res.exit_code == 0 and "--quiet" in res.stdout and "--verbose" in res.stdout, command


def test_eval_quiet_keeps_the_table_verbose_adds_paths_and_timings(shapes: Path, tmp_path: Path) -> None:
    base = ["eval", str(shapes), "--workers", "0", "--out", str(tmp_path / "out")]
    env = {"VITLENS_CACHE": str(tmp_path / "cache")}
    normal = runner.invoke(app, base, env=env)
    quiet = runner.invoke(app, [*base, "--quiet"], env=env)
    verbose = runner.invoke(app, [*base, "--verbose"], env=env)
    assert normal.exit_code == quiet.exit_code == verbose.exit_code == 0, normal.output
    assert "shapes/s; outputs in" in normal.stdout and "zero-shot" in normal.stdout
    assert "zero-shot" in quiet.stdout and "shapes/s" not in quiet.stdout and quiet.stderr == ""
    def table(stdout: str) -> list[str]:  # minus the last column: prompts encoded (0 once they are cached)
        return [ln.rsplit("│", 2)[0] for ln in stdout.splitlines() if ln.startswith("│")]

    assert table(verbose.stdout) == table(normal.stdout) and len(table(normal.stdout)) == 1
    details = _details(verbose.stderr)
    assert any(f"outputs in {(tmp_path / 'out').resolve()}" in ln and "model: tiny" in ln for ln in details)
    assert any(ln.startswith("· evaluating: ") and ln.endswith(" s") for ln in details)
    assert not _details(normal.stderr)


def test_index_build_quiet_is_silent_verbose_names_the_folder(shapes: Path, tmp_path: Path) -> None:
    base = ["index", "build", str(shapes), "--model", "tiny", "--modality", "3d"]
    quiet = runner.invoke(app, [*base, "--out", str(tmp_path / "q"), "--quiet"])
    assert quiet.exit_code == 0, quiet.output
    assert quiet.stdout == "" and quiet.stderr == ""
    assert (tmp_path / "q").is_dir()
    verbose = runner.invoke(app, [*base, "--out", str(tmp_path / "v"), "--verbose"])
    assert verbose.exit_code == 0, verbose.output
    assert verbose.stdout.startswith(f"built {tmp_path / 'v'}: 4 rows")
    details = _details(verbose.stderr)
    assert f"· index folder: {(tmp_path / 'v').resolve()}; model: tiny; device: auto" in details
    assert any(ln.startswith("· embedding and indexing: ") for ln in details)


def test_quiet_and_verbose_together_is_a_usage_error(shapes: Path) -> None:
    res = runner.invoke(app, ["index", "build", str(shapes), "--out", "x", "--quiet", "--verbose"])
    assert res.exit_code == 2 and res.stderr.strip() == "error: --quiet: cannot be combined with --verbose"


def test_embed_quiet_keeps_the_similarity_table_verbose_times_it(shapes: Path, tmp_path: Path) -> None:
    base = ["embed", str(shapes / "mug"), "--modality", "3d", "--workers", "0", "--text", "a mug"]
    quiet = runner.invoke(app, [*base, "--quiet", "--out", str(tmp_path / "q.npy")])
    assert quiet.exit_code == 0, quiet.output
    assert quiet.stderr == "" and "softmax" in quiet.stdout and "embedded" not in quiet.stdout
    assert (tmp_path / "q.npy").is_file()
    verbose = runner.invoke(app, [*base, "--verbose", "--out", str(tmp_path / "v.npy")])
    assert verbose.exit_code == 0, verbose.output
    assert verbose.stdout.startswith("embedded 2 item(s) (2 3d)")
    details = _details(verbose.stderr)
    assert any(ln.startswith("· model: tiny") and ln.endswith(f"output: {tmp_path / 'v.npy'}") for ln in details)
    assert any(ln.startswith("· embedding: ") and ln.endswith(" s") for ln in details)
