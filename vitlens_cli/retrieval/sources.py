"""Input files of any modality → rows of the index: expansion, modality of each file, embedding.

The modality of a file comes from the plug-in registry (:mod:`vitlens_cli.modalities`): its extension,
or the first ``--modality`` that reads that extension (``.npy`` is 3D or depth). 3D goes through
:func:`vitlens_cli.embedding.embed_files` (meshes sampled, ``.h5`` stacks give one row per cloud); every
other modality through its plug-in's ``read``/``preprocess`` and ``model.encode(modality, batch)``.
"""
from __future__ import annotations

import glob
import json
import os
import stat
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import VitlensError

POINTS = "3d"


@dataclass
class Source:
    path: str
    modality: str


@dataclass
class Failure:
    path: str
    reason: str


def _modalities():
    from .. import modalities

    return modalities


def known_modalities() -> tuple[str, ...]:
    return _modalities().modality_names()


def check_modality(name: str) -> str:
    """``name`` as the registry spells it; an unknown one is a one-line error listing the known ones."""
    try:
        return _modalities().get_modality(name).name
    except VitlensError:
        raise VitlensError(f"{name}: unknown modality (known: {', '.join(known_modalities())})") from None


def modality_of(path: Path, preferred: Sequence[str] = ()) -> str:
    """The modality that reads ``path``: the first of ``preferred`` that reads its extension, else its own."""
    mods = _modalities()
    suffix = path.suffix.lower()
    for name in preferred:
        if suffix in mods.get_modality(name).suffixes:
            return mods.get_modality(name).name
    return mods.modality_for_path(path).name


def _readable_suffix(name: str) -> bool:
    suffix = Path(name).suffix.lower()
    return any(suffix in m.suffixes for m in _modalities().list_modalities())


def expand(inputs: Sequence[str | Path], preferred: Sequence[str] = ()) -> tuple[list[Source], list[Failure]]:
    """Files in the given order (folders recursively and sorted, globs sorted), each with its modality."""
    files: list[Path] = []
    failures: list[Failure] = []
    for raw in inputs:
        path = Path(raw)
        try:
            mode = os.stat(path).st_mode
        except OSError:
            if glob.has_magic(str(raw)):
                found = sorted(Path(p) for p in glob.glob(str(raw), recursive=True)
                               if _readable_suffix(p) and Path(p).is_file())
                if not found:
                    failures.append(Failure(str(raw), "pattern matches no supported files"))
                files.extend(found)
            else:
                failures.append(Failure(str(path), "no such file or folder"))
            continue
        if stat.S_ISDIR(mode):
            found = []
            for root, dirs, names in os.walk(path):  # symlinked folders are not followed: no loops
                dirs.sort()
                found.extend(Path(root) / n for n in names if _readable_suffix(n) and (Path(root) / n).is_file())
            if not found:
                failures.append(Failure(str(path), "folder holds no supported files"))
            files.extend(sorted(found))
        elif stat.S_ISREG(mode):
            files.append(path)
        else:
            failures.append(Failure(str(path), "not a regular file"))
    sources: list[Source] = []
    seen: set[str] = set()
    for file in files:
        key = os.path.abspath(file)
        if key in seen:  # the same file named twice (a folder and a file in it): one row
            continue
        seen.add(key)
        try:
            sources.append(Source(key, modality_of(file, preferred)))
        except VitlensError as exc:
            failures.append(Failure(key, getattr(exc, "reason", str(exc))))
    return sources, failures


@dataclass
class EmbedSettings:
    """What decides an embedding besides the model: recorded per row (``preprocessing``) and in the key."""

    seed: int = 0
    mesh_points: int = 10_000

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def contract_of(model: Any, modality: str) -> Any:
    """The preprocessing contract the model card records for ``modality`` (the plug-in's default if none)."""
    mod = _modalities().get_modality(modality)
    if modality == POINTS:
        return model.cfg.preprocess
    raw = getattr(model.cfg, "contracts", {}).get(modality)
    return mod.contract(**raw) if raw else mod.default_contract()


