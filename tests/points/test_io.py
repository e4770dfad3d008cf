"""Readers: every real fixture format, synthetic colour-carrying files and bad input.

Real data comes from ``../shared/fixtures`` (tests skip without it); every file this module writes
itself lives in ``tmp_path`` and is named ``synthetic_*``.
"""
from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest

from vitlens_cli.errors import PointFileError
from vitlens_cli.points import PointCloud, convert_up_axis, iter_clouds, normalize, read_points

MESH_POINTS = 2048


def _modelnet_txts(root: Path) -> list[Path]:
    return sorted((root / "modelnet40" / "normal_resampled").glob("*/*.txt"))


def _chamfer(a: np.ndarray, b: np.ndarray) -> float:
    """Sum of the two directional mean nearest-neighbour distances."""
    from scipy.spatial import cKDTree

    a, b = a.astype(np.float64), b.astype(np.float64)
    return float(cKDTree(b).query(a)[0].mean() + cKDTree(a).query(b)[0].mean())


# --------------------------------------------------------------------------- real point files

def test_modelnet_normal_resampled_txt(fixtures: Path) -> None:
    files = _modelnet_txts(fixtures)
    assert len(files) >= 39
    for path in files:
        items = list(iter_clouds(path))
        assert [name for name, _ in items] == [str(path)]
        cloud = items[0][1]
        assert cloud.xyz.shape == (10000, 3) and cloud.xyz.dtype == np.float32
        assert cloud.normals is not None, f"{path.name}: normals not detected"
        assert cloud.rgb is None
        np.testing.assert_allclose(np.linalg.norm(cloud.normals, axis=1), 1.0, atol=1e-2)
        assert np.linalg.norm(cloud.xyz, axis=1).max() <= 1.001 + 1e-6
        raw = np.loadtxt(path, delimiter=",", max_rows=3)
        np.testing.assert_allclose(cloud.xyz[:3], raw[:, :3], rtol=1e-6)
        np.testing.assert_allclose(cloud.normals[:3], raw[:, 3:6], rtol=1e-6)


@pytest.mark.parametrize("shape, thin_axis", [("airplane/airplane_0703.txt", "y")])
def test_modelnet_txt_is_y_up(fixtures: Path, shape: str, thin_axis: str) -> None:
    # An airplane is flattest along its up-axis: y for ModelNet's resampled clouds.
    cloud = read_points(fixtures / "modelnet40" / "normal_resampled" / shape)
    extent = np.ptp(cloud.xyz, axis=0)
    assert "xyz"[int(np.argmin(extent))] == thin_axis
    person = fixtures / "modelnet40" / "normal_resampled" / "person"
    for path in person.glob("*.txt"):  # a standing person is tallest along y
        assert int(np.argmax(np.ptp(read_points(path).xyz, axis=0))) == 1


def test_modelnet_npy(fixtures: Path) -> None:
    files = sorted((fixtures / "modelnet40" / "npy").glob("*.npy"))
    assert len(files) == 5
    for path in files:
        cloud = read_points(path)
        raw = np.load(path)
        assert cloud.xyz.shape == (8192, 3) and cloud.rgb is None and cloud.normals is None
        np.testing.assert_array_equal(cloud.xyz, raw)
        assert abs(np.linalg.norm(cloud.xyz, axis=1).max() - 1.0) < 1e-5


def test_owl_ply_rgb(fixtures: Path) -> None:
    path = fixtures / "clouds" / "owl_rgb.ply"
    cloud = read_points(path)
    assert len(cloud) == 10000 and cloud.has_rgb
    assert cloud.rgb.min() >= 0.0 and cloud.rgb.max() <= 1.0
    assert cloud.rgb.max() > 0.5  # divided by 255 once, not twice
    with open(path) as fh:
        lines = fh.read().splitlines()
    first = lines[lines.index("end_header") + 1].split()
    np.testing.assert_allclose(cloud.xyz[0], np.array(first[:3], dtype=np.float32))
    np.testing.assert_allclose(cloud.rgb[0] * 255.0, np.array(first[3:6], dtype=np.float64), atol=1e-3)
    assert np.linalg.norm(cloud.xyz, axis=1).max() <= 1.0 + 1e-5


