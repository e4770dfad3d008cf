"""Embed files of any modality into CLIP space: expand inputs, give each file its modality, read, prepare,
batch per modality, encode, record provenance.

This is the one embedding path: ``vitlens embed`` calls :func:`embed_files`, the retrieval index
(:mod:`vitlens_cli.retrieval.sources`) calls :func:`expand_inputs`, :func:`modality_of` and
:func:`embed_sources`. A file's modality comes from the plug-in registry (:mod:`vitlens_cli.modalities`):
the first requested modality that reads its extension, else the one modality that owns the extension,
else the one modality among the model's towers that reads it; otherwise it is ambiguous.
"""
from __future__ import annotations

import contextlib
import glob
import io
import os
import stat
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .atomic import OutputError, check_writable, file_digest, verify_pair, write_pair
from .errors import ConfigError, VitlensError
from .modalities import ModalityFileError, get_modality, list_modalities, load_arrays, modality_for_path
from .modalities.base import first_line
from .models import ViTLens, prepare_points
from .points import iter_clouds
from .points.io import non_regular_kind, os_reason
from .precision import autocast, low_precision_weights, resolve_precision

OUTPUT_SUFFIXES = (".npy", ".parquet")
POINTS = "3d"
#: Containers of an already prepared lens input (``prepared=True``): read without running a pickle.
PREPARED_SUFFIXES = (".npy", ".npz", ".pt")


@dataclass
class EmbeddedItem:
    item: str
    path: str
    sha256: str
    modality: str = POINTS
    num_points: int | None = None   # points read (3D rows only)


@dataclass
class Failure:
    path: str
    reason: str


@dataclass(frozen=True)
class Source:
    """One input file and the modality it is embedded as."""

    path: Path
    modality: str


@dataclass(frozen=True)
class EmbedOptions:
    """What decides a row besides the model and the file.

    ``normalize_points`` / ``source_up_axis`` / ``mesh_points`` / ``seed`` apply to 3D rows (``seed`` also
    to mesh sampling); ``prepared`` feeds ``.npy``/``.npz``/``.pt`` arrays to the tower as they are, skipping
    the modality's reading and preprocessing (one item per file, or ``(views, ...)`` averaged as by ``encode``).
    ``precision`` (a :mod:`vitlens_cli.precision` name, ``auto`` resolved on the model's device) is the
    autocast around the tower forward only: reading and sampling stay float32, rows come out float32.
    """

    normalize_points: bool = True
    l2_normalize: bool = True
    batch_size: int = 8
    seed: int = 0
    source_up_axis: str | None = None
    mesh_points: int = 10_000
    prepared: bool = False
    precision: str = "fp32"


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
        """``softmax(scale · cos)`` over the texts for each row: ``(rows, texts)``."""
        if self.text_embeddings is None or not len(self.items):
            return np.zeros((len(self.items), len(self.texts)), dtype=np.float32)
        a = torch.nn.functional.normalize(torch.from_numpy(self.embeddings), dim=-1)
        b = torch.nn.functional.normalize(torch.from_numpy(self.text_embeddings), dim=-1)
        return torch.softmax(scale * a @ b.T, dim=-1).numpy()

    def counts(self) -> dict[str, int]:
        """Rows per modality, in order of first appearance."""
        counts: dict[str, int] = {}
        for item in self.items:
            counts[item.modality] = counts.get(item.modality, 0) + 1
        return counts


# --------------------------------------------------------------------------- inputs and their modalities

def readable_suffixes(modalities: Sequence[str] | None = None) -> frozenset[str]:
    """Suffixes read by ``modalities`` (every registered one when None)."""
    mods = list_modalities() if modalities is None else [get_modality(m) for m in modalities]
    return frozenset(s for m in mods for s in m.suffixes)


