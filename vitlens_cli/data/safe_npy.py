"""The one restricted unpickler: pickled data (OpenShape's ``.npy`` dicts, ULIP-2's LMDB records) read
without trusting it.

``np.load(allow_pickle=True)`` or ``pickle.loads`` would run whatever the pickle asks for. Here it may only
rebuild numpy arrays, dtypes and scalars plus plain containers (and bytes, str, numbers); anything else is
refused with :class:`UnsafePickleError`. (Torch checkpoints are read by torch's own weights-only unpickler.)
"""
from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ..errors import VitlensError
from .inputs import file_problem

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    ("collections", "OrderedDict"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),  # protocol-5 arrays
    ("builtins", "bytearray"), ("builtins", "set"), ("builtins", "frozenset"),
}


class UnsafePickleError(VitlensError):
    pass


class _Restricted(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise UnsafePickleError(f"refusing to load '{module}.{name}'")


def safe_load(fh: BinaryIO) -> Any:
    """One pickle from ``fh``, rebuilding only what the allow-list names."""
    return _Restricted(fh).load()


def safe_loads(data: bytes) -> Any:
    """Unpickle ``data`` allowing only numpy arrays/scalars, bytes, str, numbers and containers."""
    return safe_load(io.BytesIO(data))


def load_npy(path: str | Path):
    """An array, or the dict / list / object array a pickled ``.npy`` holds (arrays only inside)."""
    path = Path(path)
    problem = file_problem(path)  # opening a FIFO would block
    if problem is not None:
        raise VitlensError(f"{path}: {problem}")
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                np.lib.format.read_array_header_2_0
            _, _, dtype = read_header(fh)
            if not dtype.hasobject:
                fh.seek(0)
                return np.load(fh, allow_pickle=False)
            obj = safe_load(fh)
    except UnsafePickleError as exc:
        raise VitlensError(f"{path}: {exc}; only arrays and plain containers are loaded") from exc
    except (ValueError, OSError, EOFError, pickle.UnpicklingError) as exc:
        raise VitlensError(f"{path}: not a readable .npy file ({exc})") from exc
    if isinstance(obj, np.ndarray) and obj.shape == () and obj.dtype == object:
        return obj.item()  # what np.save(dict) writes: a 0-d object array
    return obj
