"""Read any supported 3D file into :class:`PointCloud` objects.

Point formats are read as they are; meshes are turned into clouds by area-weighted surface
sampling (seeded), keeping vertex, face or texture colour where the file has it. Every failure is
a :class:`~vitlens_cli.errors.PointFileError` that names the file and the reason.
"""
from __future__ import annotations

import contextlib
import os
import re
import stat
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..errors import PointFileError, os_reason
from .cloud import PointCloud

POINT_SUFFIXES = (".ply", ".pcd", ".xyz", ".pts", ".txt", ".npy", ".npz", ".h5", ".hdf5")
MESH_SUFFIXES = (".off", ".obj", ".stl", ".glb", ".gltf")
SUPPORTED_SUFFIXES = POINT_SUFFIXES + MESH_SUFFIXES
DEFAULT_MESH_POINTS = 10_000
# Bounds checked against headers before anything is allocated: a header can claim 10^12 points.
MAX_POINTS = 50_000_000
MAX_COLUMNS = 64
_FLOAT32_MAX = float(np.finfo(np.float32).max)

_NPZ_XYZ_KEYS = ("xyz", "points", "pc", "data", "pos")
_NPZ_RGB_KEYS = ("rgb", "colors", "colours", "color")


def is_supported(path: str | Path) -> bool:
    return Path(path).suffix.lower() in SUPPORTED_SUFFIXES


def read_points(path: str | Path, mesh_points: int = DEFAULT_MESH_POINTS, seed: int = 0) -> PointCloud:
    """The single cloud in ``path``; an ``.h5`` file must then hold exactly one cloud."""
    clouds = list(iter_clouds(path, mesh_points=mesh_points, seed=seed))
    if len(clouds) != 1:
        raise PointFileError(path, f"holds {len(clouds)} clouds; use iter_clouds() to read them all")
    return clouds[0][1]


def iter_clouds(
    path: str | Path, mesh_points: int = DEFAULT_MESH_POINTS, seed: int = 0
) -> Iterator[tuple[str, PointCloud]]:
    """Yield ``(item_name, cloud)``; one item per file, or ``file.h5#i`` per cloud of an h5 stack."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise PointFileError(path, f"unsupported file type '{suffix or path.name}' "
                                   f"(supported: {' '.join(SUPPORTED_SUFFIXES)})")
    if check_regular_file(path).st_size == 0:
        raise PointFileError(path, "empty file")
    if suffix in (".h5", ".hdf5"):
        yield from _iter_h5(path)
        return
    with _quiet(path):
        cloud = _read_one(path, suffix, mesh_points, seed)
    yield str(path), _checked(path, cloud)


_NOT_REGULAR = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"),
                (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def check_regular_file(path: str | Path) -> os.stat_result:
    """``stat`` of ``path`` if it is a regular file; anything else (a FIFO would block a reader) is refused."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise PointFileError(path, os_reason(exc, path)) from None
    if stat.S_ISDIR(st.st_mode):
        raise PointFileError(path, "is a folder, not a file")
    kind = non_regular_kind(st.st_mode)
    if kind is not None:
        raise PointFileError(path, f"not a regular file ({kind})")
    return st


def non_regular_kind(mode: int) -> str | None:
    """``"a named pipe (FIFO)"`` etc. for a mode that is neither a regular file nor a folder."""
    return next((what for test, what in _NOT_REGULAR if test(mode)), None)


