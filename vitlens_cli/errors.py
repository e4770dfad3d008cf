"""Exceptions a user can act on; the CLI turns each into one line and a non-zero exit."""
from __future__ import annotations


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
