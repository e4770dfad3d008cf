"""The real fixture files every retrieval test indexes, and one tiny-model index of them per session."""
from __future__ import annotations

from pathlib import Path

import pytest

from vitlens_cli.atomic import file_digest
from vitlens_cli.points import iter_clouds


def fixture_inputs(fixtures: Path) -> list[str]:
    """The 39 ModelNet40 shapes, the meshes, the clouds (ply, pcd, an h5 stack) and the 5 ModelNet .npy clouds."""
    return [str(fixtures / "modelnet40" / "normal_resampled" / "*" / "*.txt"), str(fixtures / "meshes"),
            str(fixtures / "clouds"), str(fixtures / "modelnet40" / "npy")]


def expected_items(fixtures: Path) -> dict[str, str]:
    """item → sha256 of its file, read independently of the index code."""
    files = sorted((fixtures / "modelnet40" / "normal_resampled").glob("*/*.txt"))
    for sub in ("meshes", "clouds", "modelnet40/npy"):
        files += sorted(p for p in (fixtures / sub).rglob("*") if p.is_file())
    out = {}
    for f in files:
        digest = file_digest(f)[0]
        for name, _ in iter_clouds(f.absolute()):
            out[name] = digest
    return out


@pytest.fixture(scope="session")
def built_index(fixtures, tmp_path_factory):
    from vitlens_cli.retrieval import Index

    folder = tmp_path_factory.mktemp("retrieval") / "index"
    return Index.build(fixture_inputs(fixtures), folder, model="tiny", modalities=("3d",), shard_files=8)