@contextlib.contextmanager
def _quiet(path: Path) -> Iterator[None]:
    """Turn a parser's warnings into the file's one error, so nothing but that reason reaches the user.

    Library deprecation notices say nothing about the file and are dropped.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
            warnings.simplefilter("ignore", category)
        try:
            yield
        except PointFileError:
            raise
        except MemoryError as exc:
            raise PointFileError(path, "too large to load into memory") from exc
        except OSError as exc:  # a library's own OSError (h5py: "file signature not found") carries no errno
            raise PointFileError(path, os_reason(exc, path) if exc.errno else _reason(exc)) from exc
        except Exception as exc:  # parsers raise many types; the user needs the file and the reason
            raise PointFileError(path, _reason(exc)) from exc


def _read_one(path: Path, suffix: str, mesh_points: int, seed: int) -> PointCloud:
    if suffix == ".npy":
        return _read_npy(path)
    if suffix == ".npz":
        return _read_npz(path)
    if suffix in (".xyz", ".pts", ".txt"):
        return _read_text(path)
    if suffix == ".pcd":
        return _read_pcd(path)
    if suffix == ".off":
        return _sample_mesh(_read_off(path), mesh_points, seed)
    return _read_trimesh(path, mesh_points, seed)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return f"cannot parse ({type(exc).__name__}: {first})" if first else f"cannot parse ({type(exc).__name__})"


def _checked(path: Path, cloud: PointCloud) -> PointCloud:
    if len(cloud) == 0:
        raise PointFileError(path, "contains no points")
    if not np.isfinite(cloud.xyz).all():
        raise PointFileError(path, "contains NaN or infinite coordinates")
    if cloud.rgb is not None and not np.isfinite(cloud.rgb).all():
        raise PointFileError(path, "contains NaN or infinite colours")
    return cloud


def _split_columns(path: Path, arr: np.ndarray) -> PointCloud:
    """Interpret ``(N, C)`` columns: xyz, then rgb or unit normals in columns 3-5."""
    arr = np.asarray(arr)
    _check_dtype(path, arr.dtype)
    if arr.ndim != 2 or arr.shape[1] < 3:
        raise PointFileError(path, f"expected an (N, 3+) array of points, got shape {arr.shape}")
    _check_count(path, arr.shape)
    arr = arr.astype(np.float64, copy=False)
    finite = arr[np.isfinite(arr)]
    if finite.size and float(np.abs(finite).max()) > _FLOAT32_MAX:
        raise PointFileError(path, "holds values beyond the float32 range (about 3.4e38)")
    xyz = arr[:, :3]
    if arr.shape[1] < 6:
        return PointCloud(xyz)
    extra = arr[:, 3:6]
    norms = np.linalg.norm(extra, axis=1)
    # ModelNet's normal_resampled rows are x,y,z,nx,ny,nz: unit-length triples are normals.
    if np.mean(np.abs(norms - 1.0) < 1e-2) > 0.99 and extra.min() < 0:
        rgb = _rgb_from(arr[:, 6:9]) if arr.shape[1] >= 9 else None
        return PointCloud(xyz, rgb=rgb, normals=extra)
    rgb = _rgb_from(extra)
    if rgb is None:
        raise PointFileError(path, "columns 4-6 are neither colours (0-1 or 0-255) nor unit normals")
    normals = arr[:, 6:9] if arr.shape[1] >= 9 else None
    return PointCloud(xyz, rgb=rgb, normals=normals)


def _check_dtype(path: Path, dtype: np.dtype) -> None:
    if dtype.kind == "c":
        raise PointFileError(path, f"holds complex numbers (dtype {dtype}); coordinates must be real")
    if dtype.kind not in "iuf":
        raise PointFileError(path, f"expected real numbers, got dtype {dtype}")


def _check_count(path: Path, shape: tuple[int, ...], points_axis: int = 0) -> None:
    if shape[points_axis] > MAX_POINTS:
        raise PointFileError(path, f"claims {shape[points_axis]} points, more than the {MAX_POINTS} vitlens reads")
    if len(shape) > points_axis + 1 and shape[-1] > MAX_COLUMNS:
        raise PointFileError(path, f"claims {shape[-1]} values per point, more than {MAX_COLUMNS}")


def _npy_header(path: Path, fh, available: int, points: bool = True) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of the array that starts at ``fh``, checked against the bytes that follow it.

    ``points``: the array must be an ``(N, 3+)`` point array (not so for the side arrays of an ``.npz``).
    """
    try:
        version = np.lib.format.read_magic(fh)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(fh)
    except (ValueError, SyntaxError, EOFError) as exc:
        raise PointFileError(path, f"malformed NumPy header ({_first_line(exc)})") from exc
    if dtype.hasobject:
        raise PointFileError(path, "holds pickled Python objects, which are not loaded for safety; "
                                   "save a plain (N, 3) or (N, 6) array")
    if points:
        _check_dtype(path, dtype)
    if points and (len(shape) != 2 or shape[1] < 3):
        raise PointFileError(path, f"expected an (N, 3+) array of points, got shape {shape}")
    if points:
        _check_count(path, shape)
    elif int(np.prod(shape, dtype=np.float64)) > MAX_POINTS * MAX_COLUMNS:
        raise PointFileError(path, f"claims an array of shape {shape}, more than vitlens reads")
    needed = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if needed > available - fh.tell():
        raise PointFileError(path, f"truncated: header promises {shape[0]} x {shape[1]} values "
                                   f"({needed} bytes), file has {max(available - fh.tell(), 0)}")
    return shape, dtype


