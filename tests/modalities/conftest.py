"""The official preprocessing cases of ``parity-modalities`` (config + tensors), and bad-file makers."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from safetensors.numpy import load_file



@dataclass
class Case:
    folder: Path
    config: dict
    tensors: dict

    @property
    def inputs(self) -> list[dict]:
        return self.config["inputs"]

    def atol(self, name: str) -> float:
        tol = self.config["tolerance"][name]
        assert tol == "exact" or tol["rtol"] == 0.0, tol
        return 0.0 if tol == "exact" else float(tol["atol"])

    def source_file(self, fixtures: Path, index: int) -> Path | None:
        """The real file an input was read from, when it is one of ``shared/fixtures`` as is."""
        source = self.inputs[index].get("source", "")
        if "(the real" not in source or " samples [" in source and "(the real file itself)" not in source:
            return None
        path = fixtures / source.split(" ")[0]
        return path if path.is_file() else None


@pytest.fixture(scope="session")
def load_case(modality_parity: Path):
    cache: dict[str, Case] = {}

    def load(name: str) -> Case:
        if name not in cache:
            folder = modality_parity / name
            cache[name] = Case(folder, json.loads((folder / "config.json").read_text()),
                               load_file(str(folder / "io.safetensors")))
        return cache[name]

    return load


def truncated_copy(source: Path, folder: Path, keep: float = 0.3) -> Path:
    """The first ``keep`` of ``source``'s bytes under the same name in ``folder``."""
    data = source.read_bytes()
    path = folder / source.name
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def garbage_file(folder: Path, name: str) -> Path:
    path = folder / name
    path.write_bytes(bytes(range(256)) * 8)
    return path
