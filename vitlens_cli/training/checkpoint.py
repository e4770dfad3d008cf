"""Training checkpoints: everything a resumed run needs, written atomically, read with weights_only.

``torch.load`` does not check the CRC of the zip members it reads (a flipped byte in a tensor loads as a
wrong weight), so every checkpoint has a ``<name>.sha256`` beside it, written after the checkpoint and
before the ``latest`` pointer moves: a checkpoint is trusted only when its digest matches.
"""
from __future__ import annotations

import hashlib
import pickle
import random
import re
from pathlib import Path

import torch

from ..atomic import write_atomic, write_text_atomic
from ..errors import CheckpointError
from ..safe_load import load_tensors

FORMAT = "vitlens-train/1"
LATEST = "latest"
KEEP = 2
_NAME = re.compile(r"step-(\d{8})\.pt")


def model_state(model: torch.nn.Module, trainable: list[str]) -> dict[str, torch.Tensor]:
    """Trainable parameters and every buffer (BatchNorm statistics); frozen weights come from the recipe."""
    keep = set(trainable) | {n for n, _ in model.named_buffers()}
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if k in keep}


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def save(directory: Path, step: int, state: dict) -> Path:
    directory = Path(directory)
    name = f"step-{step:08d}.pt"
    path = write_atomic(directory / name, lambda p: torch.save({"format": FORMAT, "step": step, **state}, p))
    write_text_atomic(_sidecar(path), f"{_digest(path)}  {name}\n")
    write_text_atomic(directory / LATEST, name + "\n")
    for old in sorted(p for p in directory.glob("step-*.pt") if _NAME.fullmatch(p.name))[:-KEEP]:
        old.unlink(missing_ok=True)
        _sidecar(old).unlink(missing_ok=True)
    return path


def load(path: Path) -> dict:
    """A checkpoint, checked against its digest when it has one; anything but plain data is refused."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, not a checkpoint file")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint" if not path.exists() else f"{path}: not a regular file")
    sidecar = _sidecar(path)
    if sidecar.is_file():
        try:
            expected = sidecar.read_text(encoding="utf-8").split()[0]
        except (OSError, UnicodeDecodeError, IndexError):
            raise CheckpointError(f"{path}: its digest file {sidecar.name} is unreadable") from None
        if _digest(path) != expected:
            raise CheckpointError(f"{path}: damaged (sha256 differs from {sidecar.name})")
    try:
        state = load_tensors(path)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(path, str(exc)) from None
    except Exception as exc:
        raise CheckpointError(f"{path}: not a readable training checkpoint ({type(exc).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a vitlens training checkpoint ({FORMAT})")
    return state


def load_resume(resume: str | Path, directory: Path) -> tuple[dict, Path, list[str]]:
    """``(state, path, warnings)`` for ``--resume``: ``latest`` or a path.

    ``latest`` falls back from a damaged newest checkpoint to the previous intact one of this run; each
    checkpoint passed over is one warning line. A path is loaded as it is.
    """
    directory = Path(directory)
    if str(resume) != LATEST:
        return load(Path(resume)), Path(resume), []
    pointer = directory / LATEST
    if not pointer.is_file():
        raise CheckpointError(f"{directory}: no checkpoint to resume from (no '{LATEST}' file)")
    try:
        newest = pointer.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        newest = ""
    candidates = sorted((p for p in directory.glob("step-*.pt") if _NAME.fullmatch(p.name)), reverse=True)
    if _NAME.fullmatch(newest):
        # Never anything newer than the pointer: a later file is one whose save was cut short.
        candidates = [directory / newest] + [p for p in candidates if p.name < newest]
    warnings: list[str] = []
    first_error: CheckpointError | None = None
    for path in candidates:
        try:
            return load(path), path, warnings
        except CheckpointError as exc:
            first_error = first_error or exc
            warnings.append(str(exc))
    if first_error is not None:
        raise CheckpointError(f"{first_error} (and no intact earlier checkpoint in {directory})")
    raise CheckpointError(f"{pointer}: names no checkpoint of this run")
