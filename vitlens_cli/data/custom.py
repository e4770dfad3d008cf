"""Your own labelled shapes: a folder of class sub-folders, or a CSV of ``path,label``."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ..errors import VitlensError
from ..points import is_supported, read_points


class LabelledFiles:
    """``ds[i] -> (points (N, 3|6), label, path)`` read on demand; class names are the prompts."""

    def __init__(self, items: list[tuple[Path, str]], up_axis: str | None = None) -> None:
        if not items:
            raise VitlensError("no labelled 3D files found")
        self.classes = sorted({label for _, label in items})
        lookup = {c: i for i, c in enumerate(self.classes)}
        self.paths = [p for p, _ in items]
        self.labels = np.array([lookup[label] for _, label in items], dtype=np.int64)
        self.names = [str(p) for p in self.paths]
        self.up_axis = up_axis

    @classmethod
    def from_folder(cls, root: Path) -> LabelledFiles:
        items = [(p, sub.name.replace("_", " ")) for sub in sorted(root.iterdir()) if sub.is_dir()
                 for p in sorted(sub.rglob("*")) if p.is_file() and is_supported(p)]
        if not items:
            raise VitlensError(f"{root}: no class sub-folders with supported 3D files")
        return cls(items)

    @classmethod
    def from_csv(cls, path: Path) -> LabelledFiles:
        items = []
        with open(path, newline="", encoding="utf-8") as fh:
            for n, row in enumerate(csv.reader(fh), start=1):
                if not row or row[0].strip().startswith("#"):
                    continue
                if n == 1 and [c.strip().lower() for c in row[:2]] == ["path", "label"]:
                    continue
                if len(row) < 2:
                    raise VitlensError(f"{path}:{n}: expected 'path,label'")
                file = Path(row[0].strip())
                items.append((file if file.is_absolute() else path.parent / file, row[1].strip()))
        return cls(items)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int, str]:
        cloud = read_points(self.paths[i])
        arr = cloud.xyz if cloud.rgb is None else np.concatenate([cloud.xyz, cloud.rgb], axis=1)
        return arr, int(self.labels[i]), self.names[i]
