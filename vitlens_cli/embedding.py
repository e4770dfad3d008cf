"""Embed 3D files into CLIP space: expand inputs, read, prepare, batch, encode, record provenance."""
from __future__ import annotations

import glob
import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .atomic import OutputError, check_writable, file_digest, verify_pair, write_pair
from .errors import PointFileError, VitlensError
from .models import ViTLens, prepare_points
from .points import is_supported, iter_clouds
from .points.io import non_regular_kind, os_reason

OUTPUT_SUFFIXES = (".npy", ".parquet")


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
    """Files in the given order; folders expand (recursively, sorted) and globs match supported files.

    Only regular files are taken: a named pipe, socket or device would block or flood a reader, so it is
    reported instead, as are symbolic link loops, broken links and sub-folders that cannot be read.
    """
    files: list[Path] = []
    failures: list[Failure] = []
    for raw in inputs:
        path = Path(raw)
        try:
            mode = os.stat(path).st_mode
        except OSError as exc:
            if glob.has_magic(str(raw)) and not os.path.lexists(path):
                found = _expand_glob(str(raw), failures)
                if not found:
                    failures.append(Failure(str(raw), "pattern matches no supported 3D files"))
                files.extend(found)
            else:
                reason = os_reason(exc, path)
                failures.append(Failure(str(path), "no such file or folder" if reason == "no such file" else reason))
            continue
        if stat.S_ISDIR(mode):
            before = len(failures)
            found = _expand_folder(path, failures)
            if not found and len(failures) == before:
                failures.append(Failure(str(path), "folder holds no supported 3D files"))
            files.extend(found)
        elif stat.S_ISREG(mode):
            files.append(path)
        else:
            failures.append(Failure(str(path), f"not a regular file ({non_regular_kind(mode)})"))
    return files, failures


def _classify(path: Path, failures: list[Failure]) -> bool:
    """Whether a supported-looking entry found in a folder or by a glob is a regular file (else reported)."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        failures.append(Failure(str(path), os_reason(exc, path)))
        return False
    if stat.S_ISREG(mode):
        return True
    if not stat.S_ISDIR(mode):
        failures.append(Failure(str(path), f"not a regular file ({non_regular_kind(mode)})"))
    return False


def _expand_folder(folder: Path, failures: list[Failure]) -> list[Path]:
    def unreadable(exc: OSError) -> None:
        where = exc.filename or folder
        failures.append(Failure(str(where), f"cannot read folder ({os_reason(exc, where)})"))

    found = []
    for root, dirs, names in os.walk(folder, onerror=unreadable):  # symlinked folders are not followed: no loops
        dirs.sort()
        for name in names:
            if is_supported(name) and _classify(Path(root) / name, failures):
                found.append(Path(root) / name)
    return sorted(found)


def _expand_glob(pattern: str, failures: list[Failure]) -> list[Path]:
    matches = map(Path, glob.glob(pattern, recursive=True))
    return sorted(p for p in matches if is_supported(p) and _classify(p, failures))


def check_output(out: str | Path, inputs: Sequence[str | Path] = ()) -> Path:
    """Refuse an ``--out`` before any slow work: wrong suffix, not writable, or one of the inputs.

    An output that is an input file (or its manifest) would overwrite the data being embedded.
    """
    out = Path(out)
    if out.suffix.lower() not in OUTPUT_SUFFIXES:
        raise OutputError(out, "output must end in .npy or .parquet")
    files, _ = expand_inputs(inputs)
    targets = [out, manifest_path(out)]
    for file in files:
        for target in targets:
            if _same_file(file, target):
                raise OutputError(out, f"would overwrite the input {file}; choose another output name")
    check_writable(out)
    check_writable(manifest_path(out))
    return out


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


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
            clouds = list(iter_clouds(path, mesh_points=mesh_points, seed=seed))
            digest = file_digest(path)[0]  # after reading: iter_clouds refuses what is not a regular file
            prepared = [(name, len(c), prepare_points(c, pre, normalize_points=normalize_points,
                                                      source_up_axis=source_up_axis, seed=seed))
                        for name, c in clouds]
        except PointFileError as exc:
            failures.append(Failure(str(path), exc.reason))
            continue
        except OSError as exc:
            failures.append(Failure(str(path), os_reason(exc, path)))
            continue
        except ValueError as exc:
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


def manifest_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".manifest.json")


def save_embeddings(result: EmbedResult, out: str | Path) -> tuple[Path, Path]:
    """Write ``.npy`` or ``.parquet`` rows (input order) plus ``<out>.manifest.json`` as one unit.

    The manifest records the data file's sha256 and size; :func:`load_embeddings` checks the pair.
    """
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix == ".npy":
        def write(p: Path) -> None:
            _save_npy(p, result.embeddings)
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

        def write(p: Path) -> None:
            pq.write_table(table, p)
    else:
        raise OutputError(out, "output must end in .npy or .parquet")
    manifest = {
        "output": out.name, "rows": len(result.items), "dim": int(result.embeddings.shape[1]),
        "settings": result.settings,
        "items": [asdict(i) for i in result.items],
        "failures": [asdict(f) for f in result.failures],
    }
    return write_pair(out, write, manifest_path(out), manifest)


@dataclass
class SavedEmbeddings:
    embeddings: np.ndarray
    manifest: dict


def load_embeddings(out: str | Path) -> SavedEmbeddings:
    """Rows and manifest written by :func:`save_embeddings`, refused unless they are one consistent pair."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise OutputError(out, "embeddings end in .npy or .parquet")
    manifest = verify_pair(out, manifest_path(out))
    try:
        if suffix == ".npy":
            embeddings = np.load(out, allow_pickle=False)
        else:
            import pyarrow.parquet as pq

            column = pq.read_table(out, columns=["embedding"]).column("embedding").to_pylist()
            embeddings = np.asarray(column, dtype=np.float32).reshape(len(column), -1)
    except (OSError, ValueError) as exc:
        raise OutputError(out, f"cannot read embeddings ({exc})") from None
    rows, dim = manifest.get("rows"), manifest.get("dim")
    if embeddings.ndim != 2 or (rows, dim) != embeddings.shape and not (rows == 0 and embeddings.shape[0] == 0):
        raise OutputError(out, f"holds shape {embeddings.shape} but its manifest says ({rows}, {dim})")
    return SavedEmbeddings(embeddings, manifest)
