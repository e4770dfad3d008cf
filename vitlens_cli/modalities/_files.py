"""Array containers shared by the depth and EEG readers: ``.npy``, ``.npz`` and ``.pt``.

Nothing here runs a pickle: ``.npy``/``.npz`` load with ``allow_pickle=False`` and ``.pt`` with
``weights_only=True``; a file that needs more is refused with a one-line reason.
"""
from __future__ import annotations

import os
import pickle
import sys
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..safe_load import load_tensors
from .base import ModalityFileError, first_line


# .pt: a zip archive (torch >= 1.6) or a legacy pickle stream (protocol 2+ starts with 0x80)
_MAGIC = {".npy": b"\x93NUMPY", ".npz": b"PK", ".pt": (b"PK", b"\x80")}


def load_arrays(path: Path, what: str, keys: tuple[str, ...]) -> np.ndarray | torch.Tensor:
    """The one array in ``path`` (for several: the first of ``keys`` present), not yet validated."""
    suffix = path.suffix.lower()
    with open(path, "rb") as fh:
        magic = fh.read(6)
    if not magic.startswith(_MAGIC[suffix]):
        raise ModalityFileError(path, f"not a {suffix} file (its first bytes are not a {suffix} header)")
    try:
        if suffix == ".pt":
            value: Any = load_tensors(path)
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                value = {name: archive[name] for name in archive.files}
        else:
            value = np.load(path, allow_pickle=False)
    except pickle.UnpicklingError as exc:
        raise ModalityFileError(path, str(exc)) from None
    except ValueError as exc:
        if "pickle" in str(exc):
            raise ModalityFileError(path, f"holds pickled objects, not a plain {what} array") from None
        raise ModalityFileError(path, f"cannot read {what} ({first_line(exc)})") from exc
    except (OSError, EOFError, RuntimeError, KeyError, zipfile.BadZipFile) as exc:
        raise ModalityFileError(path, f"cannot read {what} ({first_line(exc)})") from exc
    if isinstance(value, dict):
        value = _pick(path, value, what, keys)
    if isinstance(value, torch.Tensor):
        value = value.detach()
        if value.is_complex() or value.dtype == torch.bool:
            raise ModalityFileError(path, f"{what} tensor has dtype {value.dtype}, expected real numbers")
        return value
    if isinstance(value, np.ndarray):
        if not np.issubdtype(value.dtype, np.number) or np.issubdtype(value.dtype, np.complexfloating):
            raise ModalityFileError(path, f"{what} array has dtype {value.dtype}, expected real numbers")
        return value
    raise ModalityFileError(path, f"holds a {type(value).__name__}, expected a {what} array")


def _pick(path: Path, items: dict, what: str, keys: tuple[str, ...]) -> Any:
    if len(items) == 1:
        return next(iter(items.values()))
    for key in keys:
        if key in items:
            return items[key]
    raise ModalityFileError(path, f"no {what} array among keys {sorted(map(str, items))} "
                                  f"(expected one array or a key among {', '.join(keys)})")


@contextmanager
def silenced_native_output() -> Iterator[None]:
    """Send file descriptors 1 and 2 to /dev/null while a native decoder runs.

    Some C/C++ decoders (mpg123 inside libsndfile, OpenEXR) print warnings straight to the process's
    stdout/stderr, which would break the CLI's one line per bad file; their errors still reach
    Python as exceptions and are reported from there.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 1)
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)
