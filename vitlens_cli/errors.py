"""Exceptions a user can act on; the CLI turns each into one line and a non-zero exit."""


class VitlensError(Exception):
    """Base class for every error vitlens raises on purpose."""


class PointFileError(VitlensError):
    """A 3D file could not be read or holds no usable points."""

    def __init__(self, path: object, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class CheckpointError(VitlensError):
    """A checkpoint does not match the model it is loaded into."""


class ConfigError(VitlensError):
    """A model or run configuration is invalid."""
