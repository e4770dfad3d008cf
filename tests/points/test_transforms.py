"""PointCloud validation, normalise, up-axis conversion and deterministic resampling."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vitlens_cli.points import PointCloud, convert_up_axis, normalize, resample
from vitlens_cli.points.sampling import farthest_point_sample


def _cloud(n: int = 500, seed: int = 0, rgb: bool = True, normals: bool = True) -> PointCloud:
    rng = np.random.default_rng(seed)
    xyz = rng.normal(loc=[3.0, -2.0, 5.0], scale=[2.0, 0.5, 1.0], size=(n, 3))
    nrm = rng.standard_normal((n, 3))
    nrm /= np.linalg.norm(nrm, axis=1, keepdims=True)
    return PointCloud(xyz, rng.uniform(0, 1, (n, 3)) if rgb else None, nrm if normals else None)


# --------------------------------------------------------------------------- PointCloud

def test_pointcloud_casts_to_contiguous_float32() -> None:
    xyz = np.arange(30, dtype=np.float64).reshape(3, 10).T  # non-contiguous float64
    cloud = PointCloud(xyz, rgb=np.zeros((10, 3), np.int64))
    assert cloud.xyz.dtype == np.float32 and cloud.xyz.flags.c_contiguous
    assert cloud.rgb.dtype == np.float32 and cloud.normals is None
    assert len(cloud) == 10 and cloud.has_rgb


@pytest.mark.parametrize("shape", [(10,), (10, 2), (10, 4), (2, 10, 3)])
def test_pointcloud_rejects_bad_xyz(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="xyz must have shape"):
        PointCloud(np.zeros(shape))


@pytest.mark.parametrize("name", ["rgb", "normals"])
def test_pointcloud_rejects_misaligned_attributes(name: str) -> None:
    with pytest.raises(ValueError, match=name):
        PointCloud(np.zeros((10, 3)), **{name: np.zeros((9, 3))})


def test_pointcloud_is_frozen_and_take_keeps_alignment() -> None:
    cloud = _cloud(20)
    with pytest.raises(Exception):
        cloud.xyz = np.zeros((1, 3))  # type: ignore[misc]
    idx = np.array([5, 0, 19, 5])
    sub = cloud.take(idx)
    np.testing.assert_array_equal(sub.xyz, cloud.xyz[idx])
    np.testing.assert_array_equal(sub.rgb, cloud.rgb[idx])
    np.testing.assert_array_equal(sub.normals, cloud.normals[idx])


def test_features_channels() -> None:
    plain = _cloud(8, rgb=False)
    assert plain.features(3) is plain.xyz
    feats = plain.features(6)
    assert feats.shape == (8, 6)
    np.testing.assert_array_equal(feats[:, 3:], np.full((8, 3), 0.4, np.float32))
    coloured = _cloud(8)
    np.testing.assert_array_equal(coloured.features(6)[:, 3:], coloured.rgb)
    with pytest.raises(ValueError, match="channels"):
        plain.features(4)


# --------------------------------------------------------------------------- normalize

def test_normalize_centres_and_scales_to_unit_radius() -> None:
    cloud = _cloud(1000)
    out = normalize(cloud)
    assert out.xyz.dtype == np.float32
    np.testing.assert_allclose(out.xyz.astype(np.float64).mean(axis=0), 0.0, atol=1e-6)
    radius = np.linalg.norm(out.xyz.astype(np.float64), axis=1)
    assert abs(radius.max() - 1.0) < 1e-6
    # a similarity transform: distances shrink by one common factor
    d_in = np.linalg.norm(cloud.xyz[1:] - cloud.xyz[:-1], axis=1)
    d_out = np.linalg.norm(out.xyz[1:] - out.xyz[:-1], axis=1)
    np.testing.assert_allclose(d_out / d_in, (d_out / d_in)[0], rtol=1e-4)
    np.testing.assert_array_equal(out.rgb, cloud.rgb)
    np.testing.assert_array_equal(out.normals, cloud.normals)


def test_normalize_is_idempotent_and_handles_a_single_point() -> None:
    once = normalize(_cloud(300))
    np.testing.assert_allclose(normalize(once).xyz, once.xyz, atol=1e-6)
    single = normalize(PointCloud(np.array([[4.0, 5.0, 6.0]])))
    np.testing.assert_array_equal(single.xyz, np.zeros((1, 3), np.float32))


# --------------------------------------------------------------------------- up-axis

def test_convert_up_axis_swaps_y_and_z() -> None:
    cloud = _cloud(50)
    out = convert_up_axis(cloud, "z", "y")
    np.testing.assert_array_equal(out.xyz, cloud.xyz[:, [0, 2, 1]])
    np.testing.assert_array_equal(out.normals, cloud.normals[:, [0, 2, 1]])
    np.testing.assert_array_equal(out.rgb, cloud.rgb)
    back = convert_up_axis(out, "y", "z")
    np.testing.assert_array_equal(back.xyz, cloud.xyz)
    np.testing.assert_array_equal(back.normals, cloud.normals)
    assert convert_up_axis(cloud, "y", "y") is cloud
    no_normals = convert_up_axis(_cloud(5, normals=False), "y", "z")
    assert no_normals.normals is None


@pytest.mark.parametrize("source, target", [("x", "y"), ("y", "Z"), ("up", "z")])
def test_convert_up_axis_rejects_unknown_axes(source: str, target: str) -> None:
    with pytest.raises(ValueError, match="up-axis"):
        convert_up_axis(_cloud(5), source, target)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- resample

def test_resample_fps_equals_farthest_point_sample() -> None:
    cloud = _cloud(2000, seed=3)
    out = resample(cloud, 256, method="fps")
    idx = farthest_point_sample(cloud.xyz, 256).numpy()
    assert idx[0] == 0
    np.testing.assert_array_equal(out.xyz, cloud.xyz[idx])
    np.testing.assert_array_equal(out.rgb, cloud.rgb[idx])
    np.testing.assert_array_equal(out.normals, cloud.normals[idx])
    np.testing.assert_array_equal(resample(cloud, 256).xyz, out.xyz)  # fps is the default


def test_resample_random_is_seeded_and_without_repeats() -> None:
    cloud = PointCloud(np.arange(1000, dtype=np.float64).repeat(3).reshape(1000, 3))
    a = resample(cloud, 100, method="random", seed=5)
    b = resample(cloud, 100, method="random", seed=5)
    c = resample(cloud, 100, method="random", seed=6)
    np.testing.assert_array_equal(a.xyz, b.xyz)
    assert not np.array_equal(a.xyz, c.xyz)
    rows = a.xyz[:, 0]
    assert len(np.unique(rows)) == 100 and (np.diff(rows) > 0).all()  # a sorted subset


def test_resample_upsampling_keeps_every_original() -> None:
    cloud = _cloud(70, seed=9)
    out = resample(cloud, 200, seed=1)
    assert len(out) == 200
    np.testing.assert_array_equal(out.xyz[:70], cloud.xyz)
    np.testing.assert_array_equal(out.rgb[:70], cloud.rgb)
    extra = out.xyz[70:]
    assert all((cloud.xyz == row).all(axis=1).any() for row in extra)  # repeats of real points
    np.testing.assert_array_equal(resample(cloud, 200, seed=1).xyz, out.xyz)
    assert not np.array_equal(resample(cloud, 200, seed=2).xyz, out.xyz)


def test_resample_same_size_and_errors() -> None:
    cloud = _cloud(40)
    assert resample(cloud, 40) is cloud
    with pytest.raises(ValueError, match="positive"):
        resample(cloud, 0)
    with pytest.raises(ValueError, match="method"):
        resample(cloud, 10, method="grid")  # type: ignore[arg-type]


def test_resample_fps_on_torch_built_cloud() -> None:
    xyz = torch.rand(300, 3, generator=torch.Generator().manual_seed(0)).numpy()
    out = resample(PointCloud(xyz), 32)
    assert len(out) == 32 and len(np.unique(out.xyz, axis=0)) == 32
