"""3D as one modality among equals: the point readers and prepare_points, unchanged."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vitlens_cli.errors import PointFileError
from vitlens_cli.modalities import get_modality
from vitlens_cli.models.config import Preprocess
from vitlens_cli.models.preprocess import prepare_points
from vitlens_cli.points import read_points


def test_same_as_the_point_pipeline(fixtures):
    points = get_modality("3d")
    contract = Preprocess(num_points=1024)
    for path in [fixtures / "modelnet40" / "npy" / "car_0260.npy", fixtures / "clouds" / "owl_rgb.ply",
                 fixtures / "meshes" / "chair_0002.off"]:
        expected = prepare_points(read_points(path), contract)
        got = points.prepare(path, contract)
        assert got.dtype == torch.float32 and np.array_equal(got.numpy(), expected)


def test_default_contract_is_the_one_stop_point_tower(fixtures):
    x = get_modality("3d").prepare(fixtures / "modelnet40" / "npy" / "guitar_0243.npy")
    assert x.shape == (8192, 3)
    assert float(x.norm(dim=1).max()) == pytest.approx(1.0, abs=1e-5)


def test_point_errors_are_the_point_readers_own(tmp_path):
    path = tmp_path / "bad.ply"
    path.write_bytes(b"ply\nformat nonsense\n")
    with pytest.raises(PointFileError) as info:
        get_modality("3d").read(path)
    assert str(info.value).startswith(f"{path}: ") and "\n" not in str(info.value)
