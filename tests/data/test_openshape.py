"""OpenShape layouts, generated here in the documented formats (synthetic data, not the real release)."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from vitlens_cli.data.cache import CachedPoints
from vitlens_cli.data.openshape import prepare_lvis, prepare_modelnet40, prepare_scanobjectnn
from vitlens_cli.data.safe_npy import load_npy
from vitlens_cli.errors import VitlensError


def _obj_array(items):
    arr = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):
        arr[i] = item
    return arr


def test_modelnet40_openshape_layout(tmp_path):
    rng = np.random.default_rng(0)
    meta = tmp_path / "meta_data" / "modelnet40"
    meta.mkdir(parents=True)
    split = [{"name": "airplane_0627", "category": "airplane"}, {"name": "flower_pot_0150", "category": "flower_pot"}]
    (meta / "test_split.json").write_text(json.dumps(split))
    clouds = [{"xyz": rng.normal(size=(10_000, 3)).astype(np.float32), "rgb": np.full((10_000, 3), 100.0)},
              {"xyz": rng.normal(size=(12_000, 3)).astype(np.float32), "rgb": np.full((12_000, 3), 100.0)}]
    np.save(meta / "test_pc.npy", _obj_array(clouds))
    idx = prepare_modelnet40(tmp_path, tmp_path / "cache")
    ds = CachedPoints(tmp_path / "cache")
    assert idx.channels == 6 and idx.num_points == 10_000 and idx.up_axis == "y"
    assert ds.labels.tolist() == [0, 15]  # airplane, "flower pot" in the ModelNet40 list
    pts, _, name = ds[0]
    assert name == "airplane_0627"
    np.testing.assert_allclose(pts[:, 3:], 100 / 255, rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(pts[:, :3], axis=1).max(), 1.0, rtol=1e-5)
    # a 10,000-point cloud is kept as is (only normalised): same point set
    src = clouds[0]["xyz"] - clouds[0]["xyz"].mean(0)
    np.testing.assert_allclose(pts[:, :3], src / np.linalg.norm(src, axis=1).max(), atol=1e-5)


def test_scanobjectnn_openshape_layout_keeps_official_labels(tmp_path):
    rng = np.random.default_rng(1)
    meta = tmp_path / "meta_data" / "scanobjectnn"
    meta.mkdir(parents=True)
    xyz = _obj_array([rng.normal(size=(2048, 3)).astype(np.float32) for _ in range(3)])
    np.save(meta / "xyz_label.npy", {"xyz": xyz, "label": np.array([14, 0, 6])})
    prepare_scanobjectnn(tmp_path / "meta_data", tmp_path / "cache")
    ds = CachedPoints(tmp_path / "cache")
    assert [ds.index.classes[i] for i in ds.labels] == ["toilet", "bag", "display"]
    pts, _, _ = ds[0]
    assert pts.shape == (10_000, 6)
    np.testing.assert_allclose(pts[:, 3:], 0.4)  # no rgb in the file: OpenShape's grey


def test_lvis_layout_sorted_categories_and_relocated_paths(tmp_path):
    rng = np.random.default_rng(2)
    (tmp_path / "meta_data" / "split").mkdir(parents=True)
    entries = []
    for uid, cat in (("u1", "mug"), ("u2", "Band_Aid"), ("u3", "arctic_(type_of_shoe)")):
        obj = tmp_path / "Objaverse" / "000-001" / f"{uid}.npy"
        obj.parent.mkdir(parents=True, exist_ok=True)
        np.save(obj, {"xyz": rng.uniform(-1, 1, (10_000, 3)).astype(np.float32),
                      "rgb": rng.uniform(0, 1, (10_000, 3)).astype(np.float32), "text": ["x"]})
        entries.append({"uid": uid, "category": cat, "group": "000-001",
                        "data_path": f"/mnt/data/objaverse-processed/merged_for_training_final/Objaverse/000-001/{uid}.npy"})
    (tmp_path / "meta_data" / "split" / "lvis.json").write_text(json.dumps(entries))
    prepare_lvis(tmp_path, tmp_path / "cache")
    ds = CachedPoints(tmp_path / "cache")
    assert ds.index.classes == ["Band Aid", "arctic (type of shoe)", "mug"]  # sorted raw names, as prompts
    assert ds.labels.tolist() == [2, 0, 1] and ds.names == ["u1", "u2", "u3"]
    os.remove(tmp_path / "Objaverse" / "000-001" / "u2.npy")
    idx = prepare_lvis(tmp_path, tmp_path / "cache2")  # a missing object is skipped and reported
    assert idx.count == 2 and [s["name"] for s in idx.skipped] == ["u2"]
    assert "u2.npy not found" in idx.skipped[0]["reason"]
    assert CachedPoints(tmp_path / "cache2").names == ["u1", "u3"]


def test_safe_npy_refuses_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("true",))

    np.save(tmp_path / "evil.npy", np.array([Evil()], dtype=object))
    with pytest.raises(VitlensError, match="refusing to load 'posix.system'|refusing to load 'nt.system'"):
        load_npy(tmp_path / "evil.npy")
    np.save(tmp_path / "ok.npy", {"xyz": np.ones((2, 3), np.float32), "label": np.int64(4)})
    data = load_npy(tmp_path / "ok.npy")
    assert data["label"] == 4 and data["xyz"].shape == (2, 3)
    np.save(tmp_path / "plain.npy", np.arange(6).reshape(2, 3))
    assert load_npy(tmp_path / "plain.npy").tolist() == [[0, 1, 2], [3, 4, 5]]
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    with pytest.raises(VitlensError, match="not a readable .npy"):
        load_npy(tmp_path / "junk.npy")