def _rgb_from(values: np.ndarray) -> np.ndarray | None:
    if values.shape[1] != 3 or len(values) == 0:
        return None
    lo, hi = float(values.min()), float(values.max())
    if lo >= 0 and hi <= 1:
        return values
    if lo >= 0 and hi <= 255:
        return values / 255.0
    return None


def _read_npy(path: Path) -> PointCloud:
    with open(path, "rb") as fh:
        if fh.read(6) != b"\x93NUMPY":
            raise PointFileError(path, "not a .npy file (no NumPy header)")
        fh.seek(0)
        _npy_header(path, fh, os.fstat(fh.fileno()).st_size)
        fh.seek(0)
        arr = np.load(fh, allow_pickle=False)
    return _split_columns(path, arr)


def _read_npz(path: Path) -> PointCloud:
    with open(path, "rb") as fh:
        if fh.read(2) != b"PK":
            raise PointFileError(path, "not a .npz file (not a zip archive)")
    import zipfile

    with zipfile.ZipFile(path) as zf:  # check every member's header before numpy allocates it
        for info in zf.infolist():
            if info.filename.endswith(".npy"):
                with zf.open(info) as member:
                    _npy_header(path, member, info.file_size, points=False)
    with np.load(path, allow_pickle=False) as data:
        keys = list(data.keys())
        if not keys:
            raise PointFileError(path, "holds no arrays")
        xyz_key = next((k for k in _NPZ_XYZ_KEYS if k in keys), keys[0] if len(keys) == 1 else None)
        if xyz_key is None:
            raise PointFileError(path, f"no point array among keys {keys} (expected one of {_NPZ_XYZ_KEYS})")
        cloud = _split_columns(path, data[xyz_key])
        rgb_key = next((k for k in _NPZ_RGB_KEYS if k in keys), None)
        if rgb_key is not None:
            rgb = _rgb_from(np.asarray(data[rgb_key], dtype=np.float64))
            if rgb is None or len(rgb) != len(cloud):
                raise PointFileError(path, f"'{rgb_key}' is not an (N, 3) colour array matching the points")
            cloud = PointCloud(cloud.xyz, rgb=rgb, normals=cloud.normals)
    return cloud


def _read_text(path: Path) -> PointCloud:
    try:
        with open(path, encoding="utf-8", errors="strict") as fh:
            first = fh.readline()
    except UnicodeDecodeError as exc:
        raise PointFileError(path, "not a text file of numbers (binary content)") from exc
    delimiter = "," if "," in first else None
    arr = np.loadtxt(path, delimiter=delimiter, dtype=np.float64, ndmin=2)
    return _split_columns(path, arr)


_PCD_TYPES = {("F", 4): "f4", ("F", 8): "f8", ("U", 1): "u1", ("U", 2): "u2", ("U", 4): "u4",
              ("U", 8): "u8", ("I", 1): "i1", ("I", 2): "i2", ("I", 4): "i4", ("I", 8): "i8"}


