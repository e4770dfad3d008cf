"""Input files of any modality → rows of the index, through the one embedding path of
:mod:`vitlens_cli.embedding` (expansion, modality of each file, reading, preprocessing, batched encoding).

Here only what the index adds: absolute paths named once, the embedding settings that are part of every
shard's key, and each row's manifest columns (its modality and a JSON record of its preprocessing).
Ambiguous extensions (``.npy`` as 3D, depth or EEG) are skipped rows, unless ``--modality`` chooses.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import embedding
from ..embedding import POINTS, EmbedOptions, Failure, Source, contract_of, modality_of
from ..errors import VitlensError

__all__ = ["EmbedSettings", "Failure", "Source", "check_modality", "contract_of", "embed_sources", "expand",
           "known_modalities", "modality_of", "preprocessing_record"]


def known_modalities() -> tuple[str, ...]:
    from ..modalities import modality_names

    return modality_names()


def check_modality(name: str) -> str:
    """``name`` as the registry spells it; an unknown one is a one-line error listing the known ones."""
    from ..modalities import get_modality

    try:
        return get_modality(name).name
    except VitlensError:
        raise VitlensError(f"{name}: unknown modality (known: {', '.join(known_modalities())})") from None


def expand(inputs: Sequence[str | Path], preferred: Sequence[str] = ()) -> tuple[list[Source], list[Failure]]:
    """Files in the given order (folders recursively and sorted, globs sorted), each with its modality."""
    files, failures = embedding.expand_inputs(inputs)
    unique: list[Path] = []
    seen: set[str] = set()
    for file in files:
        key = os.path.abspath(file)
        if key not in seen:  # the same file named twice (a folder and a file in it): one row
            seen.add(key)
            unique.append(Path(key))
    sources, unread, ambiguous = embedding.assign_modalities(unique, preferred)
    failures.extend(unread)
    failures.extend(Failure(str(exc.path), exc.reason) for exc in ambiguous)
    order = {str(f): i for i, f in enumerate(unique)}
    failures.sort(key=lambda f: order.get(f.path, -1))
    return sources, failures


@dataclass
class EmbedSettings:
    """What decides an embedding besides the model: recorded per row (``preprocessing``) and in the key.

    ``precision`` is the resolved autocast of the towers' forward (``fp32``, ``bf16``, ``fp16``); an index
    written before it was recorded was embedded in fp32, which is the default.
    """

    seed: int = 0
    mesh_points: int = 10_000
    precision: str = "fp32"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def preprocessing_record(model: Any, modality: str, settings: EmbedSettings) -> str:
    body = {"modality": modality, "contract": asdict(contract_of(model, modality)), **settings.to_dict()}
    if modality == POINTS:
        body.update(normalize_points=True, l2_normalized=True)
    return json.dumps(body, sort_keys=True)


def embed_sources(model: Any, sources: Sequence[Source], settings: EmbedSettings, batch_size: int = 8,
                  on_file: Callable[[str], None] | None = None
                  ) -> tuple[list[dict[str, str]], np.ndarray, list[Failure]]:
    """Rows (manifest columns) and L2-normalised embeddings, in the order of ``sources``."""
    options = EmbedOptions(batch_size=batch_size, seed=settings.seed, mesh_points=settings.mesh_points,
                           precision=settings.precision)
    items, embeddings, failures = embedding.embed_sources(
        model, sources, options, on_file)
    records: dict[str, str] = {}
    rows = []
    for item in items:
        if item.modality not in records:
            records[item.modality] = preprocessing_record(model, item.modality, settings)
        rows.append({"path": item.path, "sha256": item.sha256, "modality": item.modality, "item": item.item,
                     "preprocessing": records[item.modality], "model": model.cfg.card.name})
    return rows, embeddings, failures