def preprocessing_record(model: Any, modality: str, settings: EmbedSettings) -> str:
    contract = contract_of(model, modality)
    body = {"modality": modality, "contract": asdict(contract), **settings.to_dict()}
    if modality == POINTS:
        body.update(normalize_points=True, l2_normalized=True)
    return json.dumps(body, sort_keys=True)


def embed_sources(model: Any, sources: Sequence[Source], settings: EmbedSettings, batch_size: int = 8,
                  on_file: Any = None) -> tuple[list[dict[str, str]], np.ndarray, list[Failure]]:
    """Rows (manifest columns) and L2-normalised embeddings, in the order of ``sources``."""
    from ..atomic import file_digest

    dim = model.embed_dim
    per_source: list[tuple[list[dict[str, str]], np.ndarray]] = [([], np.zeros((0, dim), np.float32))
                                                                 for _ in sources]
    failures: list[Failure] = []
    by_modality: dict[str, list[int]] = {}
    for i, src in enumerate(sources):
        by_modality.setdefault(src.modality, []).append(i)
    model_name = model.cfg.card.name
    for modality, positions in by_modality.items():
        record = preprocessing_record(model, modality, settings)
        if modality == POINTS:
            _embed_points(model, sources, positions, settings, batch_size, record, per_source, failures, on_file)
            continue
        mod = _modalities().get_modality(modality)
        contract = contract_of(model, modality)
        batch: list[tuple[int, Any]] = []

        def flush() -> None:
            import torch

            if not batch:
                return
            with torch.inference_mode():
                emb = model.encode(modality, torch.stack([x for _, x in batch]), normalize=True)
            for (pos, _), row in zip(batch, emb.float().cpu().numpy()):
                per_source[pos] = (per_source[pos][0], row[None])
            batch.clear()

        for pos in positions:
            src = sources[pos]
            try:
                model.tower(modality)
            except VitlensError as exc:
                failures.append(Failure(src.path, getattr(exc, "reason", str(exc))))
                continue
            try:
                x = mod.prepare(src.path, contract)
                digest = file_digest(src.path)[0]
            except VitlensError as exc:
                failures.append(Failure(src.path, getattr(exc, "reason", str(exc))))
                continue
            except OSError as exc:
                failures.append(Failure(src.path, exc.strerror or str(exc)))
                continue
            per_source[pos] = ([{"path": src.path, "sha256": digest, "modality": modality, "item": src.path,
                                 "preprocessing": record, "model": model_name}], per_source[pos][1])
            batch.append((pos, x))
            if len(batch) >= batch_size:
                flush()
            if on_file is not None:
                on_file(src.path)
        flush()
    rows = [r for rs, _ in per_source for r in rs]
    embeddings = np.concatenate([e for _, e in per_source]) if sources else np.zeros((0, dim), np.float32)
    order = {s.path: i for i, s in enumerate(sources)}
    failures.sort(key=lambda f: order.get(f.path, -1))
    return rows, embeddings.astype(np.float32), failures


def _embed_points(model, sources, positions, settings, batch_size, record, per_source, failures, on_file) -> None:
    from ..embedding import embed_files

    result = embed_files(model, [sources[p].path for p in positions], batch_size=batch_size, seed=settings.seed,
                         mesh_points=settings.mesh_points, normalize_points=True, l2_normalize=True,
                         on_item=on_file)
    where = {sources[p].path: p for p in positions}
    grouped: dict[int, list[int]] = {}
    for row, item in enumerate(result.items):
        grouped.setdefault(where[os.path.abspath(item.path)], []).append(row)
    for pos, rows in grouped.items():
        per_source[pos] = ([{"path": sources[pos].path, "sha256": result.items[r].sha256, "modality": POINTS,
                             "item": result.items[r].item, "preprocessing": record, "model": model.cfg.card.name}
                            for r in rows], result.embeddings[rows])
    failures.extend(Failure(os.path.abspath(f.path), f.reason) for f in result.failures)
