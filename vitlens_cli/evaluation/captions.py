"""A captions CSV for retrieval evaluation: which file each caption describes.

Header ``path,caption`` (in either order; other columns are allowed and ignored), then one row per
(file, caption) pair. A file may have several captions (Clotho has 5 per clip) and a caption may describe
several files. Paths are relative to the CSV's folder (or absolute); the modality of each file follows its
extension, or the first of the given modalities that reads it (``.npy`` is 3D or depth). Blank lines and
lines whose first cell starts with ``#`` are skipped. Everything is checked before any model is loaded:
every problem is one error naming the CSV, the line and the column.

An *item* is a distinct file (by absolute path, in order of first appearance); a *caption* is a distinct
caption text (after stripping the cell's outer whitespace, compared exactly, in order of first appearance).
"""
from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.custom import CSV_HEADER as LABELS_HEADER
from ..data.custom import read_text_file
from ..data.inputs import input_kind
from ..errors import VitlensError

PATH, CAPTION = "path", "caption"
_FORMS = f"'{','.join(LABELS_HEADER)}' (classification) or '{PATH},{CAPTION}' (retrieval)"


@dataclass
class Captions:
    """The pairs of a captions CSV: ``pairs[r] = (caption index, item index)`` for every row ``r``."""

    csv: Path
    items: list[str]
    modalities: list[str]
    texts: list[str]
    pairs: np.ndarray

    def relevance(self) -> np.ndarray:
        """``(captions, items)`` bool: which items each caption describes."""
        rel = np.zeros((len(self.texts), len(self.items)), dtype=np.bool_)
        rel[self.pairs[:, 0], self.pairs[:, 1]] = True
        return rel

    def head(self, n: int) -> Captions:
        """The first ``n`` items and the captions of theirs (``--limit``)."""
        if n >= len(self.items):
            return self
        pairs = self.pairs[self.pairs[:, 1] < n]
        kept = list(dict.fromkeys(pairs[:, 0].tolist()))
        renumber = {old: new for new, old in enumerate(kept)}
        pairs = np.array([(renumber[t], i) for t, i in pairs.tolist()], dtype=np.int64).reshape(-1, 2)
        return Captions(self.csv, self.items[:n], self.modalities[:n], [self.texts[t] for t in kept], pairs)


def _rows(path: Path, text: str):
    """``(line number, stripped cells)`` of the rows that are not blank or comments."""
    # strict: a quote left open would otherwise swallow the rest of the file into one caption
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        for row in reader:
            if not row or not "".join(row).strip() or row[0].strip().startswith("#"):
                continue
            yield reader.line_num, [c.strip() for c in row]
    except csv.Error as exc:
        raise VitlensError(f"{path}:{reader.line_num}: not a readable CSV ({exc})") from None


def is_captions_csv(name: str | Path) -> bool:
    """Whether ``vitlens eval NAME`` is retrieval: a ``.csv`` file whose header has a ``caption`` column.

    ``False`` for a ``path,label`` CSV and for anything that is not a ``.csv`` file (benchmark names,
    folders); a CSV with neither header is an error naming both forms.
    """
    path = Path(name)
    if path.suffix.lower() != ".csv" or not os.path.lexists(path):
        return False
    # Only a regular file is opened: a FIFO named like a CSV would block the reader.
    if input_kind(path, what="eval input") == "dir":
        return False
    for n, cells in _rows(path, read_text_file(path)):
        names = [c.lower() for c in cells]
        if names[:2] == list(LABELS_HEADER):
            return False
        if CAPTION in names:
            return True
        raise VitlensError(f"{path}:{n}: the first row must be the header {_FORMS}, found "
                           f"{','.join(cells)[:80]!r}")
    raise VitlensError(f"{path}: empty; expected the header {_FORMS} and one row per file")


def read_captions(path: str | Path, modalities: Sequence[str] = ()) -> Captions:
    """Read and check a captions CSV; ``modalities`` name the modality of ambiguous extensions."""
    from ..embedding import modality_of

    path = Path(path)
    input_kind(path, what="captions CSV")
    rows = _rows(path, read_text_file(path))
    first = next(rows, None)
    if first is None:
        raise VitlensError(f"{path}: empty; expected the header '{PATH},{CAPTION}' and one row per caption")
    n, header = first
    names = [c.lower() for c in header]
    for column in (PATH, CAPTION):
        if column not in names:
            raise VitlensError(f"{path}:{n}: no '{column}' column in the header {','.join(header)[:80]!r}")
    for i, name in enumerate(names):
        if not name:
            raise VitlensError(f"{path}:{n}: column {i + 1} of the header has no name")
        if names.index(name) != i:
            raise VitlensError(f"{path}:{n}: column '{header[i]}' appears twice in the header")
    at_path, at_caption, width = names.index(PATH), names.index(CAPTION), len(names)

    items: dict[str, int] = {}
    item_modality: list[str] = []
    texts: dict[str, int] = {}
    pairs: list[tuple[int, int]] = []
    seen: dict[tuple[int, int], int] = {}
    for n, cells in rows:
        if len(cells) != width:
            hint = "; quote captions that hold commas" if len(cells) > width else ""
            raise VitlensError(f"{path}:{n}: {len(cells)} field(s) but the header has {width}{hint}")
        file, caption = cells[at_path], cells[at_caption]
        if not file:
            raise VitlensError(f"{path}:{n}: empty '{PATH}'")
        if not caption:
            raise VitlensError(f"{path}:{n}: empty '{CAPTION}' for {file}")
        full = os.path.abspath(file if os.path.isabs(file) else path.parent / file)
        if full not in items:
            try:
                item_modality.append(modality_of(Path(full), modalities))
            except VitlensError as exc:
                raise VitlensError(f"{path}:{n}: {file}: {getattr(exc, 'reason', exc)}") from None
            items[full] = len(items)
        pair = (texts.setdefault(caption, len(texts)), items[full])
        if pair in seen:
            raise VitlensError(f"{path}:{n}: repeats line {seen[pair]} (the same path and caption)")
        seen[pair] = n
        pairs.append(pair)
    if not pairs:
        raise VitlensError(f"{path}: no rows after the header '{','.join(header)[:80]}'")
    return Captions(path, list(items), item_modality, list(texts), np.array(pairs, dtype=np.int64))
