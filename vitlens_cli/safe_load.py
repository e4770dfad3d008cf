"""``torch.load`` for files nobody vouches for: tensors and plain containers only, nothing printed."""
from __future__ import annotations

import os
import pickle
import stat
import warnings
import zipfile
from pathlib import Path
from typing import Any

# Said in place of torch's own message, which ends by suggesting ``weights_only=False`` (running the file's code).
REFUSED = "refused: it holds Python objects other than tensors and plain data (unpickling them could run code)"
UNSUPPORTED = ("refused: written with pickle protocol {}, which torch's safe (weights-only) reader does not "
               "support; re-save it with torch.save's defaults")
NOT_TORCH = "not a loadable torch checkpoint (its bytes are no pickle stream torch can read)"
SPECIAL = "not a regular file (a named pipe, socket or device): refused, reading it could wait forever"


def _pickle_protocol(path: Path) -> int | None:
    """The protocol byte of the file's pickle stream (inside the zip torch writes, or the legacy stream)."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                name = next((n for n in archive.namelist() if n.endswith("data.pkl")), None)
                head = archive.open(name).read(2) if name else b""
        else:
            with open(path, "rb") as fh:
                head = fh.read(2)
    except (OSError, zipfile.BadZipFile):
        return None
    return head[1] if len(head) == 2 and head[0] == 0x80 else None


def load_tensors(path: str | Path) -> Any:
    """The file's contents, read by torch's weights-only unpickler onto the CPU.

    Raises ``pickle.UnpicklingError`` whose message is the reason to report (:data:`REFUSED`, a protocol the
    reader lacks, :data:`NOT_TORCH`, or :data:`SPECIAL`); callers raise it under their own error type, naming
    the file. A missing file or a folder raises the ``OSError`` ``open`` would.
    """
    import torch

    try:
        mode = os.stat(path).st_mode
    except OSError:
        mode = None  # torch.load raises the matching OSError itself
    if mode is not None and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise pickle.UnpicklingError(SPECIAL)

    with warnings.catch_warnings():
        # torch warns about a file's pickle protocol before it reads (or refuses) it; the caller's one line is
        # what the user needs to see.
        warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            if "Unsupported operand" not in str(exc):
                raise pickle.UnpicklingError(REFUSED) from None
            # An opcode the reader lacks: protocol 4+ framing (whatever the file holds), or no pickle at all.
            protocol = _pickle_protocol(Path(path))
            if protocol is not None and protocol >= 4:
                raise pickle.UnpicklingError(UNSUPPORTED.format(protocol)) from None
            raise pickle.UnpicklingError(NOT_TORCH) from None