def test_partial_pcd(fixtures: Path) -> None:
    path = fixtures / "clouds" / "airplane_partial.pcd"
    cloud = read_points(path)
    assert len(cloud) == 796 and cloud.rgb is None
    text = path.read_text().splitlines()
    body = text[[i for i, ln in enumerate(text) if ln.startswith("DATA")][0] + 1:]
    np.testing.assert_allclose(cloud.xyz, np.array([ln.split() for ln in body], dtype=np.float32))


def test_h5_layout_one_cloud_per_row(fixtures: Path) -> None:
    import h5py

    path = fixtures / "clouds" / "ycb_layout_test.h5"
    with h5py.File(path, "r") as fh:
        data = fh["data"][:]
    items = list(iter_clouds(path))
    assert [name for name, _ in items] == [f"{path}#{i}" for i in range(len(data))]
    for (_, cloud), row in zip(items, data):
        np.testing.assert_array_equal(cloud.xyz, row.astype(np.float32))
    with pytest.raises(PointFileError, match="holds 6 clouds|holds .* clouds") as err:
        read_points(path)
    assert str(path) in str(err.value)


# --------------------------------------------------------------------------- meshes

@pytest.mark.parametrize("name", ["airplane_0001.off", "chair_0002.off", "toilet_0001.off"])
def test_off_meshes_sampled_and_seeded(fixtures: Path, name: str) -> None:
    path = fixtures / "meshes" / name
    a = read_points(path, mesh_points=MESH_POINTS, seed=3)
    b = read_points(path, mesh_points=MESH_POINTS, seed=3)
    c = read_points(path, mesh_points=MESH_POINTS, seed=4)
    assert len(a) == MESH_POINTS and len(read_points(path, mesh_points=777)) == 777
    np.testing.assert_array_equal(a.xyz, b.xyz)
    assert not np.array_equal(a.xyz, c.xyz)
    assert np.isfinite(a.xyz).all()


def test_off_crlf_airplane(fixtures: Path) -> None:
    path = fixtures / "meshes" / "airplane_0001.off"
    assert b"\r\n" in path.read_bytes()[:64]
    cloud = read_points(path, mesh_points=MESH_POINTS)
    header = path.read_bytes().split(b"\r\n")[1].split()
    n_vert = int(header[0])
    verts = np.array([ln.split() for ln in path.read_bytes().split(b"\r\n")[2:2 + n_vert]], dtype=np.float64)
    # Samples lie on the surface: inside the vertex bounding box (units are the original ones).
    lo, hi = verts.min(0), verts.max(0)
    assert (cloud.xyz >= lo - 1e-3).all() and (cloud.xyz <= hi + 1e-3).all()
    assert np.ptp(cloud.xyz, axis=0).min() > 50  # the whole airplane, not a piece of it


def test_off_fused_header(tmp_path: Path) -> None:
    verts = "0 0 0\n1 0 0\n0 1 0\n0 0 1\n"
    faces = "3 0 1 2\n3 0 1 3\n3 0 2 3\n3 1 2 3\n"
    fused = tmp_path / "synthetic_fused.off"
    fused.write_text("OFF4 4 0\n" + verts + faces)
    plain = tmp_path / "synthetic_plain.off"
    plain.write_text("OFF\n4 4 0\n" + verts + faces)
    a, b = read_points(fused, mesh_points=300), read_points(plain, mesh_points=300)
    assert len(a) == 300
    np.testing.assert_array_equal(a.xyz, b.xyz)
    big = tmp_path / "synthetic_fused_wide.off"  # the ModelNet spelling: "OFF1234 5678 0"
    big.write_text("OFF1234 5678 0\n" + verts + faces)
    with pytest.raises(PointFileError, match="truncated") as err:
        read_points(big)
    assert str(big) in str(err.value)


def test_off_polygon_faces(tmp_path: Path) -> None:
    path = tmp_path / "synthetic_quad.off"
    path.write_text("OFF\n4 1 0\n0 0 0\n1 0 0\n1 1 0\n0 1 0\n4 0 1 2 3\n")
    cloud = read_points(path, mesh_points=1000)
    assert len(cloud) == 1000
    assert np.allclose(cloud.xyz[:, 2], 0) and cloud.xyz[:, :2].min() >= 0 and cloud.xyz[:, :2].max() <= 1