def expand_inputs(inputs: Sequence[str | Path], suffixes: frozenset[str] | None = None
                  ) -> tuple[list[Path], list[Failure]]:
    """Files in the given order; folders expand (recursively, sorted) and globs match files with ``suffixes``
    (default: every suffix a registered modality reads). A file named explicitly is always taken.

    Only regular files are taken: a named pipe, socket or device would block or flood a reader, so it is
    reported instead, as are symbolic link loops, broken links and sub-folders that cannot be read.
    """
    wanted = readable_suffixes() if suffixes is None else suffixes
    files: list[Path] = []
    failures: list[Failure] = []
    for raw in inputs:
        path = Path(raw)
        try:
            mode = os.stat(path).st_mode
        except OSError as exc:
            if glob.has_magic(str(raw)) and not os.path.lexists(path):
                found = _expand_glob(str(raw), wanted, failures)
                if not found:
                    failures.append(Failure(str(raw), "pattern matches no supported files"))
                files.extend(found)
            else:
                reason = os_reason(exc, path)
                failures.append(Failure(str(path), "no such file or folder" if reason == "no such file" else reason))
            continue
        if stat.S_ISDIR(mode):
            before = len(failures)
            found = _expand_folder(path, wanted, failures)
            if not found and len(failures) == before:
                failures.append(Failure(str(path), "folder holds no supported files"))
            files.extend(found)
        elif stat.S_ISREG(mode):
            files.append(path)
        else:
            failures.append(Failure(str(path), f"not a regular file ({non_regular_kind(mode)})"))
    return files, failures


def _wanted(name: str | Path, suffixes: frozenset[str]) -> bool:
    return Path(name).suffix.lower() in suffixes


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


def _expand_folder(folder: Path, suffixes: frozenset[str], failures: list[Failure]) -> list[Path]:
    def unreadable(exc: OSError) -> None:
        where = exc.filename or folder
        failures.append(Failure(str(where), f"cannot read folder ({os_reason(exc, where)})"))

    found = []
    for root, dirs, names in os.walk(folder, onerror=unreadable):  # symlinked folders are not followed: no loops
        dirs.sort()
        for name in names:
            if _wanted(name, suffixes) and _classify(Path(root) / name, failures):
                found.append(Path(root) / name)
    return sorted(found)


def _expand_glob(pattern: str, suffixes: frozenset[str], failures: list[Failure]) -> list[Path]:
    matches = map(Path, glob.glob(pattern, recursive=True))
    return sorted(p for p in matches if _wanted(p, suffixes) and _classify(p, failures))


class AmbiguousModalityError(ModalityFileError):
    """A file's extension is read by several modalities and nothing chose one."""


