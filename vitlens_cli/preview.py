"""What a model is fed, drawn: each file read and preprocessed under a model card's contract, one tile per file.

The tiles use the renderers of the retrieval pages (:mod:`vitlens_cli.thumbnails`), but show the *prepared*
input rather than the file: the sampled, normalised cloud in the contract's up-axis, the cropped disparity map,
the log-mel clips, the resized image — with the contract's mean/std normalisation undone so values read in
their own units. Several files become one grid, each tile labelled with its file name and modality.
"""
from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import VitlensError
from .thumbnails import SIZE, render_array, render_points, render_rgb

LABEL_HEIGHT = 18  # pixels under each tile for its caption


@dataclass
class ShowFailure:
    path: str
    reason: str


@dataclass
class Preview:
    """The grid (``png`` is None when no file could be drawn), what it shows in reading order, what failed."""

    png: bytes | None
    shown: list[str]
    failures: list[ShowFailure]
    columns: int
    rows: int


def grid_shape(count: int) -> tuple[int, int]:
    """``(columns, rows)``: as square as possible, filled row by row."""
    if count <= 0:
        return 0, 0
    columns = math.ceil(math.sqrt(count))
    return columns, math.ceil(count / columns)


def contract_for(modality: str, model: str | None) -> Any:
    """The preprocessing contract of ``modality`` in ``model``'s card (the modality's released default if none)."""
    from .modalities import ModalityError, get_modality

    mod = get_modality(modality)
    if model is None:
        return mod.default_contract()
    from .models.zoo import get_spec, model_modalities

    if modality not in model_modalities(model):
        raise ModalityError(f"model {model} has no {modality} tower "
                            f"(it takes {', '.join(m for m in model_modalities(model) if m != 'text')})")
    spec = get_spec(model)
    if modality == "3d":
        return spec.preprocess
    raw = spec.contracts.get(modality)
    return mod.contract_from_dict(raw) if raw else mod.default_contract()


def _undo_normalisation(x: np.ndarray, contract: Any) -> np.ndarray:
    mean, std = getattr(contract, "mean", None), getattr(contract, "std", None)
    if mean is None or std is None:
        return x
    shape = (-1,) + (1,) * (x.ndim - 1) if np.ndim(mean) else ()  # per-channel values go along the first axis
    return x * np.reshape(np.asarray(std, np.float64), shape) + np.reshape(np.asarray(mean, np.float64), shape)


def render_prepared(modality: str, x: np.ndarray, contract: Any) -> bytes:
    """One tile for a prepared input ``x`` (what ``Modality.preprocess`` returns for one item)."""
    x = np.asarray(x, dtype=np.float64)
    if modality == "3d":
        return render_points(x[:, :3], x[:, 3:6] if x.shape[1] >= 6 else None, contract.up_axis)
    x = _undo_normalisation(x, contract)
    if modality == "audio":
        # (clips, frames, mel bins): clips side by side, low frequencies at the bottom, a dark gap between clips
        gap = np.full((x.shape[2], max(1, x.shape[1] // 64)), np.nan)
        columns = [part for clip in x for part in (np.flipud(clip.T), gap)][:-1]
        return render_array(np.concatenate(columns, axis=1), "magma", positive_only=False)
    if x.ndim == 3 and x.shape[0] == 3:
        return render_rgb(np.transpose(x, (1, 2, 0)))
    if x.ndim == 3 and x.shape[0] == 1:
        return render_array(x[0])
    if x.ndim == 2:
        return render_array(x, "viridis", positive_only=False)
    raise VitlensError(modality, f"cannot draw a prepared input of shape {tuple(x.shape)}")


def _modality_of(path: Path, modality: str | None):
    """The modality its extension names; ``modality`` only for extensions several modalities read."""
    from .modalities import ModalityFileError, modality_for_path

    try:
        return modality_for_path(path)
    except ModalityFileError:
        if modality is None:
            raise
        return modality_for_path(path, modality)


def _tile(path: Path, modality: str | None, model: str | None) -> tuple[str, str, bytes]:
    """``(label, modality, png)``; an ``.h5`` stack shows its first cloud, labelled with its item name."""
    if path.is_dir():
        raise VitlensError(path, "is a folder; give files")
    mod = _modality_of(path, modality)
    contract = contract_for(mod.name, model)
    if mod.name == "3d":
        from .models.preprocess import prepare_points
        from .points import iter_clouds

        item, cloud = next(iter(iter_clouds(path)))
        return Path(item).name, mod.name, render_prepared(mod.name, prepare_points(cloud, contract), contract)
    return path.name, mod.name, render_prepared(mod.name, mod.prepare(path, contract).numpy(), contract)


def preview(paths: Sequence[str | Path], *, model: str | None = None, modality: str | None = None) -> Preview:
    """Draw every readable file of ``paths`` as ``model`` would be fed it; unreadable files are recorded."""
    if model is not None:
        from .models.zoo import get_spec

        get_spec(model)  # an unknown model is one error, not one per file
    tiles: list[tuple[str, str, bytes]] = []
    failures: list[ShowFailure] = []
    for item in paths:
        path = Path(item)
        try:
            label, name, png = _tile(path, modality, model)
        except VitlensError as exc:
            failures.append(ShowFailure(str(path), exc.reason))
            continue
        except OSError as exc:
            failures.append(ShowFailure(str(path), exc.strerror or str(exc)))
            continue
        except ValueError as exc:  # a cloud the sampler refuses (too few points, …), as embed reports it
            failures.append(ShowFailure(str(path), str(exc)))
            continue
        tiles.append((str(path), f"{label} · {name}", png))
    columns, rows = grid_shape(len(tiles))
    png = _grid([(label, png) for _, label, png in tiles], columns, rows) if tiles else None
    return Preview(png, [p for p, _, _ in tiles], failures, columns, rows)


def _grid(tiles: list[tuple[str, bytes]], columns: int, rows: int) -> bytes:
    from PIL import Image, ImageDraw

    cell_h = SIZE + LABEL_HEIGHT
    canvas = Image.new("RGB", (columns * SIZE, rows * cell_h), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (label, png) in enumerate(tiles):
        left, top = (i % columns) * SIZE, (i // columns) * cell_h
        with Image.open(io.BytesIO(png)) as tile:
            tile = tile.convert("RGB")
            canvas.paste(tile, (left + (SIZE - tile.width) // 2, top + (SIZE - tile.height) // 2))
        while draw.textlength(label) > SIZE - 4 and len(label) > 1:
            label = label[:-2] + "…"
        draw.text((left + 2, top + SIZE + 3), label, fill="black")
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    return buf.getvalue()
