"""Read ``.npy`` files that hold pickled dicts of arrays (OpenShape's format) without trusting them.

``np.load(allow_pickle=True)`` would run whatever the pickle asks for. Here the pickle may only
rebuild numpy arrays, dtypes and scalars plus plain containers; anything else is refused.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from ..errors import VitlensError
from .inputs import file_problem

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    ("collections", "OrderedDict"),
}


class UnsafePickleError(VitlensError):
    pass


class _Restricted(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise UnsafePickleError(f"refusing to load '{module}.{name}'")


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
            obj = _Restricted(fh).load()
    except UnsafePickleError as exc:
        raise VitlensError(f"{path}: {exc}; only arrays and plain containers are loaded") from exc
    except (ValueError, OSError, EOFError, pickle.UnpicklingError) as exc:
        raise VitlensError(f"{path}: not a readable .npy file ({exc})") from exc
    if isinstance(obj, np.ndarray) and obj.shape == () and obj.dtype == object:
        return obj.item()  # what np.save(dict) writes: a 0-d object array
    return obj