def modality_of(path: str | Path, preferred: Sequence[str] = (), held: Sequence[str] = ()) -> str:
    """The modality ``path`` is embedded as: the first of ``preferred`` that reads its extension, else the
    one modality owning the extension, else the one of ``held`` (the model's towers) that reads it.

    An extension several modalities read (``.npy``, ``.png``, …) with no choice left is an
    :class:`AmbiguousModalityError`; an unknown one a :class:`ModalityFileError`.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    for name in preferred:
        modality = get_modality(name)
        if suffix in modality.suffixes:
            return modality.name
    readers = [m for m in list_modalities() if suffix in m.suffixes]
    owners = [m for m in readers if suffix in m.extensions]
    if len(owners) == 1:
        return owners[0].name
    among_held = [m for m in readers if m.name in held]
    if len(among_held) == 1:
        return among_held[0].name
    if held and len(readers) > 1 and not among_held:
        raise ModalityFileError(path, f"'{suffix}' files are {' or '.join(m.name for m in readers)}; the model "
                                      f"has no tower for any of them (it has: {', '.join(held)})")
    try:
        return modality_for_path(path).name
    except ModalityFileError as exc:
        if len(readers) > 1:
            raise AmbiguousModalityError(path, exc.reason) from None
        raise


def assign_modalities(files: Sequence[Path], preferred: Sequence[str] = (), held: Sequence[str] = ()
                      ) -> tuple[list[Source], list[Failure], list[AmbiguousModalityError]]:
    """Each file with its modality (:func:`modality_of`); files no modality reads become failures and
    ambiguous ones are returned apart, for the caller to refuse or skip."""
    sources: list[Source] = []
    failures: list[Failure] = []
    ambiguous: list[AmbiguousModalityError] = []
    for file in files:
        try:
            sources.append(Source(file, modality_of(file, preferred, held)))
        except AmbiguousModalityError as exc:
            ambiguous.append(exc)
        except VitlensError as exc:
            failures.append(Failure(str(file), exc.reason))
    return sources, failures, ambiguous


def contract_of(model: ViTLens, modality: str) -> Any:
    """The preprocessing contract the model card records for ``modality`` (the plug-in's default if none)."""
    if modality == POINTS:
        return model.cfg.preprocess
    return get_modality(modality).contract_from_dict(model.cfg.contracts.get(modality, {}))


def contract_record(model: ViTLens, modality: str, options: EmbedOptions) -> dict[str, Any]:
    """How rows of ``modality`` were prepared, as JSON values: the contract, or ``prepared`` when fed as is."""
    if options.prepared:
        return {"prepared": True}
    contract = contract_of(model, modality)
    record = get_modality(modality).contract_to_dict(contract) if contract is not None else {}
    if modality == POINTS:
        record.update(normalize_points=options.normalize_points, source_up_axis=options.source_up_axis,
                      mesh_points=options.mesh_points, seed=options.seed)
    return record


# --------------------------------------------------------------------------- reading, batching, encoding

def _read_prepared(path: Path, modality: str, rank: int) -> torch.Tensor:
    if path.suffix.lower() not in PREPARED_SUFFIXES:
        raise ModalityFileError(path, f"a prepared input is a {' '.join(PREPARED_SUFFIXES)} array, "
                                      f"not '{path.suffix or path.name}'")
    if path.stat().st_size == 0:
        raise ModalityFileError(path, "empty file")
    value = load_arrays(path, f"prepared {modality}", ("input", "x"))
    tensor = (value if isinstance(value, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(value))).float()
    if tensor.dim() not in (rank - 1, rank):
        raise ModalityFileError(path, f"a prepared {modality} item has {rank - 1} dimensions (or {rank} with views), "
                                      f"got shape {tuple(tensor.shape)}")
    if not torch.isfinite(tensor).all():
        raise ModalityFileError(path, "holds NaN or infinite values")
    return tensor


class _Files(Dataset):
    """Each source read and prepared (in a DataLoader worker when there are workers): ``(index, rows, sha256)``,
    or ``(index, None, reason)`` for a file that cannot be read. Holds no model: only the contracts and the
    towers' input ranks, so a forked worker touches nothing of the model's memory."""

    def __init__(self, sources: Sequence[Source], options: EmbedOptions, contracts: dict[str, Any],
                 ranks: dict[str, int]) -> None:
        self.sources = list(sources)
        self.options = options
        self.contracts = contracts
        self.ranks = ranks

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, i: int) -> tuple[int, list[tuple[str, np.ndarray, int | None]] | None, str]:
        src = self.sources[i]
        try:
            # Arrays, not tensors, go back to the main process: a tensor crosses as a shared-memory segment
            # and a passed file descriptor each, an array as pickled bytes in the pipe, which measured ~10 %
            # more files/s with 2 workers on 2 cores.
            rows = [(name, x.numpy(), count) for name, x, count in self._read(src)]
            digest = file_digest(src.path)[0]  # after reading: the readers refuse what is not a regular file
        except VitlensError as exc:
            return i, None, exc.reason
        except OSError as exc:
            return i, None, os_reason(exc, src.path)
        except ValueError as exc:
            return i, None, first_line(exc)
        return i, rows, digest

    def _read(self, src: Source) -> list[tuple[str, torch.Tensor, int | None]]:
        """``(item name, lens input, points read)`` per row of one file (an ``.h5`` stack gives several)."""
        options = self.options
        if options.prepared:
            return [(str(src.path), _read_prepared(src.path, src.modality, self.ranks[src.modality]), None)]
        if src.modality == POINTS:
            pre = self.contracts[POINTS]
            return [(name, torch.from_numpy(prepare_points(cloud, pre, normalize_points=options.normalize_points,
                                                           source_up_axis=options.source_up_axis,
                                                           seed=options.seed)), len(cloud))
                    for name, cloud in iter_clouds(src.path, mesh_points=options.mesh_points, seed=options.seed)]
        return [(str(src.path), get_modality(src.modality).prepare(src.path, self.contracts[src.modality]), None)]