def _read_pcd(path: Path) -> PointCloud:
    """PCD v0.5-0.7: ascii, binary and binary_compressed.

    The header is parsed and checked here (bounds before allocation, the body's size against the header), so a
    lying or truncated file gets its own reason. Bodies are decoded by whichever reader measured faster
    (``benchmarks/bench_pcd.py``): numpy's ``frombuffer`` for binary (≈5× open3d), open3d's C++ reader for
    binary_compressed (its LZF decoder ≈10× a Python one on a compressible cloud). ascii stays numpy although
    open3d parses it 1.2-2× faster: open3d 0.19 returns uninitialised memory for the rows of a truncated file and
    0 for a token that is not a number, without an error. Non-finite rows (the holes of organised scans) are dropped,
    as PCL and open3d do.
    """
    raw = path.read_bytes()
    header: dict[str, list[str]] = {}
    pos = 0
    while True:
        nl = raw.find(b"\n", pos)
        if nl < 0:
            raise PointFileError(path, "not a PCD file (no DATA line in the header)")
        line = raw[pos:nl].decode("ascii", errors="replace").strip()
        pos = nl + 1
        if not line or line.startswith("#"):
            continue
        key, *vals = line.split()
        header[key.upper()] = vals
        if key.upper() == "DATA":
            break
    try:
        fields = header["FIELDS"]
        sizes = [int(v) for v in header["SIZE"]]
        types = header["TYPE"]
        counts = [int(v) for v in header.get("COUNT", ["1"] * len(fields))]
        n = int(header["POINTS"][0]) if "POINTS" in header else \
            int(header["WIDTH"][0]) * int(header.get("HEIGHT", ["1"])[0])
        mode = header["DATA"][0].lower()
        dtypes = [_PCD_TYPES[(t.upper(), sz)] for t, sz in zip(types, sizes)]
    except (KeyError, IndexError, ValueError) as exc:
        raise PointFileError(path, f"malformed PCD header ({type(exc).__name__}: {exc})") from exc
    if not (len(fields) == len(sizes) == len(types) == len(counts)):
        raise PointFileError(path, "malformed PCD header (FIELDS/SIZE/TYPE/COUNT lengths differ)")
    if n < 0 or n > MAX_POINTS or len(fields) > MAX_COLUMNS or any(c < 1 or c > MAX_COLUMNS for c in counts):
        raise PointFileError(path, f"PCD header claims {n} points of {sum(counts)} values; vitlens reads at most "
                                   f"{MAX_POINTS} points of {MAX_COLUMNS} values")
    names = [f"{f}_{i}" if c > 1 else f for f, c in zip(fields, counts) for i in range(c)]
    if not {"x", "y", "z"} <= set(names):
        raise PointFileError(path, f"PCD has no x y z fields (fields: {' '.join(fields)})")
    body = raw[pos:]
    rec = np.dtype([(nm, dt) for nm, dt in zip(names, (d for d, c in zip(dtypes, counts) for _ in range(c)))])
    if mode == "binary":
        if len(body) < n * rec.itemsize:
            raise PointFileError(path, f"truncated: header promises {n} points of {rec.itemsize} bytes, "
                                       f"file has {len(body)} data bytes")
        cloud = _pcd_columns(np.frombuffer(body, dtype=rec, count=n), names)
    elif mode == "binary_compressed":
        if len(body) < 8:
            raise PointFileError(path, "truncated compressed PCD data")
        csize, usize = (int(v) for v in np.frombuffer(body[:8], dtype="<u4"))
        if usize != n * rec.itemsize or csize > len(body) - 8:
            raise PointFileError(path, "compressed PCD data does not match the header")
        cloud = _open3d_pcd(path, n, "its compressed data does not decode to the header's points (corrupt LZF)")
    elif mode == "ascii":
        cloud = _pcd_columns(_ascii_columns(path, body, n, rec), names)
    else:
        raise PointFileError(path, f"unsupported PCD DATA type '{mode}'")
    keep = np.isfinite(cloud.xyz).all(axis=1)
    if keep.all():
        return cloud
    return PointCloud(cloud.xyz[keep], rgb=None if cloud.rgb is None else cloud.rgb[keep],
                      normals=None if cloud.normals is None else cloud.normals[keep])


def _pcd_columns(arr: np.ndarray, names: list[str]) -> PointCloud:
    xyz = np.stack([arr["x"], arr["y"], arr["z"]], axis=1).astype(np.float64)
    rgb = None
    packed = next((arr[key] for key in ("rgb", "rgba") if key in names), None)
    if packed is not None:  # PCL packs colour into one 4-byte field, stored as a float or an integer
        u = np.ascontiguousarray(packed).view(np.uint32) if packed.dtype.itemsize == 4 else packed.astype(np.uint32)
        rgb = np.stack([(u >> 16) & 255, (u >> 8) & 255, u & 255], axis=1).astype(np.float64) / 255.0
    normals = None
    if {"normal_x", "normal_y", "normal_z"} <= set(names):
        normals = np.stack([arr["normal_x"], arr["normal_y"], arr["normal_z"]], axis=1).astype(np.float64)
    return PointCloud(xyz, rgb=rgb, normals=normals)


