"""The Python API: load_model → prepare_points → encode_points / encode_text, and saved outputs."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import vitlens_cli
from vitlens_cli.embedding import embed_files, expand_inputs, save_embeddings
from vitlens_cli.errors import VitlensError
from vitlens_cli.points import PointCloud


def test_api_round_trip():
    model = vitlens_cli.load_model("tiny")
    rng = np.random.default_rng(0)
    cloud = PointCloud(rng.uniform(-3, 5, (5000, 3)))
    pts = vitlens_cli.prepare_points(cloud, model.cfg.preprocess)
    assert pts.shape == (1024, 3)
    assert np.abs(pts.mean(axis=0)).max() < 1e-5
    assert np.linalg.norm(pts, axis=1).max() == pytest.approx(1.0, abs=1e-6)
    with torch.inference_mode():
        raw = model.encode_points(torch.from_numpy(pts)[None])
        unit = model.encode_points(torch.from_numpy(pts)[None], normalize=True)
        text = model.encode_text(["a chair", "a car"], normalize=True)
    assert raw.shape == (1, 32) and text.shape == (2, 32)
    assert not torch.allclose(raw.norm(dim=-1), torch.ones(1))
    torch.testing.assert_close(unit, raw / raw.norm(dim=-1, keepdim=True))
    torch.testing.assert_close(text.norm(dim=-1), torch.ones(2))


def test_rgb_model_gets_grey_for_uncoloured_clouds():
    model = vitlens_cli.load_model("tiny-rgb")
    pts = vitlens_cli.prepare_points(PointCloud(np.random.default_rng(1).normal(size=(3000, 3))),
                                     model.cfg.preprocess)
    assert pts.shape == (2048, 6)
    assert np.all(pts[:, 3:] == np.float32(0.4))


def test_expand_inputs_reports_missing_and_empty(tmp_path):
    (tmp_path / "empty").mkdir()
    files, failures = expand_inputs([tmp_path / "empty", tmp_path / "nope.ply", str(tmp_path / "*.obj")])
    assert files == []
    assert [f.reason for f in failures] == ["folder holds no supported 3D files", "no such file or folder",
                                           "pattern matches no supported 3D files"]


def test_save_refuses_unknown_suffix_and_leaves_no_temp_files(tmp_path):
    model = vitlens_cli.load_model("tiny")
    np.save(tmp_path / "a.npy", np.random.default_rng(0).normal(size=(900, 3)).astype(np.float32))
    result = embed_files(model, [tmp_path / "a.npy"])
    with pytest.raises(VitlensError, match="must end in .npy or .parquet"):
        save_embeddings(result, tmp_path / "out.csv")
    out, manifest = save_embeddings(result, tmp_path / "out.npy")
    assert np.load(out).shape == (1, 32)
    assert json.loads(manifest.read_text())["rows"] == 1
    assert not list(tmp_path.glob(".*tmp"))
