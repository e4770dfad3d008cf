"""Your own labelled files of one modality: a folder of class sub-folders, or a CSV with the header ``path,label``.

The modality is ``--modality`` where given; otherwise the one the files' extensions name, 3D for the
extensions it shares (``.npy``/``.npz``, as before other modalities existed). Extensions only other
modalities share (``.png``, ``.jpg``) need ``--modality``; files of two modalities are refused.
"""
from __future__ import annotations

import csv
import io
import os
import stat
from pathlib import Path

import numpy as np

from ..errors import PointFileError, VitlensError, os_reason
from ..modalities import ModalityFileError, get_modality, list_modalities
from ..points import read_points
from .inputs import special_kind

POINTS = "3d"

CSV_HEADER = ("path", "label")
# A CSV of paths and labels; anything bigger is not one, and reading it whole would cost the memory.
MAX_CSV_BYTES = 256 << 20


def _vote(path: Path) -> str | None:
    """The modality a file's extension names on its own: its one owner, else 3D where 3D reads it."""
    suffix = path.suffix.lower()
    readers = [m for m in list_modalities() if suffix in m.suffixes]
    owners = [m.name for m in readers if suffix in m.extensions]
    if len(owners) == 1:
        return owners[0]
    return POINTS if any(m.name == POINTS for m in readers) else None


def dataset_modality(paths: list[Path], explicit: str | None, where: Path) -> str:
    """The one modality of a labelled dataset's files (see the module docstring)."""
    if explicit is not None:
        return get_modality(explicit).name
    votes: dict[str, int] = {}
    for path in paths:
        name = _vote(path)
        if name is not None:
            votes[name] = votes.get(name, 0) + 1
    if len(votes) > 1:
        found = ", ".join(f"{n} {m}" for m, n in sorted(votes.items()))
        raise VitlensError(f"{where}: holds files of several modalities ({found}); evaluate one at a time "
                           "(--modality)")
    if votes:
        return next(iter(votes))
    readers = sorted({m.name for p in paths for m in list_modalities() if p.suffix.lower() in m.suffixes})
    first = paths[0] if paths else where
    raise ModalityFileError(first, f"'{first.suffix or first.name}' could be {' or '.join(readers) or 'nothing'}: "
                                   "name the modality (--modality)")


class LabelledFiles:
    """``ds[i] -> (signal, label, path)`` read on demand; class names are the prompts.

    The signal is what the modality plug-in reads (points ``(N, 3|6)`` for 3D), preprocessed by eval.
    ``failures`` lists ``(path, reason)`` for what was found but cannot be read (an unreadable sub-folder,
    a symlink loop, a FIFO): reported as skipped, like a file that fails to parse.
    """

    def __init__(self, items: list[tuple[Path, str]], up_axis: str | None = None,
                 failures: list[tuple[str, str]] | None = None, modality: str = POINTS) -> None:
        if not items:
            raise VitlensError("no labelled files found")
        self.modality = modality
        self.classes = sorted({label for _, label in items})
        lookup = {c: i for i, c in enumerate(self.classes)}
        self.paths = [p for p, _ in items]
        self.labels = np.array([lookup[label] for _, label in items], dtype=np.int64)
        self.names = [str(p) for p in self.paths]
        self.up_axis = up_axis
        self.failures = list(failures or [])

    @classmethod
    def from_folder(cls, root: Path, modality: str | None = None) -> LabelledFiles:
        """Files under ``root/<class>/`` (any depth); ``modality`` takes only the files it reads."""
        root = Path(root)
        wanted = frozenset(get_modality(modality).suffixes if modality is not None else
                           (s for m in list_modalities() for s in m.suffixes))
        try:
            subs = sorted(p for p in root.iterdir() if p.is_dir())
        except OSError as exc:
            raise VitlensError(f"{root}: {os_reason(exc, root, missing='no such file or folder')}") from None
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
                    if path.suffix.lower() not in wanted:
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
            what = "3D files (nor files another modality reads)" if modality is None else f"{modality} files"
            raise VitlensError(f"{root}: no class sub-folders with supported {what}{more}")
        name = dataset_modality([p for p, _ in items], modality, root)
        if modality is None:  # files of the extensions only another modality reads are not this dataset's
            suffixes = get_modality(name).suffixes
            items = [(p, label) for p, label in items if p.suffix.lower() in suffixes]
        return cls(items, failures=failures, modality=name)

    @classmethod
    def from_csv(cls, path: Path, modality: str | None = None) -> LabelledFiles:
        """Rows ``path,label`` (paths relative to the CSV's folder); a row's file is read when evaluated."""
        path = Path(path)
        text = read_text_file(path)
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
        return cls(items, modality=dataset_modality([p for p, _ in items], modality, path))

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[object, int, str]:
        path = self.paths[i]
        error = PointFileError if self.modality == POINTS else ModalityFileError
        try:
            st = os.stat(path)
        except OSError as exc:
            raise error(path, os_reason(exc, path)) from None
        if not stat.S_ISREG(st.st_mode):
            kind = "a folder" if stat.S_ISDIR(st.st_mode) else special_kind(st.st_mode)
            raise error(path, f"not a regular file ({kind})")
        if self.modality != POINTS:
            return get_modality(self.modality).read(path), int(self.labels[i]), self.names[i]
        cloud = read_points(path)
        arr = cloud.xyz if cloud.rgb is None else np.concatenate([cloud.xyz, cloud.rgb], axis=1)
        return arr, int(self.labels[i]), self.names[i]


def read_text_file(path: Path) -> str:
    """A small UTF-8 text file (a CSV of paths), bounded in size; a project error naming it otherwise."""
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