def test_mesh_to_cloud_matches_official_resampled(fixtures: Path) -> None:
    """Mesh → cloud end to end: z-up mesh, (x, y, z) → (x, z, y), normalise, compare to ModelNet's cloud.

    (x, z, y) is ``convert_up_axis(z → y)``; (x, z, -y) is not the mapping ModelNet used
    (airplane_0001 is then off by Chamfer ≈ 0.24; airplane_0002 is symmetric and cannot tell).
    """
    meshes = fixtures / "meshes"
    refs = {i: normalize(read_points(meshes / f"airplane_{i:04d}.resampled.txt")).xyz for i in (1, 2)}
    flipped = {}
    for i in (1, 2):
        cloud = read_points(meshes / f"airplane_{i:04d}.off", mesh_points=10_000, seed=0)
        ours = normalize(convert_up_axis(cloud, "z", "y")).xyz
        assert _chamfer(ours, refs[i]) < 0.05
        assert _chamfer(ours, refs[3 - i]) > 0.15
        flipped[i] = _chamfer(normalize(cloud.with_xyz(ours * np.float32([1, 1, -1]))).xyz, refs[i])
    assert flipped[1] > 0.15  # (x, z, -y) does not hold for airplane_0001


def _box(**colours):
    import trimesh

    box = trimesh.creation.box()
    return trimesh.Trimesh(box.vertices.copy(), box.faces.copy(), process=False, **colours)


@pytest.mark.parametrize("suffix", [".obj", ".glb", ".ply"])
def test_synthetic_mesh_vertex_colours(tmp_path: Path, suffix: str) -> None:
    vc = np.tile(np.uint8([255, 0, 0, 255]), (8, 1))
    vc[:4] = [0, 0, 255, 255]
    path = tmp_path / f"synthetic_vertex_colours{suffix}"
    _box(vertex_colors=vc).export(path)
    cloud = read_points(path, mesh_points=500, seed=1)
    assert len(cloud) == 500 and cloud.has_rgb
    assert cloud.rgb.min() >= 0 and cloud.rgb.max() <= 1
    np.testing.assert_allclose(cloud.rgb[:, 1], 0.0, atol=1e-6)  # interpolated between red and blue
    np.testing.assert_allclose(cloud.rgb[:, 0] + cloud.rgb[:, 2], 1.0, atol=1e-3)
    assert (cloud.rgb[:, 0] > 0.99).any() and (cloud.rgb[:, 2] > 0.99).any()
    np.testing.assert_array_equal(cloud.xyz, read_points(path, mesh_points=500, seed=1).xyz)


@pytest.mark.parametrize("suffix", [".obj", ".glb", ".ply"])
def test_synthetic_mesh_face_colours(tmp_path: Path, suffix: str) -> None:
    fc = np.tile(np.uint8([0, 255, 0, 255]), (12, 1))
    fc[:6] = [255, 255, 0, 255]
    path = tmp_path / f"synthetic_face_colours{suffix}"
    _box(face_colors=fc).export(path)
    cloud = read_points(path, mesh_points=500, seed=1)
    assert cloud.has_rgb
    # OBJ/GLB store face colours as vertex colours, so only the shared channels are exact.
    np.testing.assert_allclose(cloud.rgb[:, 1], 1.0, atol=1e-6)
    np.testing.assert_allclose(cloud.rgb[:, 2], 0.0, atol=1e-6)
    assert np.ptp(cloud.rgb[:, 0]) > 0.2  # both face colours show
    if suffix == ".ply":  # PLY keeps real face colours: every sample has exactly one of the two
        assert set(np.unique(cloud.rgb[:, 0])) == {0.0, 1.0}


def test_synthetic_stl_geometry(tmp_path: Path) -> None:
    path = tmp_path / "synthetic_box.stl"  # STL carries no colour
    _box().export(path)
    cloud = read_points(path, mesh_points=400, seed=2)
    assert len(cloud) == 400 and cloud.rgb is None
    np.testing.assert_allclose(np.abs(cloud.xyz).max(axis=1), 0.5, atol=1e-5)  # on the unit box surface