def _as_is(sample: Any) -> Any:
    return sample


Rows = tuple[list[EmbeddedItem], np.ndarray]


def stream_sources(model: ViTLens, sources: Sequence[Source], options: EmbedOptions = EmbedOptions(), *,
                   failures: list[Failure], workers: int = 0, on_item: Callable[[str], None] | None = None
                   ) -> Iterator[Rows]:
    """Rows in input order as they are encoded: ``(items, (n, dim) float32)`` a few at a time.

    Files are read and prepared in ``workers`` DataLoader processes (0: in this one) while this process
    encodes; items are batched per modality and lens-input shape (``batch_size`` each), so a mixed list costs
    no more forward passes than its modalities sorted apart. Memory stays bounded by the batches in flight,
    whatever the number of files. A file that cannot be read or encoded is appended to ``failures`` (input
    order); ``on_item`` is called once per source.
    """
    device = model.logit_scale.device
    chosen = resolve_precision(options.precision, device)
    contracts: dict[str, Any] = {}
    ranks: dict[str, int] = {}
    unusable: dict[str, str] = {}
    for modality in dict.fromkeys(s.modality for s in sources):
        try:
            ranks[modality] = model.tower(modality).input_rank
            contracts[modality] = contract_of(model, modality)
        except VitlensError as exc:
            unusable[modality] = exc.reason
    bad: list[tuple[int, Failure]] = []  # (source index, failure): sorted into input order at the end
    usable = [i for i, s in enumerate(sources) if s.modality not in unusable]
    for i, src in enumerate(sources):
        if src.modality in unusable:
            bad.append((i, Failure(str(src.path), unusable[src.modality])))
            if on_item is not None:
                on_item(str(src.path))
    slots: list[tuple[int, EmbeddedItem]] = []  # every row read, in input order: (source index, item)
    encoded: dict[int, np.ndarray | None] = {}  # slot → row, or None when its batch did not fit the tower
    pending: dict[tuple[str, tuple[int, ...]], list[tuple[int, torch.Tensor]]] = {}
    emitted = 0

    def flush(key: tuple[str, tuple[int, ...]]) -> None:
        batch = pending.pop(key, [])
        if not batch:
            return
        try:
            with torch.inference_mode(), autocast(chosen, device):
                emb = model.encode(key[0], torch.stack([x for _, x in batch]).to(device))
        except RuntimeError as exc:
            # Only a --prepared array can be of a size the tower does not take; anything else (out of
            # memory, a device or dtype mismatch, a bug) is no fault of the input and must not be
            # reported as skipped files.
            if not options.prepared or isinstance(exc, torch.OutOfMemoryError):
                raise
            reason = f"input of shape {key[1]} does not fit the model's {key[0]} tower ({first_line(exc)})"
            for slot, _ in batch:
                bad.append((slots[slot][0], Failure(slots[slot][1].path, reason)))
                encoded[slot] = None
            return
        emb = emb.float()  # normalised in float32 whatever the forward ran in
        if options.l2_normalize:
            emb = torch.nn.functional.normalize(emb, dim=-1)
        for (slot, _), row in zip(batch, emb.cpu().numpy()):
            encoded[slot] = row

    def ready() -> Rows | None:
        """The finished rows that follow the last ones handed out, in order (a row still in a batch stops them)."""
        nonlocal emitted
        items, rows = [], []
        while emitted in encoded:
            row = encoded.pop(emitted)
            if row is not None:
                items.append(slots[emitted][1])
                rows.append(row)
            emitted += 1
        return (items, np.stack(rows).astype(np.float32, copy=False)) if items else None

    with contextlib.ExitStack() as cast:
        for modality in contracts:  # the towers this run uses: their weights cast once, not per batch
            cast.enter_context(low_precision_weights(model.tower(modality), chosen))
        files = _Files([sources[i] for i in usable], options, contracts, ranks)
        # Workers are forked, as evaluation's are: they read and resample one file at a time, which never enters
        # numba's OpenMP pool (not fork-safe), and forking skips re-importing torch in every worker.
        loader = DataLoader(files, batch_size=None, num_workers=workers, collate_fn=_as_is,
                            prefetch_factor=4 if workers else None)
        for j, read, digest in loader:
            src = sources[usable[j]]
            if read is None:
                bad.append((usable[j], Failure(str(src.path), digest)))
            else:
                for name, array, count in read:
                    x = torch.from_numpy(array)
                    key = (src.modality, tuple(x.shape))
                    pending.setdefault(key, []).append((len(slots), x))
                    slots.append((usable[j], EmbeddedItem(name, str(src.path), digest, src.modality, count)))
                    if len(pending[key]) >= options.batch_size:
                        flush(key)
                out = ready()
                if out is not None:
                    yield out
            if on_item is not None:
                on_item(str(src.path))
        for key in list(pending):
            flush(key)
        out = ready()
        if out is not None:
            yield out
    bad.sort(key=lambda b: b[0])
    failures.extend(f for _, f in bad)