def _ascii_columns(path: Path, body: bytes, n: int, rec: np.dtype) -> dict[str, np.ndarray]:
    try:
        text = body.decode("ascii").split()
    except UnicodeDecodeError:
        raise PointFileError(path, "its ascii data is not ASCII text") from None
    width = len(rec.names)
    if len(text) < n * width:
        raise PointFileError(path, f"truncated: header promises {n} points, file has {len(text) // width}")
    table = np.array(text[:n * width], dtype=np.float64).reshape(n, width)
    # Each field takes its declared type, so a packed colour written as a float keeps its bit pattern.
    return {name: table[:, i].astype(rec[name]) for i, name in enumerate(rec.names)}


def _open3d_pcd(path: Path, n: int, failure: str) -> PointCloud:
    """open3d's reader, every row kept (we drop non-finite ones); ``failure`` is the reason when it reads short."""
    import open3d as o3d

    # open3d reports a failed read as a warning on stdout and returns an empty cloud.
    with o3d.utility.VerbosityContextManager(o3d.utility.VerbosityLevel.Error):
        pcd = o3d.io.read_point_cloud(str(path), format="pcd", remove_nan_points=False,
                                      remove_infinite_points=False)
    xyz = np.asarray(pcd.points)
    if len(xyz) != n:
        raise PointFileError(path, failure)
    rgb = np.asarray(pcd.colors) if pcd.has_colors() else None
    normals = np.asarray(pcd.normals) if pcd.has_normals() else None
    return PointCloud(xyz, rgb=rgb, normals=normals)


_OFF_HEADER = re.compile(rb"^\s*(C?N?OFF)\s*(.*)$")


def _read_off(path: Path):
    """OFF parser that accepts the fused ``OFF1234 5678 0`` header of some ModelNet files."""
    import trimesh

    lines = [ln.split(b"#", 1)[0].strip() for ln in path.read_bytes().splitlines()]
    lines = [ln for ln in lines if ln]
    if not lines:
        raise PointFileError(path, "empty file")
    match = _OFF_HEADER.match(lines[0])
    if match is None:
        raise PointFileError(path, "not an OFF file (first line does not start with OFF)")
    rest = match.group(2).split()
    body = lines[1:]
    if not rest:
        if not body:
            raise PointFileError(path, "OFF header has no counts")
        rest, body = body[0].split(), body[1:]
    try:
        n_vert, n_face = int(rest[0]), int(rest[1])
    except (IndexError, ValueError) as exc:
        raise PointFileError(path, "OFF counts line is malformed") from exc
    if len(body) < n_vert + n_face:
        raise PointFileError(path, f"truncated: header promises {n_vert} vertices and {n_face} faces, "
                                   f"file has {len(body)} data lines")
    vtok = b" ".join(body[:n_vert]).split()
    if len(vtok) == 3 * n_vert:  # plain x y z rows: parse them in one go
        verts = np.array(vtok, dtype=np.float64).reshape(n_vert, 3)
    else:  # rows with colours or other extras
        verts = np.array([ln.split()[:3] for ln in body[:n_vert]], dtype=np.float64)
    if verts.shape != (n_vert, 3):
        raise PointFileError(path, "a vertex line has fewer than 3 coordinates")
    face_lines = body[n_vert:n_vert + n_face]
    ftok = np.array(b" ".join(face_lines).split(), dtype=np.int64) if face_lines else np.zeros(0, np.int64)
    if ftok.size == 4 * n_face and (ftok[::4] == 3).all():  # all triangles: the common case
        face_arr = ftok.reshape(n_face, 4)[:, 1:]
    else:
        faces: list[list[int]] = []
        for ln in face_lines:
            vals = [int(v) for v in ln.split()]
            k, ids = vals[0], vals[1:1 + vals[0]]
            if len(ids) != k:
                raise PointFileError(path, "a face line lists fewer vertices than it declares")
            faces.extend([ids[0], ids[i], ids[i + 1]] for i in range(1, k - 1))  # fan-triangulate polygons
        face_arr = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    if face_arr.size and (face_arr.min() < 0 or face_arr.max() >= n_vert):
        raise PointFileError(path, "a face refers to a vertex that does not exist")
    return trimesh.Trimesh(vertices=verts, faces=face_arr, process=False)


