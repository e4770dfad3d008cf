"""What a user's path is, before anything opens it.

Inputs are opened only if they are regular files, or folders to expand: opening a FIFO blocks until a writer
appears (forever, usually), and a socket or device streams without an end. A symlink loop or a permission
problem is reported as what it is, not as "no such file".
"""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Literal

from ..errors import VitlensError, os_reason

_SPECIAL = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"),
            (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def special_kind(mode: int) -> str | None:
    """``"a named pipe (FIFO)"`` etc. for a mode that is neither a regular file nor a folder, else None."""
    return next((what for test, what in _SPECIAL if test(mode)), None)


def file_problem(path: str | Path) -> str | None:
    """Why ``path`` cannot be read as a regular file (in words), or None when it can be opened safely."""
    try:
        st = os.stat(path)
    except OSError as exc:
        return os_reason(exc, path)
    if stat.S_ISREG(st.st_mode):
        return None
    if stat.S_ISDIR(st.st_mode):
        return "a folder, not a file"
    return f"not a regular file ({special_kind(st.st_mode)})"


def is_missing(path: str | Path) -> bool:
    """True only when nothing is there; a path that exists but cannot be read is not missing."""
    try:
        os.lstat(path)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return False


def input_kind(path: str | Path, *, what: str = "input") -> Literal["file", "dir"]:
    """``"file"`` or ``"dir"`` for a path that may be opened; a :class:`VitlensError` naming it otherwise."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise VitlensError(f"{path}: {os_reason(exc, path, missing='no such file or folder')}") from None
    if stat.S_ISDIR(st.st_mode):
        return "dir"
    if stat.S_ISREG(st.st_mode):
        return "file"
    kind = special_kind(st.st_mode) or "not a regular file"
    raise VitlensError(f"{path}: {kind}; the {what} must be a regular file or a folder")
