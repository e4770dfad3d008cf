"""Raw Objaverse through the objaverse package API, with the package replaced by a local fake (synthetic .glb)."""
from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import trimesh
from typer.testing import CliRunner

from vitlens_cli.cli.app import app
from vitlens_cli.data.cache import CachedPoints


@pytest.fixture
def fake_objaverse(tmp_path, monkeypatch):
    glbs = {}
    for uid, colour in (("a1", [255, 0, 0, 255]), ("a2", [0, 255, 0, 255]), ("b1", [0, 0, 255, 255])):
        box = trimesh.creation.box()
        box.visual.vertex_colors = np.tile(np.uint8(colour), (len(box.vertices), 1))
        path = tmp_path / "glbs" / f"{uid}.glb"
        path.parent.mkdir(exist_ok=True)
        box.export(path)
        glbs[uid] = str(path)
    (tmp_path / "glbs" / "bad.glb").write_bytes(b"not a glb")
    glbs["bad"] = str(tmp_path / "glbs" / "bad.glb")
    calls = {}
    module = types.ModuleType("objaverse")
    module.load_lvis_annotations = lambda: {"mug": ["a1", "a2", "bad"], "Band_Aid": ["b1"], "tent": ["zz"]}

    def load_objects(uids, download_processes=1):
        calls["uids"] = list(uids)
        return {u: glbs[u] for u in uids if u in glbs}  # 'zz' is unavailable, as the real API skips it

    module.load_objects = load_objects
    monkeypatch.setitem(sys.modules, "objaverse", module)
    return calls


def test_prepare_objaverse_subset_with_colour(tmp_path, fake_objaverse):
    res = CliRunner().invoke(app, ["prepare", "objaverse", "--root", str(tmp_path / "data"),
                                   "--categories", "mug,Band_Aid", "--per-category", "3"])
    assert res.exit_code == 1  # 'bad' is skipped and reported
    assert any(ln.startswith("skipped: bad:") for ln in res.output.splitlines())
    assert fake_objaverse["uids"] == ["b1", "a1", "a2", "bad"]
    dest = next((tmp_path / "data").glob("objaverse-*"))
    ds = CachedPoints(dest)
    assert ds.names == ["b1", "a1", "a2"] and ds.index.classes == ["Band Aid", "mug"]
    pts, label, _ = ds[1]
    assert pts.shape == (10_000, 6) and label == 1
    np.testing.assert_allclose(pts[:, 3:], [[1.0, 0.0, 0.0]] * 10_000, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(pts[:, :3], axis=1).max(), 1.0, rtol=1e-5)
    # the prepared folder is evaluable as it is
    res = CliRunner().invoke(app, ["eval", str(dest), "--model", "tiny-rgb", "--out", str(tmp_path / "out"),
                                   "--workers", "0"], env={"VITLENS_CACHE": str(tmp_path / "cache")})
    assert res.exit_code == 0, res.output


def test_unknown_category_and_missing_package(tmp_path, fake_objaverse, monkeypatch):
    res = CliRunner().invoke(app, ["prepare", "objaverse", "--root", str(tmp_path), "--categories", "unicorn"])
    assert res.exit_code == 2 and "not LVIS categories: unicorn" in res.output
    monkeypatch.setitem(sys.modules, "objaverse", None)
    res = CliRunner().invoke(app, ["prepare", "objaverse", "--root", str(tmp_path)])
    assert res.exit_code == 2 and "pip install objaverse" in res.output