def test_synthetic_npz_xyz_rgb(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    xyz = rng.standard_normal((300, 3)).astype(np.float32)
    rgb8 = rng.integers(0, 256, (300, 3)).astype(np.uint8)
    rgb8[0] = [255, 0, 128]
    path = tmp_path / "synthetic.npz"
    np.savez(path, xyz=xyz, rgb=rgb8)
    cloud = read_points(path)
    np.testing.assert_array_equal(cloud.xyz, xyz)
    np.testing.assert_allclose(cloud.rgb, rgb8 / 255.0, atol=1e-7)
    path01 = tmp_path / "synthetic_unit_rgb.npz"
    np.savez(path01, points=xyz, colors=rgb8 / 255.0)
    np.testing.assert_allclose(read_points(path01).rgb, rgb8 / 255.0, atol=1e-7)


def test_synthetic_xyz_six_columns_0_255(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    xyz = rng.uniform(-1, 1, (200, 3))
    rgb = rng.integers(0, 256, (200, 3))
    rgb[0] = [255, 255, 255]
    path = tmp_path / "synthetic.xyz"
    np.savetxt(path, np.hstack([xyz, rgb]), fmt=["%.6f"] * 3 + ["%d"] * 3)
    cloud = read_points(path)
    assert cloud.normals is None
    np.testing.assert_allclose(cloud.xyz, xyz, atol=1e-6)
    np.testing.assert_allclose(cloud.rgb, rgb / 255.0, atol=1e-7)


def test_synthetic_pcd_binary_with_rgb(tmp_path: Path) -> None:
    xyz = np.float32([[0, 0, 0], [1, 2, 3], [np.nan, np.nan, np.nan], [-1, 0.5, 2]])
    packed = np.uint32([0xFF0000, 0x00FF00, 0, 0x0000FF])
    rec = np.zeros(4, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("rgb", "<f4")])
    rec["x"], rec["y"], rec["z"] = xyz.T
    rec["rgb"] = packed.view(np.float32)
    header = ("VERSION 0.7\nFIELDS x y z rgb\nSIZE 4 4 4 4\nTYPE F F F F\nCOUNT 1 1 1 1\n"
              "WIDTH 4\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS 4\nDATA binary\n")
    path = tmp_path / "synthetic.pcd"
    path.write_bytes(header.encode() + rec.tobytes())
    cloud = read_points(path)  # the NaN row (a hole of an organised scan) is dropped
    np.testing.assert_array_equal(cloud.xyz, xyz[[0, 1, 3]])
    np.testing.assert_array_equal(cloud.rgb, np.float32([[1, 0, 0], [0, 1, 0], [0, 0, 1]]))
    trunc = tmp_path / "synthetic_truncated.pcd"
    trunc.write_bytes(header.encode() + rec.tobytes()[:-5])
    with pytest.raises(PointFileError, match="truncated") as err:
        read_points(trunc)
    assert str(trunc) in str(err.value)


# --------------------------------------------------------------------------- bad input

# What each reader says about 512 random bytes: the format's own signature check, not a generic failure.
GARBAGE_REASONS = {"ply": "not a PLY file", "off": "not an OFF file", "npy": "not a .npy file",
                   "npz": "not a .npz file", "xyz": "not a text file of numbers", "pcd": "not a PCD file",
                   "h5": "file signature not found", "obj": "no geometry", "stl": "no geometry",
                   "glb": "not a GLB file"}


def _write_bad(tmp_path: Path, case: str) -> tuple[Path, str]:
    """Write one bad file; return it and a fragment its error must contain."""
    rng = np.random.default_rng(7)
    garbage = bytes(rng.integers(0, 256, 512, dtype=np.uint8))
    if case == "truncated_off":
        p = tmp_path / "synthetic_truncated.off"
        p.write_text("OFF\n8 12 0\n0 0 0\n1 0 0\n0 1 0\n")
        return p, "truncated"
    if case == "truncated_ply_ascii":
        p = tmp_path / "synthetic_truncated.ply"
        p.write_text("ply\nformat ascii 1.0\nelement vertex 100\nproperty float x\nproperty float y\n"
                     "property float z\nend_header\n0 0 0\n1 1 1\n")
        return p, "truncated"
    if case == "truncated_ply_binary":
        import trimesh

        full = tmp_path / "synthetic_full.ply"
        trimesh.PointCloud(rng.standard_normal((100, 3))).export(full)
        p = tmp_path / "synthetic_truncated_bin.ply"
        p.write_bytes(full.read_bytes()[:-200])
        return p, "truncated"
    if case == "truncated_npy":
        full = tmp_path / "synthetic_full.npy"
        np.save(full, rng.standard_normal((100, 3)).astype(np.float32))
        p = tmp_path / "synthetic_truncated.npy"
        p.write_bytes(full.read_bytes()[:400])
        return p, "truncated: header promises 100 x 3 values"
    if case.startswith("garbage"):
        suffix = case.split('_')[1]
        p = tmp_path / f"synthetic_garbage.{suffix}"
        p.write_bytes(garbage)
        return p, GARBAGE_REASONS[suffix]
    if case.startswith("empty"):
        p = tmp_path / f"synthetic_empty.{case.split('_')[1]}"
        p.write_bytes(b"")
        return p, "empty"
    if case == "nan_xyz":
        p = tmp_path / "synthetic_nan.xyz"
        arr = rng.standard_normal((10, 3))
        arr[4, 1] = np.nan
        np.savetxt(p, arr)
        return p, "NaN"
    if case == "nan_npy":
        p = tmp_path / "synthetic_nan.npy"
        arr = rng.standard_normal((10, 3)).astype(np.float32)
        arr[2, 0] = np.inf
        np.save(p, arr)
        return p, "infinite"
    if case == "unsupported":
        p = tmp_path / "synthetic.vox"
        p.write_text("1 2 3\n")
        return p, "unsupported"
    if case == "pickled_npy":
        p = tmp_path / "synthetic_object.npy"
        np.save(p, np.array([{"xyz": [1, 2, 3]}], dtype=object), allow_pickle=True)
        return p, "pickled"
    if case == "raw_pickle_npy":
        p = tmp_path / "synthetic_raw_pickle.npy"
        p.write_bytes(pickle.dumps({"xyz": [1.0, 2.0, 3.0]}))
        return p, "not a .npy"
    if case == "missing":
        return tmp_path / "synthetic_missing.ply", "no such file"
    if case == "too_few_columns":
        p = tmp_path / "synthetic_two_columns.xyz"
        p.write_text("1 2\n3 4\n")
        return p, "(N, 3+)"
    raise AssertionError(case)


BAD_CASES = [
    "truncated_off", "truncated_ply_ascii", "truncated_ply_binary", "truncated_npy",
    "garbage_ply", "garbage_off", "garbage_npy", "garbage_npz", "garbage_xyz", "garbage_pcd", "garbage_h5",
    "garbage_obj", "garbage_stl", "garbage_glb",
    "empty_ply", "empty_off", "empty_npy", "empty_xyz", "empty_pcd", "empty_h5", "empty_obj", "empty_stl",
    "nan_xyz", "nan_npy", "unsupported", "pickled_npy", "raw_pickle_npy", "missing", "too_few_columns",
]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_raises_point_file_error(tmp_path: Path, case: str) -> None:
    path, fragment = _write_bad(tmp_path, case)
    with pytest.raises(PointFileError) as err:
        read_points(path)
    message = str(err.value)
    assert str(path) in message
    assert err.value.reason and len(message) > len(str(path)) + 3
    assert fragment.lower() in message.lower(), message


def test_garbage_npy_is_not_called_pickled(tmp_path: Path) -> None:
    path, _ = _write_bad(tmp_path, "garbage_npy")
    with pytest.raises(PointFileError) as err:
        read_points(path)
    assert "pickled" not in str(err.value)


def test_iter_clouds_raises_on_iteration_with_path(tmp_path: Path) -> None:
    path = tmp_path / "synthetic.docx"
    path.write_text("x")
    with pytest.raises(PointFileError) as err:
        list(iter_clouds(path))
    assert str(path) in str(err.value) and ".docx" in str(err.value)


def test_read_points_returns_pointcloud(tmp_path: Path) -> None:
    path = tmp_path / "synthetic.txt"
    np.savetxt(path, np.arange(12, dtype=np.float64).reshape(4, 3), delimiter=",")
    cloud = read_points(path)
    assert isinstance(cloud, PointCloud) and cloud.xyz.dtype == np.float32 and len(cloud) == 4


def _lzf_literals(data: bytes) -> bytes:
    """A valid LZF stream made of literal runs only (what the PCD reader must decode)."""
    out = bytearray()
    for i in range(0, len(data), 32):
        chunk = data[i:i + 32]
        out.append(len(chunk) - 1)
        out += chunk
    return bytes(out)


def test_synthetic_pcd_ascii_rgb_and_binary_compressed(tmp_path: Path) -> None:
    xyz = np.float32([[0.5, -1, 2], [3, 4, 5], [-0.25, 0, 1]])
    packed = np.uint32([0x102030, 0xFFFFFF, 0x000080])
    rgb_float = packed.view(np.float32)
    head = "VERSION 0.7\nFIELDS x y z rgb\nSIZE 4 4 4 4\nTYPE F F F F\nCOUNT 1 1 1 1\nWIDTH 3\nHEIGHT 1\nPOINTS 3\n"
    want_rgb = np.stack([(packed >> 16) & 255, (packed >> 8) & 255, packed & 255], 1) / 255.0
    ascii_path = tmp_path / "synthetic_ascii_rgb.pcd"
    rows = "".join(f"{x!r} {y!r} {z!r} {np.format_float_scientific(c, unique=True)}\n"
                   for (x, y, z), c in zip(xyz.tolist(), rgb_float))
    ascii_path.write_text(head + "DATA ascii\n" + rows)
    cloud = read_points(ascii_path)
    np.testing.assert_array_equal(cloud.xyz, xyz)
    np.testing.assert_allclose(cloud.rgb, want_rgb, atol=1e-7)
    columns = b"".join(np.ascontiguousarray(a).tobytes() for a in (xyz[:, 0], xyz[:, 1], xyz[:, 2], rgb_float))
    comp = _lzf_literals(columns)
    packed_path = tmp_path / "synthetic_compressed.pcd"
    packed_path.write_bytes((head + "DATA binary_compressed\n").encode()
                            + np.uint32([len(comp), len(columns)]).tobytes() + comp)
    cloud = read_points(packed_path)
    np.testing.assert_array_equal(cloud.xyz, xyz)
    np.testing.assert_allclose(cloud.rgb, want_rgb, atol=1e-7)


def _open3d_grid(with_normals: bool):
    """A cloud that compresses well (a regular grid, few colours): its LZF stream is mostly back references."""
    import open3d as o3d

    grid = np.stack(np.meshgrid(np.arange(40), np.arange(30), np.arange(5), indexing="ij"), -1).reshape(-1, 3)
    pcd = o3d.geometry.PointCloud()
    pcd.points = o3d.utility.Vector3dVector(grid * 0.05 - 1.0)
    pcd.colors = o3d.utility.Vector3dVector(np.float64([[1, 0, 0], [0, 0.5, 1]])[grid[:, 0] % 2])
    if with_normals:
        pcd.normals = o3d.utility.Vector3dVector(np.tile([0.0, 0.0, 1.0], (len(grid), 1)))
    return pcd


@pytest.mark.parametrize("mode", ["ascii", "binary", "binary_compressed"])
@pytest.mark.parametrize("with_normals", [False, True], ids=["xyzrgb", "normals"])
def test_pcd_written_by_open3d(tmp_path: Path, mode: str, with_normals: bool) -> None:
    import open3d as o3d

    pcd = _open3d_grid(with_normals)
    path = tmp_path / f"grid_{mode}.pcd"
    assert o3d.io.write_point_cloud(str(path), pcd, write_ascii=mode == "ascii",
                                    compressed=mode == "binary_compressed")
    assert f"DATA {mode}".encode() in path.read_bytes()[:400]
    if mode == "binary_compressed":
        body = path.read_bytes().split(b"DATA binary_compressed\n", 1)[1]
        csize, usize = np.frombuffer(body[:8], dtype="<u4")
        assert csize * 4 < usize  # compresses: the decoder went through back references, not only literals
    cloud = read_points(path)
    np.testing.assert_allclose(cloud.xyz, np.asarray(pcd.points), atol=1e-6)
    # open3d stores colour as 8 bits per channel
    np.testing.assert_allclose(cloud.rgb, np.round(np.asarray(pcd.colors) * 255) / 255, atol=1e-7)
    if with_normals:
        np.testing.assert_allclose(cloud.normals, np.asarray(pcd.normals), atol=1e-7)
    else:
        assert cloud.normals is None


def test_corrupt_compressed_pcd_is_one_reason(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    import open3d as o3d

    path = tmp_path / "grid.pcd"
    o3d.io.write_point_cloud(str(path), _open3d_grid(False), compressed=True)
    raw = bytearray(path.read_bytes())
    start = raw.index(b"DATA binary_compressed\n") + len(b"DATA binary_compressed\n") + 8
    for i in range(start + 3, len(raw), 7):
        raw[i] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(PointFileError, match="corrupt LZF"):
        read_points(path)
    assert "Open3D" not in "".join(capfd.readouterr())  # open3d's own warning stays quiet


def test_ascii_pcd_token_that_is_not_a_number_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "word.pcd"
    path.write_text("VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH 2\nHEIGHT 1\nPOINTS 2\n"
                    "DATA ascii\n0 1 2\n3 four 5\n")
    with pytest.raises(PointFileError, match="four"):  # open3d would read it as 0
        read_points(path)


def test_truncated_ascii_pcd_says_how_many_points(tmp_path: Path) -> None:
    import open3d as o3d

    path = tmp_path / "grid.pcd"
    o3d.io.write_point_cloud(str(path), _open3d_grid(False), write_ascii=True)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(PointFileError, match=r"truncated: header promises 6000 points, file has \d+"):
        read_points(path)


# --------------------------------------------------------------------------- what a reader must not open or allocate

def _npy_with_header(path: Path, shape: tuple[int, ...], dtype: str = "<f4", body: bytes = b"") -> Path:
    """A ``.npy`` whose header claims ``shape`` but that holds only ``body``."""
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": dtype, "fortran_order": False, "shape": shape})
        fh.write(body)
    return path


def test_fifo_is_refused_without_opening_it(tmp_path: Path) -> None:
    fifo = tmp_path / "synthetic_pipe.ply"
    os.mkfifo(fifo)  # opening it for reading would block until a writer appears
    with pytest.raises(PointFileError, match=r"not a regular file \(a named pipe \(FIFO\)\)"):
        read_points(fifo)


def test_folder_with_a_point_suffix_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "synthetic_folder.ply"
    folder.mkdir()
    with pytest.raises(PointFileError, match="is a folder, not a file"):
        read_points(folder)


def test_symlink_loop_and_broken_link_are_named(tmp_path: Path) -> None:
    loop = tmp_path / "synthetic_loop.ply"
    loop.symlink_to(loop.name)
    with pytest.raises(PointFileError, match="symbolic link loop"):
        read_points(loop)
    broken = tmp_path / "synthetic_broken.ply"
    broken.symlink_to(tmp_path / "gone.ply")
    with pytest.raises(PointFileError, match=r"broken symbolic link \(to .*gone\.ply\)"):
        read_points(broken)


@pytest.mark.parametrize("shape", [(10**12, 3), (5, 10**6), (10**7, 10**7)])
def test_npy_header_bounds_come_before_allocation(tmp_path: Path, shape) -> None:
    path = _npy_with_header(tmp_path / "synthetic_huge.npy", shape, body=b"\0" * 64)
    with pytest.raises(PointFileError, match="more than") as err:
        read_points(path)
    assert str(shape[0] if shape[0] > 5 else shape[1]) in str(err.value)


def test_npy_header_promising_more_than_the_file_holds(tmp_path: Path) -> None:
    path = _npy_with_header(tmp_path / "synthetic_short.npy", (1000, 3), body=b"\0" * 120)
    with pytest.raises(PointFileError, match=r"truncated: header promises 1000 x 3 values \(12000 bytes\), "
                                             r"file has 120"):
        read_points(path)


def test_npz_member_header_is_bounded(tmp_path: Path) -> None:
    import zipfile

    member = _npy_with_header(tmp_path / "xyz.npy", (10**11, 3), body=b"\0" * 48)
    path = tmp_path / "synthetic_huge.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.write(member, "xyz.npy")
    with pytest.raises(PointFileError, match="more than"):
        read_points(path)


@pytest.mark.parametrize("dtype, fragment", [(np.complex64, "complex numbers"), (np.bool_, "real numbers"),
                                             ("datetime64[s]", "real numbers"), ("<U3", "real numbers")])
def test_npy_of_non_real_dtype_is_refused_without_a_warning(tmp_path: Path, dtype, fragment: str) -> None:
    path = tmp_path / "synthetic_dtype.npy"
    np.save(path, np.zeros((20, 3), dtype=dtype))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's ComplexWarning must not be what stops it, nor escape
        with pytest.raises(PointFileError, match=fragment) as err:
            read_points(path)
    assert str(np.dtype(dtype)) in str(err.value)


def test_values_beyond_float32_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "synthetic_huge_values.xyz"
    path.write_text("0 0 0\n1e300 0 0\n1 1 1\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(PointFileError, match="beyond the float32 range"):
            read_points(path)


def test_loadtxt_warning_becomes_the_reason(tmp_path: Path, recwarn) -> None:
    path = tmp_path / "synthetic_comments_only.xyz"
    path.write_text("# x y z\n# nothing else\n")
    with pytest.raises(PointFileError, match="input contained no data"):
        read_points(path)
    assert not [w for w in recwarn if "loadtxt" in str(w.message)]


def test_pcd_header_claims_are_bounded(tmp_path: Path) -> None:
    path = tmp_path / "synthetic_huge.pcd"
    path.write_bytes(b"VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH 1000000000000\n"
                     b"HEIGHT 1\nPOINTS 1000000000000\nDATA binary\n" + b"\0" * 24)
    with pytest.raises(PointFileError, match="claims 1000000000000 points"):
        read_points(path)
    comp = tmp_path / "synthetic_lying_compressed.pcd"
    comp.write_bytes(b"VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH 2\nHEIGHT 1\n"
                     b"POINTS 2\nDATA binary_compressed\n" + np.uint32([4, 4_000_000_000]).tobytes() + b"\0" * 4)
    with pytest.raises(PointFileError, match="compressed PCD data does not match the header"):
        read_points(comp)


def test_binary_ply_header_claiming_more_than_the_file(tmp_path: Path) -> None:
    path = tmp_path / "synthetic_huge.ply"
    path.write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 1000000\nproperty float x\n"
                     b"property float y\nproperty float z\nend_header\n" + b"\0" * 120)
    with pytest.raises(PointFileError, match="needs at least 12000000 bytes"):
        read_points(path)
    huge = tmp_path / "synthetic_huger.ply"
    huge.write_bytes(path.read_bytes().replace(b"1000000", b"1000000000000"))
    with pytest.raises(PointFileError, match="claims 1000000000000 vertex elements"):
        read_points(huge)


def test_h5_with_no_clouds_or_no_stored_data(tmp_path: Path) -> None:
    import h5py

    empty = tmp_path / "synthetic_zero.h5"
    with h5py.File(empty, "w") as fh:
        fh.create_dataset("data", shape=(0, 1024, 3), dtype="f4")
    with pytest.raises(PointFileError, match=r"holds no clouds \('data' has shape \(0, 1024, 3\)\)"):
        list(iter_clouds(empty))
    hollow = tmp_path / "synthetic_hollow.h5"
    with h5py.File(hollow, "w") as fh:  # claims 40 GB, stores nothing but the fill value
        fh.create_dataset("data", shape=(10**6, 10**4, 3), dtype="f4", chunks=(1, 1024, 3))
    with pytest.raises(PointFileError, match="but stores only 0 bytes"):
        list(iter_clouds(hollow))
