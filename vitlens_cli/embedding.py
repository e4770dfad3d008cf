"""Embed 3D files into CLIP space: expand inputs, read, prepare, batch, encode, record provenance."""
from __future__ import annotations

import glob
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .atomic import write_atomic, write_text_atomic
from .errors import PointFileError, VitlensError
from .models import ViTLens, prepare_points
from .points import is_supported, iter_clouds


@dataclass
class EmbeddedItem:
    item: str
    path: str
    sha256: str
    num_points: int


@dataclass
class Failure:
    path: str
    reason: str


@dataclass
class EmbedResult:
    embeddings: np.ndarray
    items: list[EmbeddedItem]
    failures: list[Failure]
    normalized: bool
    settings: dict = field(default_factory=dict)
    texts: list[str] = field(default_factory=list)
    text_embeddings: np.ndarray | None = None

    def similarity(self, scale: float = 100.0) -> np.ndarray:
        """``softmax(scale · cos)`` over the texts for each shape: ``(shapes, texts)``."""
        if self.text_embeddings is None or not len(self.items):
            return np.zeros((len(self.items), len(self.texts)), dtype=np.float32)
        a = torch.nn.functional.normalize(torch.from_numpy(self.embeddings), dim=-1)
        b = torch.nn.functional.normalize(torch.from_numpy(self.text_embeddings), dim=-1)
        return torch.softmax(scale * a @ b.T, dim=-1).numpy()


def expand_inputs(inputs: Sequence[str | Path]) -> tuple[list[Path], list[Failure]]:
    """Files in the given order; folders expand (recursively, sorted) and globs match supported files."""
    files: list[Path] = []
    failures: list[Failure] = []
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and is_supported(p))
            if not found:
                failures.append(Failure(str(path), "folder holds no supported 3D files"))
            files.extend(found)
        elif path.exists():
            files.append(path)
        elif glob.has_magic(str(raw)):
            found = sorted(Path(p) for p in glob.glob(str(raw), recursive=True) if is_supported(p))
            if not found:
                failures.append(Failure(str(raw), "pattern matches no supported 3D files"))
            files.extend(found)
        else:
            failures.append(Failure(str(path), "no such file or folder"))
    return files, failures


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def embed_files(
    model: ViTLens,
    inputs: Sequence[str | Path],
    *,
    texts: Sequence[str] = (),
    normalize_points: bool = True,
    l2_normalize: bool = True,
    batch_size: int = 8,
    seed: int = 0,
    source_up_axis: str | None = None,
    mesh_points: int = 10_000,
    on_item: Callable[[str], None] | None = None,
) -> EmbedResult:
    """Embed every readable cloud in ``inputs``; unreadable ones are recorded, not fatal."""
    files, failures = expand_inputs(inputs)
    pre = model.cfg.preprocess
    device = model.logit_scale.device
    items: list[EmbeddedItem] = []
    chunks: list[np.ndarray] = []
    batch: list[np.ndarray] = []

    def flush() -> None:
        if batch:
            with torch.inference_mode():
                pts = torch.from_numpy(np.stack(batch)).to(device)
                chunks.append(model.encode_points(pts, normalize=l2_normalize).float().cpu().numpy())
            batch.clear()

    for path in files:
        try:
            digest = _sha256(path)
            clouds = list(iter_clouds(path, mesh_points=mesh_points, seed=seed))
            prepared = [(name, len(c), prepare_points(c, pre, normalize_points=normalize_points,
                                                      source_up_axis=source_up_axis, seed=seed))
                        for name, c in clouds]
        except PointFileError as exc:
            failures.append(Failure(str(path), exc.reason))
            continue
        except (OSError, ValueError) as exc:
            failures.append(Failure(str(path), str(exc)))
            continue
        for name, count, arr in prepared:
            items.append(EmbeddedItem(name, str(path), digest, count))
            batch.append(arr)
            if len(batch) >= batch_size:
                flush()
        if on_item is not None:
            on_item(str(path))
    flush()
    embed_dim = model.embed_dim
    embeddings = np.concatenate(chunks) if chunks else np.zeros((0, embed_dim), dtype=np.float32)
    text_emb = None
    if texts:
        with torch.inference_mode():
            text_emb = model.encode_text(list(texts), normalize=l2_normalize).float().cpu().numpy()
    settings = {"model": model.cfg.card.name, "model_source": model.cfg.card.source,
                "preprocess": asdict(pre), "normalize_points": normalize_points,
                "l2_normalized": l2_normalize, "seed": seed, "source_up_axis": source_up_axis,
                "mesh_points": mesh_points}
    return EmbedResult(embeddings, items, failures, l2_normalize, settings, list(texts), text_emb)


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as fh:  # a path would get ".npy" appended to the temporary name
        np.save(fh, array)


def manifest_path(out: Path) -> Path:
    return out.with_name(out.name + ".manifest.json")


def save_embeddings(result: EmbedResult, out: str | Path) -> tuple[Path, Path]:
    """Write ``.npy`` or ``.parquet`` rows (input order) plus ``<out>.manifest.json``, atomically."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix == ".npy":
        write_atomic(out, lambda p: _save_npy(p, result.embeddings))
    elif suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.table({
            "item": [i.item for i in result.items],
            "path": [i.path for i in result.items],
            "sha256": [i.sha256 for i in result.items],
            "num_points": [i.num_points for i in result.items],
            "embedding": pa.array(list(result.embeddings.astype(np.float32)), type=pa.list_(pa.float32())),
        })
        write_atomic(out, lambda p: pq.write_table(table, p))
    else:
        raise VitlensError(f"{out}: output must end in .npy or .parquet")
    manifest = {
        "output": out.name, "rows": len(result.items), "dim": int(result.embeddings.shape[1]),
        "settings": result.settings,
        "items": [asdict(i) for i in result.items],
        "failures": [asdict(f) for f in result.failures],
    }
    man = write_text_atomic(manifest_path(out), json.dumps(manifest, indent=2))
    return out, man
