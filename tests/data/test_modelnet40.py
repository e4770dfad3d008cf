"""ModelNet40 through the mesh path lands on the published resampled clouds (real data)."""
from __future__ import annotations

import numpy as np
from pykdtree.kdtree import KDTree

from vitlens_cli.data.modelnet40 import find_source, load_shape, split_items
from vitlens_cli.points import normalize, read_points


def _chamfer(a: np.ndarray, b: np.ndarray) -> float:
    """Sum of the two directional mean nearest-neighbour distances."""
    return float(KDTree(b).query(a, k=1)[0].mean() + KDTree(a).query(b, k=1)[0].mean())


def test_off_meshes_match_resampled_clouds(fixtures):
    meshes = fixtures / "meshes"
    got = {n: load_shape("mesh", meshes / f"{n}.off") for n in ("airplane_0001", "airplane_0002")}
    ref = {n: normalize(read_points(meshes / f"{n}.resampled.txt")).xyz for n in got}
    assert got["airplane_0001"].shape == (8192, 3)
    for name, other in (("airplane_0001", "airplane_0002"), ("airplane_0002", "airplane_0001")):
        assert _chamfer(got[name], ref[name]) < 0.05
        assert _chamfer(got[name], ref[other]) >= 0.15


def test_mesh_tree_is_found_and_listed(tmp_path, fixtures):
    for cls, name in (("airplane", "airplane_0001"), ("toilet", "toilet_0001")):
        (tmp_path / "ModelNet40" / cls / "test").mkdir(parents=True)
        (tmp_path / "ModelNet40" / cls / "test" / f"{name}.off").write_bytes((fixtures / "meshes" / f"{name}.off").read_bytes())
    kind, root = find_source(tmp_path)
    assert kind == "mesh" and root == tmp_path / "ModelNet40"
    assert [(c, p.name) for c, p in split_items(kind, root)] == [("airplane", "airplane_0001.off"),
                                                               ("toilet", "toilet_0001.off")]