def embed_sources(model: ViTLens, sources: Sequence[Source], options: EmbedOptions = EmbedOptions(),
                  on_item: Callable[[str], None] | None = None, workers: int = 0
                  ) -> tuple[list[EmbeddedItem], np.ndarray, list[Failure]]:
    """Rows (input order) and their embeddings, all at once (:func:`stream_sources` collected)."""
    failures: list[Failure] = []
    items: list[EmbeddedItem] = []
    chunks: list[np.ndarray] = []
    for got, rows in stream_sources(model, sources, options, failures=failures, workers=workers, on_item=on_item):
        items.extend(got)
        chunks.append(rows)
    embeddings = np.concatenate(chunks) if chunks else np.zeros((0, model.embed_dim), dtype=np.float32)
    return items, embeddings, failures


def embed_files(
    model: ViTLens,
    inputs: Sequence[str | Path],
    *,
    modalities: Sequence[str] = (),
    texts: Sequence[str] = (),
    normalize_points: bool = True,
    l2_normalize: bool = True,
    batch_size: int = 8,
    seed: int = 0,
    source_up_axis: str | None = None,
    mesh_points: int = 10_000,
    prepared: bool = False,
    precision: str = "fp32",
    workers: int = 0,
    sink: Callable[[list[EmbeddedItem], np.ndarray], None] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> EmbedResult:
    """Embed every readable file in ``inputs``, each as its modality; unreadable ones are recorded, not fatal.

    ``modalities`` are tried first for each file's extension (``.npy`` as ``depth``, say); a file whose
    modality stays ambiguous stops the run before any embedding (:class:`AmbiguousModalityError`, naming
    the first such file and how many there are). With ``prepared`` every file is one ready lens input of
    ``modalities[0]`` (or of the model's only tower). ``precision`` (``auto``, ``fp32``, ``bf16``, ``fp16``)
    is resolved once on the model's device and recorded in ``settings``; the default fp32 gives the same
    rows on every machine. ``workers`` DataLoader processes read and prepare the files.

    With ``sink``, rows are handed to it as they are encoded (input order) and not kept: ``embeddings`` is
    then empty, unless ``texts`` are compared with them. ``on_progress(done, total)`` counts files.
    """
    chosen = resolve_precision(precision, model.logit_scale.device)
    options = EmbedOptions(normalize_points=normalize_points, l2_normalize=l2_normalize, batch_size=batch_size,
                           seed=seed, source_up_axis=source_up_axis, mesh_points=mesh_points, prepared=prepared,
                           precision=chosen.name)
    names = [get_modality(m).name for m in modalities]
    for name in names:
        model.tower(name)
    if texts and model.text is None:
        raise ConfigError(model.cfg.card.name, "this model has no text tower, so --text cannot be compared")
    if prepared:
        if len(names) > 1 or (not names and len(model.modalities) > 1):
            raise ConfigError("--prepared", f"name the one modality of the prepared inputs with --modality "
                                            f"(the model holds {', '.join(model.modalities)})")
        modality = names[0] if names else model.modalities[0]
        files, failures = expand_inputs(inputs, frozenset(PREPARED_SUFFIXES))
        sources = [Source(f, modality) for f in files]
    else:
        files, failures = expand_inputs(inputs, readable_suffixes([*names, *model.modalities]))
        sources, unread, ambiguous = assign_modalities(files, names, model.modalities)
        if ambiguous:
            first = ambiguous[0]
            more = f" ({len(ambiguous) - 1} more file(s) alike)" if len(ambiguous) > 1 else ""
            raise AmbiguousModalityError(first.path, first.reason + more)
        failures.extend(unread)
    done = 0

    def item_done(_path: str) -> None:
        nonlocal done
        done += 1
        if on_progress is not None:
            on_progress(done, len(sources))

    if on_progress is not None:
        on_progress(0, len(sources))
    items: list[EmbeddedItem] = []
    chunks: list[np.ndarray] = []
    for got, rows in stream_sources(model, sources, options, failures=failures, workers=workers,
                                    on_item=item_done):
        items.extend(got)
        if sink is not None:
            sink(got, rows)
        if sink is None or texts:
            chunks.append(rows)
    embeddings = np.concatenate(chunks) if chunks else np.zeros((0, model.embed_dim), dtype=np.float32)
    order = {str(f): i for i, f in enumerate(files)}  # in input order; inputs that named no file first
    failures.sort(key=lambda f: order.get(f.path, -1))
    text_emb = None
    if texts:
        with torch.inference_mode():
            text_emb = model.encode_text(list(texts), normalize=l2_normalize).float().cpu().numpy()
    present = list(dict.fromkeys(i.modality for i in items))
    pre = model.cfg.preprocess
    settings = {"model": model.cfg.card.name, "model_source": model.cfg.card.source,
                "preprocess": asdict(pre) if pre is not None else None,
                "contracts": {m: contract_record(model, m, options) for m in present},
                "prepared": prepared, "normalize_points": normalize_points, "l2_normalized": l2_normalize,
                "seed": seed, "source_up_axis": source_up_axis, "mesh_points": mesh_points,
                "precision": chosen.name, "precision_reason": chosen.reason}
    return EmbedResult(embeddings, items, failures, l2_normalize, settings, list(texts), text_emb)


# --------------------------------------------------------------------------- outputs

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


def manifest_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".manifest.json")


