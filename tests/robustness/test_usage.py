"""Usage errors (a wrong-typed value, an unknown option or command, a missing argument) are one ``error:`` line.

The cases are generated from the app itself: every int/float option of every command is given ``ten``, so an
option added later is covered without editing this file.
"""
from __future__ import annotations

import pytest
import typer.main

from vitlens_cli.cli.app import app

from .harness import assert_clean_failure, invoke, run


def _commands(group, path=()):
    for name, cmd in sorted(group.commands.items()):
        if hasattr(cmd, "commands"):
            yield from _commands(cmd, (*path, name))
        else:
            yield (*path, name), cmd


def _numeric_options():
    for path, cmd in _commands(typer.main.get_command(app)):
        for param in cmd.params:
            if param.param_type_name == "option" and param.type_descriptor.annotation in (int, float):
                yield pytest.param(path, param.opts[0], id=f"{'-'.join(path)}{param.opts[0]}")


NUMERIC = list(_numeric_options())


def test_the_app_has_numeric_options_to_check():
    # Guards the generator: an empty list would make the parametrised test below pass vacuously.
    assert len(NUMERIC) >= 10, NUMERIC


def _only_line(outcome, names):
    line = assert_clean_failure(outcome, exit_code=2, names=names)
    assert outcome.stderr.strip() == line, f"more than the error line:\n{outcome.stderr}"
    assert "╭" not in outcome.stdout + outcome.stderr
    return line


@pytest.mark.parametrize(("path", "option"), NUMERIC)
def test_a_word_for_a_number_is_one_line(path, option):
    line = _only_line(invoke([*path, "x", option, "ten"]), [option, "vitlens " + " ".join(path)])
    assert f"see 'vitlens {' '.join(path)} --help'" in line


@pytest.mark.parametrize("args", [["nosuch"], ["index", "nosuch"]], ids=["top", "index"])
def test_an_unknown_command_is_one_line(args):
    _only_line(invoke(args), ["nosuch"])


@pytest.mark.parametrize("path", [p for p, _ in _commands(typer.main.get_command(app))], ids="-".join)
def test_an_unknown_option_is_one_line(path):
    _only_line(invoke([*path, "--no-such-option"]), ["--no-such-option"])


def test_a_missing_argument_is_one_line():
    _only_line(invoke(["embed"]), ["Missing argument"])


def test_control_bytes_in_a_bad_value_stay_escaped():
    line = _only_line(invoke(["no\x1b[31msuch"]), ["No such command"])
    assert "no\\x1b[31msuch" in line


def test_the_installed_entry_point_prints_one_line():
    _only_line(run(["embed", "x", "--batch-size", "ten"], timeout=60), ["--batch-size"])


@pytest.mark.parametrize("args", [[], ["index"]], ids=["top", "index"])
def test_no_arguments_still_show_the_help(args):
    outcome = invoke(args)
    assert outcome.exception is None
    assert "Usage: vitlens" in outcome.stdout + outcome.stderr
    assert "error:" not in outcome.stdout + outcome.stderr
    assert outcome.exit_code == 2  # what click and Typer return for a bare group


def test_help_exits_zero():
    outcome = invoke(["embed", "--help"])
    assert outcome.exit_code == 0 and "Usage: vitlens embed" in outcome.stdout