def _read_trimesh(path: Path, mesh_points: int, seed: int) -> PointCloud:
    import trimesh

    suffix = path.suffix.lower()
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if suffix == ".ply" and not magic.startswith(b"ply"):
        raise PointFileError(path, "not a PLY file (no 'ply' signature)")
    if suffix == ".glb" and magic != b"glTF":
        raise PointFileError(path, "not a GLB file (no 'glTF' signature)")
    if suffix == ".ply":
        _check_ply_header(path)
    loaded = trimesh.load(str(path), process=False)
    if path.suffix.lower() == ".ply":
        _check_ply_vertex_count(path, loaded)
    if isinstance(loaded, trimesh.Scene):
        if not loaded.geometry:
            raise PointFileError(path, "scene holds no geometry")
        meshes = [g for g in loaded.dump() if isinstance(g, trimesh.Trimesh)]
        clouds = [g for g in loaded.dump() if isinstance(g, trimesh.PointCloud)]
        if meshes:
            return _sample_mesh(meshes, mesh_points, seed)
        if clouds:
            loaded = trimesh.util.concatenate(clouds) if len(clouds) > 1 else clouds[0]
    if isinstance(loaded, trimesh.PointCloud):
        colors = getattr(loaded, "colors", None)
        rgb = np.asarray(colors, dtype=np.float64)[:, :3] / 255.0 if colors is not None and len(colors) else None
        return PointCloud(np.asarray(loaded.vertices), rgb=rgb)
    if isinstance(loaded, trimesh.Trimesh):
        if len(loaded.faces) == 0:
            rgb = _vertex_rgb(loaded)
            return PointCloud(np.asarray(loaded.vertices), rgb=rgb)
        return _sample_mesh(loaded, mesh_points, seed)
    raise PointFileError(path, f"unsupported content ({type(loaded).__name__})")


_PLY_SIZES = {"char": 1, "uchar": 1, "int8": 1, "uint8": 1, "short": 2, "ushort": 2, "int16": 2, "uint16": 2,
              "int": 4, "uint": 4, "int32": 4, "uint32": 4, "float": 4, "float32": 4, "double": 8, "float64": 8}


def _check_ply_header(path: Path) -> None:
    """Element counts of a PLY header, bounded and (binary files) checked against the file size."""
    head = path.read_bytes()[:65536]
    end = head.find(b"end_header")
    if not head.startswith(b"ply") or end < 0:
        return  # trimesh says what is wrong with it
    binary = re.search(rb"^format\s+binary", head[:end], re.MULTILINE) is not None
    minimum = 0
    for match in re.finditer(rb"^element\s+(\S+)\s+(\d+)\s*$((?:\s*^property[^\n]*$)*)", head[:end], re.MULTILINE):
        name, count = match.group(1).decode("ascii", "replace"), int(match.group(2))
        if count > MAX_POINTS:
            raise PointFileError(path, f"PLY header claims {count} {name} elements, more than the {MAX_POINTS} "
                                       "vitlens reads")
        row = 0
        for prop in re.findall(rb"^\s*property\s+([^\n]*)$", match.group(3), re.MULTILINE):
            words = prop.split()
            if words and words[0] == b"list" and len(words) >= 2:
                row += _PLY_SIZES.get(words[1].decode("ascii", "replace"), 1)  # at least the list's length
            elif words:
                row += _PLY_SIZES.get(words[0].decode("ascii", "replace"), 1)
        minimum += count * row
    if binary and minimum > path.stat().st_size:
        raise PointFileError(path, f"truncated: the PLY header needs at least {minimum} bytes of data, "
                                   f"file has {path.stat().st_size}")


