"""Training checkpoints: everything a resumed run needs, written atomically, read with weights_only."""
from __future__ import annotations

import random
from pathlib import Path

import torch

from ..atomic import write_atomic, write_text_atomic
from ..errors import CheckpointError

FORMAT = "vitlens-train/1"
LATEST = "latest"
KEEP = 2


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


def save(directory: Path, step: int, state: dict) -> Path:
    directory = Path(directory)
    name = f"step-{step:08d}.pt"
    path = write_atomic(directory / name, lambda p: torch.save({"format": FORMAT, "step": step, **state}, p))
    write_text_atomic(directory / LATEST, name + "\n")
    for old in sorted(directory.glob("step-*.pt"))[:-KEEP]:
        old.unlink(missing_ok=True)
    return path


def resolve(resume: str | Path, directory: Path) -> Path:
    """``latest`` (the newest checkpoint of this run) or a path."""
    if str(resume) == LATEST:
        pointer = Path(directory) / LATEST
        if not pointer.is_file():
            raise CheckpointError(f"{directory}: no checkpoint to resume from (no '{LATEST}' file)")
        return Path(directory) / pointer.read_text().strip()
    return Path(resume)


def load(path: Path) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except Exception as exc:
        raise CheckpointError(f"{path}: not a readable training checkpoint ({type(exc).__name__})") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a vitlens training checkpoint ({FORMAT})")
    return state
