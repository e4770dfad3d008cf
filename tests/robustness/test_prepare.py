"""`vitlens prepare` as a hostile and clumsy user runs it: every bad input is one clean line, nothing sticks.

Every fatal case starts from a data root that already holds a complete ModelNet40 cache and asserts: exit 2,
no traceback, one ``error:`` line naming the input (and the archive entry at fault), no temporary file, and
the data root exactly as it was (the previous cache intact, no download or extraction left behind). The
batch case (one unreadable shape) is exit 1 with one ``skipped:`` line and the good shapes converted.
"""
from __future__ import annotations

import gzip
import io
import os
import pickle
import shutil
import socket
import stat
import tarfile
import tempfile
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from tests.data.conftest import ServerState, http_server  # noqa: F401  (the local HTTP server fixture)
from tests.robustness.harness import Snapshot, as_nobody, assert_clean_failure, assert_no_temp_files, invoke
from vitlens_cli.data.cache import CachedPoints
from vitlens_cli.data.prepare.pipeline import RELEASES, Release, prepare_dataset

IDS = ["airplane_0001", "chair_0001", "chair_0002"]
ZIP_NAME = "modelnet40_normal_resampled.zip"


def _tree(parent: Path, ids: list[str] = IDS, *, test_list: list[str] | None = None,
          shape_names: bool = True) -> Path:
    """A synthetic modelnet40_normal_resampled release (real class names, random points) under ``parent``."""
    root = parent / "modelnet40_normal_resampled"
    root.mkdir(parents=True)
    rng = np.random.default_rng(len(ids))
    for shape_id in ids:
        cls = shape_id.rsplit("_", 1)[0]
        (root / cls).mkdir(exist_ok=True)
        normals = rng.normal(size=(300, 3))
        normals /= np.linalg.norm(normals, axis=1, keepdims=True)
        np.savetxt(root / cls / f"{shape_id}.txt", np.hstack([rng.normal(size=(300, 3)), normals]), delimiter=",",
                   fmt="%.6f")
    if shape_names:
        (root / "modelnet40_shape_names.txt").write_text("\n".join(sorted({i.rsplit("_", 1)[0] for i in ids})))
    (root / "modelnet40_test.txt").write_text("\n".join(ids if test_list is None else test_list) + "\n")
    return parent


def _zip(path: Path, entries: dict[str, bytes] | Path, compression: int = zipfile.ZIP_STORED) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names are a case here
        with zipfile.ZipFile(path, "w", compression) as zf:
            if isinstance(entries, Path):
                for f in sorted(entries.rglob("*")):
                    zf.write(f, f.relative_to(entries).as_posix())
            else:
                for name, data in entries.items():
                    zf.writestr(name, data)
    return path