def _check_ply_vertex_count(path: Path, loaded) -> None:
    """trimesh reads a truncated ASCII PLY without complaint; compare with the header's count."""
    import trimesh

    head = path.read_bytes()[:65536]
    end = head.find(b"end_header")
    match = re.search(rb"^element\s+vertex\s+(\d+)", head[:end], re.MULTILINE) if end >= 0 else None
    if match is None:
        return
    promised = int(match.group(1))
    parts = loaded.dump() if isinstance(loaded, trimesh.Scene) else [loaded]
    got = sum(len(getattr(g, "vertices", ())) for g in parts)
    if got < promised:
        raise PointFileError(path, f"truncated: header promises {promised} vertices, file has {got}")


def _vertex_rgb(mesh) -> np.ndarray | None:
    visual = getattr(mesh, "visual", None)
    if visual is None or getattr(visual, "kind", None) != "vertex":
        return None
    return np.asarray(visual.vertex_colors, dtype=np.float64)[:, :3] / 255.0


def _sample_mesh(meshes, count: int, seed: int) -> PointCloud:
    """Area-weighted surface samples; colour from texture, vertex or face colours when present."""
    import trimesh

    if not isinstance(meshes, (list, tuple)):
        meshes = [meshes]
    meshes = [m for m in meshes if len(m.faces)]
    if not meshes:
        raise ValueError("mesh has no faces to sample")
    mesh = meshes[0] if len(meshes) == 1 else trimesh.util.concatenate(meshes)
    if mesh.area <= 0:
        raise ValueError("mesh has zero surface area")
    kind = getattr(mesh.visual, "kind", None)
    if kind == "texture":
        xyz, _, colors = trimesh.sample.sample_surface(mesh, count, sample_color=True, seed=seed)
        rgb = None if colors is None else np.asarray(colors, dtype=np.float64)[:, :3] / 255.0
        return PointCloud(xyz, rgb=rgb)
    xyz, face_idx = trimesh.sample.sample_surface(mesh, count, seed=seed)
    rgb = None
    if kind == "face":
        rgb = np.asarray(mesh.visual.face_colors, dtype=np.float64)[face_idx, :3] / 255.0
    elif kind == "vertex":
        vc = np.asarray(mesh.visual.vertex_colors, dtype=np.float64)[:, :3] / 255.0
        tri = mesh.faces[face_idx]
        bary = trimesh.triangles.points_to_barycentric(mesh.triangles[face_idx], xyz)
        rgb = np.clip((vc[tri] * bary[:, :, None]).sum(axis=1), 0.0, 1.0)
    return PointCloud(xyz, rgb=rgb)


def _iter_h5(path: Path) -> Iterator[tuple[str, PointCloud]]:
    import h5py

    with _quiet(path):
        fh = h5py.File(path, "r")
    with fh:
        with _quiet(path):
            data = _h5_data(path, fh, h5py)
        for i in range(data.shape[0]):
            with _quiet(path):
                cloud = _split_columns(path, data[i])
            yield f"{path}#{i}", _checked(path, cloud)


def _h5_data(path: Path, fh, h5py):
    """The ``data`` stack of an h5 file, its shape bounded before any row is read."""
    if "data" not in fh:
        raise PointFileError(path, f"no 'data' dataset (found: {', '.join(fh.keys()) or 'nothing'})")
    data = fh["data"]
    if not isinstance(data, h5py.Dataset):
        raise PointFileError(path, "'data' is a group, not a dataset")
    if data.ndim != 3 or data.shape[-1] < 3:
        raise PointFileError(path, f"'data' must be (N, points, 3+), got {data.shape}")
    _check_dtype(path, data.dtype)
    _check_count(path, data.shape, points_axis=1)
    if data.shape[0] == 0 or data.shape[1] == 0:
        raise PointFileError(path, f"holds no clouds ('data' has shape {data.shape})")
    stored = data.id.get_storage_size()
    # A dataset can claim any shape and store nothing (fill values): bound what reading it would allocate.
    if data.nbytes > max(stored, 1) * 1000 or (data.compression is None and stored < data.nbytes):
        raise PointFileError(path, f"'data' claims shape {data.shape} but stores only {stored} bytes")
    return data