_NPY_HEADER = 128  # bytes np.save gives a 2-D float32 header; room for any row count, so it is rewritten in place
_ROW_GROUP = 1024  # Parquet rows per row group: a few MB of embeddings buffered at most


class _NpyRows:
    """Rows appended to an ``.npy`` file as they come; the header, written first, gets the count at the end."""

    def __init__(self, path: Path, dim: int) -> None:
        self.dim = dim
        self.rows = 0
        self.fh = open(path, "wb")  # noqa: SIM115 - closed by close()
        self.fh.write(self._header())

    def _header(self) -> bytes:
        buf = io.BytesIO()
        np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False,
                                                   "shape": (self.rows, self.dim)})
        if len(buf.getvalue()) != _NPY_HEADER:
            raise OutputError(self.fh.name, f"an .npy header of {len(buf.getvalue())} bytes does not fit")
        return buf.getvalue()

    def write(self, items: list[EmbeddedItem], rows: np.ndarray) -> None:
        self.fh.write(np.ascontiguousarray(rows, dtype="<f4").tobytes())
        self.rows += len(rows)

    def close(self) -> None:
        self.fh.seek(0)
        self.fh.write(self._header())
        self.fh.close()


class _ParquetRows:
    """Rows written to Parquet in row groups of :data:`_ROW_GROUP` as they come (pyarrow ``ParquetWriter``)."""

    def __init__(self, path: Path, dim: int) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.pa = pa
        self.schema = pa.schema([("item", pa.string()), ("path", pa.string()), ("sha256", pa.string()),
                                 ("modality", pa.string()), ("num_points", pa.int64()),
                                 ("embedding", pa.list_(pa.float32()))])
        self.writer = pq.ParquetWriter(str(path), self.schema)
        self.items: list[EmbeddedItem] = []
        self.rows: list[np.ndarray] = []

    def write(self, items: list[EmbeddedItem], rows: np.ndarray) -> None:
        self.items.extend(items)
        self.rows.append(rows)
        if len(self.items) >= _ROW_GROUP:
            self._flush()

    def _flush(self) -> None:
        if not self.items:
            return
        pa, items = self.pa, self.items
        flat = np.concatenate(self.rows).astype(np.float32, copy=False)
        offsets = pa.array(np.arange(0, flat.size + 1, flat.shape[1], dtype=np.int32))
        table = pa.table({
            "item": [i.item for i in items], "path": [i.path for i in items], "sha256": [i.sha256 for i in items],
            "modality": [i.modality for i in items],
            "num_points": pa.array([i.num_points for i in items], type=pa.int64()),
            "embedding": pa.ListArray.from_arrays(offsets, pa.array(flat.ravel())),
        }, schema=self.schema)
        self.writer.write_table(table)
        self.items, self.rows = [], []

    def close(self) -> None:
        self._flush()
        self.writer.close()


