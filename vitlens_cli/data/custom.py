"""Your own labelled shapes: a folder of class sub-folders, or a CSV with the header ``path,label``."""
from __future__ import annotations

import csv
import io
import os
import stat
from pathlib import Path

import numpy as np

from ..errors import PointFileError, VitlensError
from ..points import is_supported, read_points
from .inputs import os_reason, special_kind

CSV_HEADER = ("path", "label")
# A CSV of paths and labels; anything bigger is not one, and reading it whole would cost the memory.
MAX_CSV_BYTES = 256 << 20


class LabelledFiles:
    """``ds[i] -> (points (N, 3|6), label, path)`` read on demand; class names are the prompts.

    ``failures`` lists ``(path, reason)`` for what was found but cannot be read (an unreadable sub-folder,
    a symlink loop, a FIFO): reported as skipped, like a file that fails to parse.
    """

    def __init__(self, items: list[tuple[Path, str]], up_axis: str | None = None,
                 failures: list[tuple[str, str]] | None = None) -> None:
        if not items:
            raise VitlensError("no labelled 3D files found")
        self.classes = sorted({label for _, label in items})
        lookup = {c: i for i, c in enumerate(self.classes)}
        self.paths = [p for p, _ in items]
        self.labels = np.array([lookup[label] for _, label in items], dtype=np.int64)
        self.names = [str(p) for p in self.paths]
        self.up_axis = up_axis
        self.failures = list(failures or [])

    @classmethod
    def from_folder(cls, root: Path) -> LabelledFiles:
        root = Path(root)
        try:
            subs = sorted(p for p in root.iterdir() if p.is_dir())
        except OSError as exc:
            raise VitlensError(f"{root}: {os_reason(exc, root)}") from None
        items: list[tuple[Path, str]] = []
        failures: list[tuple[str, str]] = []
        for sub in subs:
            label = sub.name.replace("_", " ")

            def unreadable(exc: OSError) -> None:
                failures.append((str(exc.filename), f"folder not readable ({os_reason(exc, exc.filename)})"))

            for folder, dirs, files in os.walk(sub, onerror=unreadable):
                dirs.sort()
                for name in sorted(files):
                    path = Path(folder) / name
                    if not is_supported(path):
                        continue
                    try:
                        st = os.stat(path)
                    except OSError as exc:
                        failures.append((str(path), os_reason(exc, path)))
                        continue
                    if stat.S_ISREG(st.st_mode):
                        items.append((path, label))
                    elif not stat.S_ISDIR(st.st_mode):
                        failures.append((str(path), f"not a regular file ({special_kind(st.st_mode)})"))
        if not items:
            more = f" ({len(failures)} unreadable, first: {failures[0][0]}: {failures[0][1]})" if failures else ""
            raise VitlensError(f"{root}: no class sub-folders with supported 3D files{more}")
        return cls(items, failures=failures)

    @classmethod
    def from_csv(cls, path: Path) -> LabelledFiles:
        path = Path(path)
        text = _read_text(path)
        items: list[tuple[Path, str]] = []
        header_seen = False
        try:
            reader = csv.reader(io.StringIO(text, newline=""))
            for row in reader:
                n = reader.line_num
                if not row or not "".join(row).strip() or row[0].strip().startswith("#"):
                    continue
                cells = [c.strip() for c in row]
                if not header_seen:
                    if [c.lower() for c in cells[:2]] != list(CSV_HEADER):
                        raise VitlensError(f"{path}:{n}: the first row must be the header 'path,label', found "
                                           f"{','.join(cells)[:80]!r}")
                    header_seen = True
                    continue
                if len(cells) < 2 or not cells[0] or not cells[1]:
                    raise VitlensError(f"{path}:{n}: expected 'path,label', found {','.join(cells)[:80]!r}")
                file = Path(cells[0])
                items.append((file if file.is_absolute() else path.parent / file, cells[1]))
        except csv.Error as exc:
            raise VitlensError(f"{path}: not a readable CSV ({exc})") from None
        if not header_seen:
            raise VitlensError(f"{path}: empty; expected the header 'path,label' and one row per shape")
        if not items:
            raise VitlensError(f"{path}: no rows after the header 'path,label'")
        return cls(items)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int, str]:
        path = self.paths[i]
        try:
            st = os.stat(path)
        except OSError as exc:
            raise PointFileError(path, os_reason(exc, path)) from None
        if not stat.S_ISREG(st.st_mode):
            kind = "a folder" if stat.S_ISDIR(st.st_mode) else special_kind(st.st_mode)
            raise PointFileError(path, f"not a regular file ({kind})")
        cloud = read_points(path)
        arr = cloud.xyz if cloud.rgb is None else np.concatenate([cloud.xyz, cloud.rgb], axis=1)
        return arr, int(self.labels[i]), self.names[i]


def _read_text(path: Path) -> str:
    try:
        size = os.stat(path).st_size
        if size > MAX_CSV_BYTES:
            raise VitlensError(f"{path}: {size} bytes, more than a CSV of paths and labels can be "
                               f"({MAX_CSV_BYTES} bytes)")
        with open(path, "rb") as fh:
            raw = fh.read(MAX_CSV_BYTES + 1)
    except OSError as exc:
        raise VitlensError(f"{path}: {os_reason(exc, path)}") from None
    nul = raw.find(b"\x00")
    if nul >= 0:
        raise VitlensError(f"{path}: holds a NUL byte at offset {nul}; not a text CSV")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise VitlensError(f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})") from None
