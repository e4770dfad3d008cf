"""os_reason: a failed stat of a user's path in words, the one wording every layer uses."""
from __future__ import annotations

import errno
import os

import pytest

from vitlens_cli.errors import os_reason


def _stat_error(path) -> OSError:
    with pytest.raises(OSError) as info:
        os.stat(path)
    return info.value


def test_missing_paths_say_what_was_asked_for(tmp_path):
    exc = _stat_error(tmp_path / "nope.ply")
    assert os_reason(exc, tmp_path / "nope.ply") == "no such file"
    assert os_reason(exc, tmp_path / "nope.ply", missing="no such file or folder") == "no such file or folder"
    (tmp_path / "a.txt").write_text("x")
    inside = tmp_path / "a.txt" / "b.ply"
    assert os_reason(_stat_error(inside), inside) == "no such file (a part of the path is a file, not a folder)"


def test_links_are_named_as_links(tmp_path):
    os.symlink(tmp_path / "gone.ply", tmp_path / "dead.ply")
    assert os_reason(_stat_error(tmp_path / "dead.ply"), tmp_path / "dead.ply") == \
        f"broken symbolic link (to {tmp_path / 'gone.ply'})"
    # Without the path, a dangling link cannot be told from a missing file.
    assert os_reason(_stat_error(tmp_path / "dead.ply")) == "no such file"
    os.symlink(tmp_path / "b", tmp_path / "a")
    os.symlink(tmp_path / "a", tmp_path / "b")
    assert os_reason(_stat_error(tmp_path / "a"), tmp_path / "a") == "symbolic link loop"


@pytest.mark.parametrize("code", [errno.EACCES, errno.EPERM])
def test_permission_problems(code):
    assert os_reason(OSError(code, os.strerror(code)), "x") == "permission denied"


def test_other_errors_keep_the_system_words():
    assert os_reason(OSError(errno.EIO, "Input/output error"), "x") == "input/output error"
    assert os_reason(OSError("no errno")) == "oserror"
