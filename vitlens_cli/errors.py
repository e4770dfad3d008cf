"""Exceptions a user can act on; the CLI turns each into one line and a non-zero exit."""
from __future__ import annotations

import errno
import os
from pathlib import Path


def os_reason(exc: OSError, path: str | Path | None = None, *, missing: str = "no such file") -> str:
    """What a failed ``stat``/``open``/``listdir`` of a user's path means, in words (a loop is not "no such
    file"); ``missing`` is the words for a path that is not there ("no such file or folder" where either
    was asked for)."""
    if exc.errno == errno.ELOOP:
        return "symbolic link loop"
    if exc.errno == errno.ENOENT and path is not None and os.path.islink(path):
        try:
            return f"broken symbolic link (to {os.readlink(path)})"
        except OSError:
            return "broken symbolic link"
    if exc.errno == errno.ENOENT:
        return missing
    if exc.errno == errno.ENOTDIR:
        return f"{missing} (a part of the path is a file, not a folder)"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    return (exc.strerror or type(exc).__name__).lower()


class VitlensError(Exception):
    """Base class for every error vitlens raises on purpose: ``(subject, reason)``.

    ``subject`` names what is wrong (a file, a config key, a model); ``reason`` says why. The
    message is ``"<subject>: <reason>"``, the form the CLI prints as ``error: …``. A single
    argument is a message without a separate subject (``subject`` is then ``None``).
    """

    def __init__(self, subject: object, reason: str | None = None) -> None:
        if reason is None:
            super().__init__(str(subject))
            self.subject, self.reason = None, str(subject)
        else:
            super().__init__(f"{subject}: {reason}")
            self.subject, self.reason = subject, reason


class PointFileError(VitlensError):
    """A 3D file could not be read or holds no usable points."""

    def __init__(self, path: object, reason: str) -> None:
        super().__init__(path, reason)
        self.path = path


class CheckpointError(VitlensError):
    """A checkpoint does not match the model it is loaded into."""


class ConfigError(VitlensError):
    """A model or run configuration is invalid."""