def _zip_entries(path: Path, entries: list[tuple[str | zipfile.ZipInfo, bytes]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with zipfile.ZipFile(path, "w") as zf:
            for name, data in entries:
                zf.writestr(name, data)
    return path


def _patch_zip(path: Path, local_offset: int, central_offset: int, value: int) -> Path:
    data = bytearray(path.read_bytes())
    for signature, offset in ((b"PK\x03\x04", local_offset), (b"PK\x01\x02", central_offset)):
        at = data.find(signature)
        while at >= 0:
            data[at + offset:at + offset + 2] = value.to_bytes(2, "little")
            at = data.find(signature, at + 4)
    path.write_bytes(bytes(data))
    return path


def _tar(path: Path, files: dict[str, bytes], extra: tuple[tarfile.TarInfo, ...] = ()) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz" if path.name.endswith(".gz") else "w") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for info in extra:
            tf.addfile(info)
    return path


def _tarinfo(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info


def _h5(path: Path, **datasets: np.ndarray) -> Path:
    import h5py

    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as fh:
        for key, value in datasets.items():
            fh[key] = value
    return path


def _socket_file(path: Path) -> Path:
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    sock.close()  # the socket file stays; nothing listens
    return path


def _loop(path: Path) -> Path:
    os.symlink(path.with_name(path.name + "-b"), path)
    os.symlink(path, path.with_name(path.name + "-b"))
    return path


def _cut(path: Path, keep: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def _release_zip(path: Path, **tree_kw) -> Path:
    src = Path(tempfile.mkdtemp(dir=path.parent if path.parent.exists() else None))
    try:
        return _zip(path, _tree(src, **tree_kw), zipfile.ZIP_DEFLATED)
    finally:
        shutil.rmtree(src)


@dataclass
class Spec:
    args: list[str]
    names: list[str]
    root: Path | None = None  # another --root than the prepared one
    env: dict[str, str] = field(default_factory=dict)


def _from(d: Path, name: str, path: Path, fragment: str, *extra: str) -> Spec:
    return Spec([name, "--from", str(path), *extra], [str(path), fragment])


def _sonn_release(d: Path, **datasets: np.ndarray) -> Path:
    _h5(d / "h5_files" / "main_split" / "test_objectdataset_augmentedrot_scale75.h5", **datasets)
    return d / "h5_files"


def _pickle_payload(d: Path) -> Path:
    marker = d / "PWNED"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    meta = d / "release" / "meta_data" / "scanobjectnn"
    meta.mkdir(parents=True)
    with open(meta / "xyz_label.npy", "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "|O", "fortran_order": False, "shape": ()})
        pickle.dump(Payload(), fh, protocol=2)
    return meta / "xyz_label.npy"


# Each maker builds its inputs under ``d`` and returns the command (without --root) and what its line names.
FATAL: dict[str, Callable[[Path], Spec]] = {
    # what --from is
    "from-missing": lambda d: _from(d, "modelnet40", d / "nope.zip", "no such file"),
    "from-fifo": lambda d: (os.mkfifo(d / "release.zip"), _from(d, "modelnet40", d / "release.zip",
                                                                  "named pipe"))[1],
    "from-socket": lambda d: _from(d, "modelnet40", _socket_file(d / "s.zip"), "socket"),
    "from-char-device": lambda d: _from(d, "modelnet40", Path("/dev/null"), "character device"),
    "from-symlink-loop": lambda d: _from(d, "modelnet40", _loop(d / "loop.zip"), "symbolic link loop"),
    "from-broken-symlink": lambda d: (os.symlink(d / "gone", d / "link.zip"),
                                      _from(d, "modelnet40", d / "link.zip", "broken symbolic link"))[1],
    "from-text-file": lambda d: ((d / "notes.txt").write_text("hello\n"),
                                 _from(d, "modelnet40", d / "notes.txt", "not a supported archive"))[1],
    # names and options
    "unknown-benchmark": lambda d: Spec(["modelnet41", "--from", str(d)], ["modelnet41", "unknown benchmark"]),
    "bad-variant": lambda d: Spec(["scanobjectnn", "--variant", "obj_everything", "--from", str(d)],
                                  ["obj_everything", "pb_t50_rs"]),
    "variant-without-variants": lambda d: Spec(["modelnet40", "--variant", "test", "--from", str(d)],
                                               ["modelnet40 has no variants"]),
    "fetch-only-with-variant": lambda d: Spec(["openshape-meta", "--variant", "x", "--from", str(d)],
                                              ["openshape-meta has no variants"]),
    "sign-up-release-without-from": lambda d: Spec(["scanobjectnn"], ["--from", "hkust-vgd"]),
    "root-is-a-file": lambda d: (
        (d / "rootfile").write_text("x"),
        Spec(["modelnet40", "--from", str(_tree(d / "rel"))], [str(d / "rootfile"), "data folder"],
             root=d / "rootfile"))[1],
    "root-under-a-file": lambda d: (
        (d / "rootfile").write_text("x"),
        Spec(["modelnet40", "--from", str(_tree(d / "rel"))], [str(d / "rootfile" / "data")],
             root=d / "rootfile" / "data"))[1],
    # files that are not the archive
    "empty-file": lambda d: (d.joinpath(ZIP_NAME).write_bytes(b""),
                             _from(d, "modelnet40", d / ZIP_NAME, "empty file"))[1],
    "html-login-page": lambda d: (d.joinpath("h5_files.zip").write_bytes(
        b"<!DOCTYPE html><html><head><title>Terms of use</title></head><body>sign</body></html>"),
        _from(d, "scanobjectnn", d / "h5_files.zip", "HTML page"))[1],
    "gz-that-is-not-gzip": lambda d: (d.joinpath("release.tar.gz").write_bytes(b"plain text, not gzip\n" * 30),
                                      _from(d, "modelnet40", d / "release.tar.gz", "not a supported archive"))[1],
    "gzip-that-is-not-a-tar": lambda d: (d.joinpath("release.tar.gz").write_bytes(gzip.compress(b"text " * 400)),
                                         _from(d, "modelnet40", d / "release.tar.gz", "corrupt"))[1],
    "truncated-zip": lambda d: _from(d, "modelnet40", _cut(_release_zip(d / ZIP_NAME)), "corrupt"),
    "truncated-tar-gz": lambda d: _from(d, "modelnet40", _cut(_tar(d / "r.tar.gz", {"a.txt": os.urandom(9000)})),
                                        "truncated"),
    "empty-zip": lambda d: _from(d, "modelnet40", _zip(d / ZIP_NAME, {}), "no files"),
    "only-folders-tar": lambda d: _from(d, "modelnet40", _tar(d / "r.tar", {}, (_tarinfo("a/", tarfile.DIRTYPE),)),
                                        "no files"),
    # unsafe or broken entries: the line names the archive and the entry
    "zip-dotdot": lambda d: _from(d, "modelnet40", _zip(d / ZIP_NAME, {"ok.txt": b"x", "../evil.txt": b"e"}),
                                  "'../evil.txt'"),
    "zip-absolute": lambda d: _from(d, "modelnet40", _zip(d / ZIP_NAME, {"/etc/evil": b"e"}), "'/etc/evil'"),
    "tar-symlink": lambda d: _from(d, "modelnet40", _tar(d / "r.tar", {"a": b"x"}, (
        _tarinfo("link", tarfile.SYMTYPE, "/etc/passwd"),)), "'link'"),
    "tar-hardlink": lambda d: _from(d, "modelnet40", _tar(d / "r.tar", {"a": b"x"}, (
        _tarinfo("hard", tarfile.LNKTYPE, "a"),)), "'hard'"),
    "tar-device": lambda d: _from(d, "modelnet40", _tar(d / "r.tar", {"a": b"x"}, (
        _tarinfo("dev", tarfile.CHRTYPE),)), "'dev'"),
    "zip-encrypted": lambda d: _from(d, "modelnet40", _patch_zip(_zip(d / ZIP_NAME, {"a.txt": b"x"}), 6, 8, 1),
                                     "'a.txt' is encrypted"),
    "zip-deflate64": lambda d: _from(d, "modelnet40", _patch_zip(
        _zip(d / ZIP_NAME, {"a.txt": b"x" * 500}, zipfile.ZIP_DEFLATED), 8, 10, 9), "deflate64"),
    "zip-duplicate-entry": lambda d: _from(d, "modelnet40", _zip_entries(d / ZIP_NAME, [("a.txt", b"1"),
                                                                                       ("a.txt", b"2")]),
                                           "'a.txt': duplicate"),
    "zip-file-folder-clash": lambda d: _from(d, "modelnet40", _zip(d / ZIP_NAME, {"m": b"1", "m/x.txt": b"2"}),
                                             "'m' is a file"),
    "zip-300-character-name": lambda d: _from(d, "modelnet40", _zip(d / ZIP_NAME, {"n" * 300: b"1"}),
                                              "255 bytes"),
    "zip-bomb": lambda d: _from(d, "modelnet40", _zip(d / ZIP_NAME, {"bomb.bin": bytes(100 << 20)},
                                                      zipfile.ZIP_DEFLATED), "'bomb.bin'"),
    # an archive that extracts, but is not the release
    "wrong-release-for-benchmark": lambda d: _from(d, "modelnet40", _zip(d / "h5_files.zip", {
        "h5_files/main_split/test_objectdataset.h5": b"h5"}), "neither a modelnet40_normal_resampled tree"),
    "missing-test-list": lambda d: _from(d, "modelnet40", _zip(d / ZIP_NAME, {
        "modelnet40_normal_resampled/modelnet40_shape_names.txt": b"chair\n"}), "modelnet40_test.txt"),
    "test-shape-missing": lambda d: _from(d, "modelnet40", _tree(d / "rel", test_list=IDS + ["chair_0099"]),
                                          "chair_0099.txt"),
    "unknown-class": lambda d: _from(d, "modelnet40", _tree(d / "rel", ["spaceship_0001"]), "spaceship"),
    "sonn-folder-without-split": lambda d: _from(d, "scanobjectnn", (d / "h5_files").mkdir() or d / "h5_files",
                                                 "main_split/test_objectdataset_augmentedrot_scale75.h5"),
    "sonn-h5-not-h5": lambda d: (_sonn_release(d, data=np.zeros((2, 8, 3), np.float32), label=np.zeros(2)),
                                 (d / "h5_files/main_split/test_objectdataset_augmentedrot_scale75.h5").write_bytes(
                                     b"not hdf5" * 20),
                                 _from(d, "scanobjectnn", d / "h5_files", "not a readable h5 file"))[2],
    "sonn-h5-without-labels": lambda d: _from(d, "scanobjectnn", _sonn_release(d, data=np.zeros((2, 8, 3), "f4")),
                                              "expected 'data' and 'label'"),
    "sonn-labels-out-of-range": lambda d: _from(d, "scanobjectnn", _sonn_release(
        d, data=np.ones((2, 8, 3), "f4"), label=np.array([0, 15])), "labels outside 0..14"),
    "shapenet-unknown-synset": lambda d: (
        (d / "sn" / "shapenet_pc").mkdir(parents=True), (d / "sn" / "test.txt").write_text("99999999-x.npy\n"),
        _from(d, "shapenet55", d / "sn", "99999999"))[2],
    "openshape-pickle-payload": lambda d: _from(d, "scanobjectnn-openshape", (_pickle_payload(d), d / "release")[1],
                                                "refusing to load 'posix.system'"),
}


@pytest.fixture(scope="module")
def previous_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root holding a complete ModelNet40 cache (the state every case must leave as it found it)."""
    base = tmp_path_factory.mktemp("previous")
    prepare_dataset("modelnet40", base / "data", from_path=_tree(base / "release"))
    shutil.rmtree(base / "release")
    return base / "data"


@pytest.fixture
def root(previous_root: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "data"
    shutil.copytree(previous_root, dest, symlinks=True)
    return dest


def _assert_root_untouched(root: Path, before: Snapshot) -> None:
    before.assert_unchanged()
    assert len(CachedPoints(root / "modelnet40")) == len(IDS)  # still complete and readable
    assert not list(root.rglob("*.extracting")) and not list(root.rglob("*.partial"))


@pytest.mark.parametrize("case", sorted(FATAL))
def test_fatal_input_is_one_line_and_touches_nothing(case: str, root: Path, tmp_path: Path) -> None:
    d = tmp_path / "in"
    d.mkdir()
    spec = FATAL[case](d)
    before = Snapshot(root)
    outcome = invoke(["prepare", *spec.args, "--root", spec.root or root], timeout=60)
    assert_clean_failure(outcome, exit_code=2, names=spec.names)
    assert_no_temp_files(tmp_path)
    _assert_root_untouched(root, before)
    assert not (d / "PWNED").exists()


# --- downloads: the server misbehaves; nothing it sent stays in the download cache ------------------------

def _serve(monkeypatch: pytest.MonkeyPatch, base: str, state: ServerState, body: bytes, **release) -> None:
    state.files["/" + ZIP_NAME] = body
    monkeypatch.setitem(RELEASES, "modelnet40", Release(ZIP_NAME, f"{base}/{ZIP_NAME}", where="a test server",
                                                        **release))


DOWNLOAD: dict[str, tuple[Callable[[ServerState], None], str]] = {
    "html-login-page": (lambda s: (s.files.update({"/" + ZIP_NAME: b"<html><body>log in</body></html>"}),
                                   s.content_types.update({"/" + ZIP_NAME: "text/html"})), "HTML page"),
    "html-page-sent-as-binary": (lambda s: s.files.update({"/" + ZIP_NAME: b"<!doctype html><p>login</p>"}),
                                 "HTML page"),
    "cut-short-without-length": (lambda s: (s.no_length.add("/" + ZIP_NAME), setattr(s, "cut_first", 1)),
                                 "the download was deleted"),
    "not-found": (lambda s: s.files.clear(), "HTTP 404"),
    "checksum-mismatch": (lambda s: None, "SHA-256 mismatch"),
}


@pytest.mark.parametrize("case", sorted(DOWNLOAD))
def test_bad_download_is_one_line_and_not_kept(case: str, root: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch, http_server) -> None:  # noqa: F811
    base, state = http_server
    (tmp_path / "served").mkdir()
    good = _release_zip(tmp_path / "served" / ZIP_NAME)
    _serve(monkeypatch, base, state, good.read_bytes(), sha256="0" * 64 if case == "checksum-mismatch" else None)
    shutil.rmtree(root / "modelnet40")  # nothing prepared yet: prepare must fetch
    before = Snapshot(root)
    breaks, fragment = DOWNLOAD[case]
    breaks(state)
    outcome = invoke(["prepare", "modelnet40", "--root", root], timeout=60)
    assert_clean_failure(outcome, exit_code=2, names=[f"{base}/{ZIP_NAME}" if case != "cut-short-without-length"
                                                      else str(root / "_downloads" / ZIP_NAME), fragment])
    before.assert_unchanged()
    assert not list(root.rglob("*.part")) and not (root / "_downloads" / ZIP_NAME).exists()
    assert_no_temp_files(tmp_path)


# --- batch: one bad shape is skipped, the rest converted ----------------------------------------------------

def test_test_shape_that_is_a_fifo_is_skipped_not_waited_on(root: Path, tmp_path: Path) -> None:
    release = _tree(tmp_path / "rel")
    shape = release / "modelnet40_normal_resampled" / "chair" / "chair_0001.txt"
    shape.unlink()
    os.mkfifo(shape)
    outcome = invoke(["prepare", "modelnet40", "--from", release, "--root", root], timeout=60)
    assert_clean_failure(outcome, exit_code=1, names=["chair/chair_0001.txt", "named pipe"], prefix="skipped:")
    assert CachedPoints(root / "modelnet40").names == ["airplane/airplane_0001.txt", "chair/chair_0002.txt"]
    assert_no_temp_files(tmp_path)


def test_unreadable_shape_is_skipped_and_the_rest_converted(root: Path, tmp_path: Path) -> None:
    release = _tree(tmp_path / "rel")
    bad = release / "modelnet40_normal_resampled" / "chair" / "chair_0002.txt"
    bad.write_text("1,2,three\n")
    outcome = invoke(["prepare", "modelnet40", "--from", release, "--root", root], timeout=60)
    line = assert_clean_failure(outcome, exit_code=1, names=["chair_0002.txt"], prefix="skipped:")
    assert "three" in line or "could not" in line or "float" in line
    ds = CachedPoints(root / "modelnet40")
    assert ds.names == ["airplane/airplane_0001.txt", "chair/chair_0001.txt"]  # the new release, good items
    assert_no_temp_files(tmp_path)


def test_unreadable_release_folder_is_skipped(tmp_path: Path) -> None:
    shared = Path(tempfile.mkdtemp(prefix="vitlens-perm-"))
    try:
        shared.chmod(0o777)
        release = _tree(shared / "rel")
        hidden = release / "modelnet40_normal_resampled"
        for p in [hidden, *hidden.rglob("*")]:
            p.chmod(0o777 if p.is_dir() else 0o666)
        (hidden / "airplane").chmod(0o000)  # a sub-folder the user cannot read
        (shared / "data").mkdir()
        (shared / "data").chmod(0o777)
        with as_nobody():
            outcome = invoke(["prepare", "modelnet40", "--from", release, "--root", shared / "data"], timeout=60)
        assert_clean_failure(outcome, exit_code=1, names=["airplane/airplane_0001.txt", "permission denied"],
                             prefix="skipped:")
        assert CachedPoints(shared / "data" / "modelnet40").names == ["chair/chair_0001.txt", "chair/chair_0002.txt"]
    finally:
        for folder, dirs, _ in os.walk(shared):
            for name in dirs:
                os.chmod(os.path.join(folder, name), stat.S_IRWXU)
        shutil.rmtree(shared, ignore_errors=True)


def test_a_corrected_release_after_a_bad_one_just_works(root: Path, tmp_path: Path) -> None:
    """The re-run the user makes after fixing the archive never trips over what the bad run left."""
    archive = tmp_path / "in" / ZIP_NAME
    _zip(archive, {"modelnet40_normal_resampled/modelnet40_shape_names.txt": b"chair\n"})
    assert invoke(["prepare", "modelnet40", "--from", archive, "--root", root]).exit_code == 2
    _release_zip(archive, ids=IDS[:2])
    st = archive.stat()
    os.utime(archive, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))
    outcome = invoke(["prepare", "modelnet40", "--from", archive, "--root", root], timeout=60)
    assert outcome.exit_code == 0, outcome.stderr
    assert CachedPoints(root / "modelnet40").names == ["airplane/airplane_0001.txt", "chair/chair_0001.txt"]
    assert_no_temp_files(tmp_path)