def _row_writer(path: Path, suffix: str, dim: int) -> _NpyRows | _ParquetRows:
    return _NpyRows(path, dim) if suffix == ".npy" else _ParquetRows(path, dim)


def _manifest(out: Path, result: EmbedResult, rows: int, dim: int) -> dict[str, Any]:
    return {"output": out.name, "rows": rows, "dim": dim, "settings": result.settings,
            "items": [asdict(i) for i in result.items], "failures": [asdict(f) for f in result.failures]}


def _check_suffix(out: Path) -> str:
    suffix = out.suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise OutputError(out, "output must end in .npy or .parquet")
    return suffix


def save_embeddings(result: EmbedResult, out: str | Path) -> tuple[Path, Path]:
    """Write ``.npy`` or ``.parquet`` rows (input order) plus ``<out>.manifest.json`` as one unit.

    The manifest records each row's modality (its preprocessing under ``settings.contracts``) and the
    data file's sha256 and size; :func:`load_embeddings` checks the pair.
    """
    out = Path(out)
    suffix = _check_suffix(out)
    dim = int(result.embeddings.shape[1])

    def write(p: Path) -> None:
        writer = _row_writer(p, suffix, dim)
        writer.write(result.items, result.embeddings)
        writer.close()

    return write_pair(out, write, manifest_path(out), _manifest(out, result, len(result.items), dim))


class _NothingEmbedded(Exception):
    """No row to write: the staged data file is dropped and nothing is committed."""


def embed_to_file(model: ViTLens, inputs: Sequence[str | Path], out: str | Path, **options: Any
                  ) -> tuple[EmbedResult, tuple[Path, Path] | None]:
    """:func:`embed_files` straight into ``out`` (``.npy`` or ``.parquet``) and its manifest, streaming.

    Rows are written as they are encoded (Parquet row groups; ``.npy`` appended behind a header rewritten
    at the end), never all held in memory. The pair is committed as one unit after the last row, as by
    :func:`save_embeddings`: a run killed before leaves the previous pair. When no row is embedded nothing
    is written (the paths are None).
    """
    out = Path(out)
    suffix = _check_suffix(out)
    dim = model.embed_dim
    done: dict[str, Any] = {}

    def write(p: Path) -> None:
        writer = _row_writer(p, suffix, dim)
        try:
            done["result"] = embed_files(model, inputs, sink=writer.write, **options)
        finally:
            writer.close()
        if not done["result"].items:
            raise _NothingEmbedded

    try:
        written = write_pair(out, write, manifest_path(out),
                             lambda: _manifest(out, done["result"], len(done["result"].items), dim))
    except _NothingEmbedded:
        return done["result"], None
    return done["result"], written


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
