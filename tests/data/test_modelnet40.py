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


def _processed_folder(tmp_path, payload: bytes, ids=("airplane_0627", "chair_0890")):
    root = tmp_path / "modelnet40_normal_resampled"
    root.mkdir(parents=True)
    (root / "modelnet40_shape_names.txt").write_text("airplane\nchair\n")
    (root / "modelnet40_test.txt").write_text("\n".join(ids) + "\n")
    (root / "modelnet40_test_8192pts_fps.dat").write_bytes(payload)
    return root


def test_ulip_processed_file_is_preferred_and_read_without_trusting_the_pickle(tmp_path):
    import os
    import pickle

    import pytest

    from vitlens_cli.data.modelnet40 import read_processed
    from vitlens_cli.errors import VitlensError

    clouds = [np.full((8192, 6), k, np.float32) for k in (1, 2)]
    root = _processed_folder(tmp_path / "ok", pickle.dumps([clouds, [np.array([0]), np.array([1])]]))
    (root / "airplane").mkdir()  # a resampled tree beside it does not win
    assert find_source(tmp_path / "ok") == ("processed", root)
    assert [c[0, 0] for c in read_processed(root, 2)] == [1, 2]
    with pytest.raises(VitlensError, match="2 clouds where modelnet40_test.txt lists 3"):
        read_processed(root, 3)

    class Evil:
        def __reduce__(self):
            return os.system, ("true",)

    evil = _processed_folder(tmp_path / "evil", pickle.dumps([[Evil()], [0]]))
    with pytest.raises(VitlensError, match="refusing to load 'posix.system'"):
        read_processed(evil, 1)
