"""prepare_dataset end to end on a synthetic ModelNet40 release served from 127.0.0.1 (no real data)."""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from vitlens_cli.data import cache as cache_mod
from vitlens_cli.data import modelnet40
from vitlens_cli.data.cache import CachedPoints, read_index
from vitlens_cli.data.meta import classnames
from vitlens_cli.data.prepare import pipeline
from vitlens_cli.data.prepare.download import DownloadError, part_path
from vitlens_cli.data.prepare.extract import ArchiveError, UnsafeArchiveError
from vitlens_cli.data.prepare.pipeline import RELEASES, Release, prepare_dataset
from vitlens_cli.errors import VitlensError

from .conftest import ServerState

# A synthetic stand-in for modelnet40_normal_resampled: real class names, random points.
SYNTH_CLASSES = ("airplane", "chair", "flower_pot")
SYNTH_IDS = [f"{cls}_{k:04d}" for cls in SYNTH_CLASSES for k in (1, 2)]
NAMES = [f"{i.rsplit('_', 1)[0]}/{i}.txt" for i in SYNTH_IDS]
ZIP_NAME = "modelnet40_normal_resampled.zip"


def _synthetic_tree(parent: Path, test_ids: list[str] = SYNTH_IDS, seed: int = 7) -> Path:
    """``parent/modelnet40_normal_resampled/`` with 1200-point ``x,y,z,nx,ny,nz`` CSV shapes; returns parent."""
    root = parent / "modelnet40_normal_resampled"
    root.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for shape_id in SYNTH_IDS:
        cls = shape_id.rsplit("_", 1)[0]
        (root / cls).mkdir(exist_ok=True)
        xyz = rng.normal(size=(1200, 3)) * rng.uniform(0.5, 3.0) + rng.normal(size=3)
        normals = rng.normal(size=(1200, 3))
        normals /= np.linalg.norm(normals, axis=1, keepdims=True)
        np.savetxt(root / cls / f"{shape_id}.txt", np.hstack([xyz, normals]), delimiter=",", fmt="%.6f")
    (root / "modelnet40_shape_names.txt").write_text("\n".join(sorted(SYNTH_CLASSES)) + "\n")
    (root / "modelnet40_test.txt").write_text("\n".join(test_ids) + "\n")
    return parent


def _zip_folder(folder: Path, archive: Path) -> Path:
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            zf.write(path, path.relative_to(folder).as_posix())
    return archive


@dataclass
class Served:
    base: str
    state: ServerState

    @property
    def files(self) -> dict[str, bytes]:
        return self.state.files

    @property
    def requests(self) -> list[str]:
        return [path for path, _ in self.state.requests]


@pytest.fixture
def server(http_server: tuple[str, ServerState]) -> Served:
    return Served(*http_server)


@pytest.fixture(scope="module")
def synthetic_zip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    base = tmp_path_factory.mktemp("synthetic_release")
    archive = _zip_folder(_synthetic_tree(base / "tree"), base / ZIP_NAME)
    return archive, hashlib.sha256(archive.read_bytes()).hexdigest()


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any download attempt fails the test."""
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"unexpected download: {args}")

    monkeypatch.setattr(pipeline, "download", refuse)


def _serve_release(monkeypatch: pytest.MonkeyPatch, server: Served, archive: Path, sha256: str) -> None:
    server.files["/" + ZIP_NAME] = archive.read_bytes()
    monkeypatch.setitem(RELEASES, "modelnet40", Release(ZIP_NAME, f"{server.base}/{ZIP_NAME}", sha256,
                                                        where="a synthetic test release"))


def _check_cache(dest: Path, source_root: Path) -> None:
    """The cache holds the synthetic shapes in test-list order, each exactly as load_shape makes it."""
    ds = CachedPoints(dest)
    lookup = {c: i for i, c in enumerate(classnames("modelnet40"))}
    assert len(ds) == len(SYNTH_IDS)
    assert ds.names == NAMES
    assert list(ds.labels) == [lookup[n.split("/")[0].replace("_", " ")] for n in NAMES]
    assert ds.index.classes == classnames("modelnet40") and ds.index.num_points == modelnet40.NUM_POINTS
    for i, name in enumerate(NAMES):
        pts, _, _ = ds[i]
        assert pts.shape == (modelnet40.NUM_POINTS, 3)
        np.testing.assert_allclose(np.linalg.norm(pts, axis=1).max(), 1.0, atol=1e-5)
        np.testing.assert_array_equal(pts, modelnet40.load_shape("resampled", source_root / name))


def _extracted(root: Path) -> Path:
    """The one extraction of the release archive (its folder name carries the archive's identity)."""
    found = [p for p in (root / "_sources").iterdir() if p.name.startswith("modelnet40_normal_resampled-")]
    assert len(found) == 1, found
    return found[0]


def _files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.exists() else []


def test_download_extract_convert_then_idempotent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: Served,
                                                   synthetic_zip: tuple[Path, str]) -> None:
    archive, sha = synthetic_zip
    _serve_release(monkeypatch, server, archive, sha)
    root = tmp_path / "data"
    stages: set[str] = set()
    summary = prepare_dataset("modelnet40", root, progress=lambda stage, done, total: stages.add(stage))
    assert server.requests == ["/" + ZIP_NAME]
    assert stages == {"download", "extract", "convert"}
    assert summary.benchmark == "modelnet40" and summary.variant is None
    assert summary.dest == root / "modelnet40"
    assert (summary.count, summary.converted, summary.skipped, summary.already_done) == (6, 6, 0, False)
    assert "resampled" in summary.protocol

    download = root / "_downloads" / ZIP_NAME
    assert download.read_bytes() == archive.read_bytes() and not part_path(download).exists()
    extracted = _extracted(root) / "modelnet40_normal_resampled"
    assert (extracted / "modelnet40_test.txt").is_file()
    shard = read_index(summary.dest).shards[0]
    for name in ("index.json", shard["points"], shard["labels"], shard["names"]):
        assert (summary.dest / name).is_file()
    assert not (root / "modelnet40.partial").exists()
    assert read_index(summary.dest).count == 6
    _check_cache(summary.dest, extracted)

    before = {p: p.stat().st_mtime_ns for p in _files_under(summary.dest)}
    again = prepare_dataset("modelnet40", root)
    assert (again.count, again.converted, again.skipped, again.already_done) == (6, 0, 6, True)
    assert server.requests == ["/" + ZIP_NAME]  # no second HTTP request
    assert {p: p.stat().st_mtime_ns for p in _files_under(summary.dest)} == before

    # the cache is gone but the verified download is kept: converting again needs no network either
    shutil.rmtree(summary.dest)
    third = prepare_dataset("modelnet40", root)
    assert (third.count, third.converted, third.already_done) == (6, 6, False)
    assert server.requests == ["/" + ZIP_NAME]
    _check_cache(third.dest, extracted)


def test_checksum_mismatch_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: Served,
                                          synthetic_zip: tuple[Path, str]) -> None:
    archive, _ = synthetic_zip
    _serve_release(monkeypatch, server, archive, "0" * 64)
    root = tmp_path / "data"
    with pytest.raises(VitlensError, match="SHA-256 mismatch") as info:
        prepare_dataset("modelnet40", root)
    assert isinstance(info.value, DownloadError)
    assert server.requests == ["/" + ZIP_NAME]
    assert _files_under(root) == []  # no download, no .part, no sources, no cache
    assert not (root / "modelnet40").exists() and not (root / "modelnet40.partial").exists()


def test_from_malicious_zip_raises_and_writes_nothing(tmp_path: Path, offline: None) -> None:
    evil = tmp_path / "incoming" / "evil.zip"
    evil.parent.mkdir()
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("modelnet40_normal_resampled/modelnet40_shape_names.txt", "airplane\n")
        zf.writestr("../evil", "pwned")
    root = tmp_path / "work" / "data"
    with pytest.raises(UnsafeArchiveError, match=r"\.\./evil") as info:
        prepare_dataset("modelnet40", root, from_path=evil)
    assert isinstance(info.value, VitlensError)
    assert _files_under(root) == []
    assert not (tmp_path / "work" / "evil").exists() and not (root / "_sources" / "evil").exists()
    assert not (tmp_path / "evil").exists() and not (tmp_path / "incoming" / "evil").exists()
    assert not (root / "modelnet40").exists()


def test_from_folder_works_offline(tmp_path: Path, offline: None) -> None:
    tree = _synthetic_tree(tmp_path / "release")
    root = tmp_path / "data"
    summary = prepare_dataset("modelnet40", root, from_path=tree)
    assert (summary.count, summary.converted, summary.already_done) == (6, 6, False)
    assert not (root / "_downloads").exists() and not (root / "_sources").exists()  # read in place
    _check_cache(summary.dest, tree / "modelnet40_normal_resampled")
    assert prepare_dataset("modelnet40", root, from_path=tree).already_done


def test_from_zip_works_offline(tmp_path: Path, offline: None, synthetic_zip: tuple[Path, str]) -> None:
    archive, _ = synthetic_zip
    root = tmp_path / "data"
    summary = prepare_dataset("modelnet40", root, from_path=archive)
    assert summary.count == 6
    _check_cache(summary.dest, _extracted(root) / "modelnet40_normal_resampled")


def test_from_missing_path(tmp_path: Path, offline: None) -> None:
    with pytest.raises(VitlensError, match="no such file"):
        prepare_dataset("modelnet40", tmp_path / "data", from_path=tmp_path / "nope.zip")


def test_scanobjectnn_needs_from(tmp_path: Path, offline: None) -> None:
    with pytest.raises(VitlensError, match="--from") as info:
        prepare_dataset("scanobjectnn", tmp_path / "data")
    assert "h5_files.zip" in str(info.value)
    assert _files_under(tmp_path / "data") == []


def test_openshape_meta_from_zip_is_extracted_only(tmp_path: Path, offline: None) -> None:
    archive = tmp_path / "meta_data.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("meta_data/split/lvis.json", "[]")
        zf.writestr("meta_data/modelnet40/test_split.json", "[]")
    root = tmp_path / "data"
    summary = prepare_dataset("openshape-meta", root, from_path=archive)
    assert "openshape-meta" in pipeline.FETCH_ONLY
    assert summary.benchmark == "openshape-meta" and summary.count == 0 and not summary.already_done
    assert (summary.dest / "meta_data" / "split" / "lvis.json").read_text() == "[]"
    assert (summary.dest / "meta_data" / "modelnet40" / "test_split.json").is_file()
    assert summary.dest.is_relative_to(root)
    assert not (root / "openshape-meta").exists()  # nothing converted
    again = prepare_dataset("openshape-meta", root, from_path=archive)
    assert again.dest == summary.dest


def test_interrupted_conversion_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, offline: None) -> None:
    tree = _synthetic_tree(tmp_path / "release")
    root = tmp_path / "data"
    monkeypatch.setattr(cache_mod, "SHARD_SIZE", 2)
    real_load = modelnet40.load_shape
    calls: list[Path] = []

    def failing_load(kind: str, path: Path, seed: int = 0) -> np.ndarray:
        if len(calls) == 3:
            raise KeyboardInterrupt("synthetic interruption")
        calls.append(path)
        return real_load(kind, path, seed)

    monkeypatch.setattr(modelnet40, "load_shape", failing_load)
    with pytest.raises(KeyboardInterrupt):
        prepare_dataset("modelnet40", root, from_path=tree)
    assert not (root / "modelnet40").exists()
    partial = root / "modelnet40.partial"
    assert (partial / "shard-00000.names.json").is_file() and not (partial / "shard-00001.names.json").exists()
    with pytest.raises(VitlensError, match="interrupted"):
        CachedPoints(root / "modelnet40")

    monkeypatch.setattr(modelnet40, "load_shape", real_load)
    counting: list[Path] = []
    monkeypatch.setattr(modelnet40, "load_shape",
                        lambda kind, path, seed=0: counting.append(path) or real_load(kind, path, seed))
    summary = prepare_dataset("modelnet40", root, from_path=tree)
    assert (summary.count, summary.converted, summary.skipped, summary.already_done) == (6, 4, 2, False)
    assert [p.name for p in counting] == [f"{i}.txt" for i in SYNTH_IDS[2:]]
    assert not partial.exists()
    assert [s["count"] for s in read_index(summary.dest).shards] == [2, 2, 2]
    monkeypatch.setattr(modelnet40, "load_shape", real_load)
    _check_cache(summary.dest, tree / "modelnet40_normal_resampled")


def test_foreign_format_cache_is_rebuilt_by_prepare(tmp_path: Path, offline: None) -> None:
    tree = _synthetic_tree(tmp_path / "release")
    root = tmp_path / "data"
    dest = prepare_dataset("modelnet40", root, from_path=tree).dest
    raw = json.loads((dest / "index.json").read_text())
    raw["format"] = "vitlens-cache/0"
    (dest / "index.json").write_text(json.dumps(raw))
    with pytest.raises(VitlensError, match="re-run `vitlens prepare`"):
        CachedPoints(dest)
    summary = prepare_dataset("modelnet40", root, from_path=tree)  # as the message says: it must then work
    assert (summary.converted, summary.already_done) == (6, False)
    _check_cache(dest, tree / "modelnet40_normal_resampled")


# --- bad state never sticks --------------------------------------------------------------------------------

LOGIN_PAGE = b"<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body>please log in</body></html>\n"


def test_cut_short_download_without_length_is_deleted_and_fetched_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: Served, synthetic_zip: tuple[Path, str]) -> None:
    archive, _ = synthetic_zip
    _serve_release(monkeypatch, server, archive, None)  # no checksum is published for this release
    server.state.no_length.add("/" + ZIP_NAME)
    server.state.cut_first = 1  # half the body, then the connection closes: it looks complete
    root = tmp_path / "data"
    with pytest.raises(ArchiveError, match="the download was deleted") as info:
        prepare_dataset("modelnet40", root)
    assert str(root / "_downloads" / ZIP_NAME) in str(info.value)
    assert _files_under(root) == []  # no download, no .part, no half extraction, no cache
    summary = prepare_dataset("modelnet40", root)  # the server is fine now, and is asked again
    assert server.requests == ["/" + ZIP_NAME] * 2
    assert (summary.count, summary.already_done) == (6, False)


def test_html_login_page_is_not_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: Served,
                                     synthetic_zip: tuple[Path, str]) -> None:
    archive, _ = synthetic_zip
    _serve_release(monkeypatch, server, archive, None)
    server.files["/" + ZIP_NAME] = LOGIN_PAGE
    server.state.content_types["/" + ZIP_NAME] = "text/html"
    root = tmp_path / "data"
    with pytest.raises(DownloadError, match="HTML page"):
        prepare_dataset("modelnet40", root)
    assert _files_under(root) == []
    server.files["/" + ZIP_NAME] = archive.read_bytes()
    server.state.content_types.clear()
    assert prepare_dataset("modelnet40", root).count == 6
    assert server.requests == ["/" + ZIP_NAME] * 2


def test_bad_file_already_in_the_download_cache_is_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            server: Served, synthetic_zip: tuple[Path, str]) -> None:
    archive, _ = synthetic_zip
    _serve_release(monkeypatch, server, archive, None)
    root = tmp_path / "data"
    (root / "_downloads").mkdir(parents=True)
    (root / "_downloads" / ZIP_NAME).write_bytes(LOGIN_PAGE)  # what an earlier version kept
    with pytest.raises(ArchiveError, match="HTML page.*the download was deleted"):
        prepare_dataset("modelnet40", root)
    assert server.requests == []  # a kept download is trusted once: then it is gone
    assert prepare_dataset("modelnet40", root).count == 6
    assert server.requests == ["/" + ZIP_NAME]


def _bump_mtime(path: Path) -> None:
    # Rewritten within one timestamp tick a file could keep its mtime; a real fix comes seconds later.
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))


def test_corrected_archive_with_the_same_name_is_picked_up(tmp_path: Path, offline: None) -> None:
    incoming = tmp_path / "incoming"
    tree = _synthetic_tree(tmp_path / "release")
    (tree / "modelnet40_normal_resampled" / "modelnet40_test.txt").unlink()  # a broken release
    archive = _zip_folder(tree, incoming.mkdir() or incoming / ZIP_NAME)
    root = tmp_path / "data"
    with pytest.raises(VitlensError, match="modelnet40_test.txt") as info:
        prepare_dataset("modelnet40", root, from_path=archive)
    # named as the user knows it ("<archive>/<folder inside it>"), not by our extraction folder
    assert str(info.value).startswith(f"{archive}/") and "_sources" not in str(info.value)
    assert _files_under(root) == []  # its useless extraction is gone too

    fixed = _synthetic_tree(tmp_path / "fixed")
    _zip_folder(fixed, archive)  # the corrected archive, same path and name
    _bump_mtime(archive)
    summary = prepare_dataset("modelnet40", root, from_path=archive)
    assert (summary.count, summary.already_done) == (6, False)
    _check_cache(summary.dest, fixed / "modelnet40_normal_resampled")


def test_new_archive_under_the_same_name_replaces_extraction_and_cache(tmp_path: Path, offline: None) -> None:
    archive = _zip_folder(_synthetic_tree(tmp_path / "v1"), tmp_path / ZIP_NAME)
    root = tmp_path / "data"
    assert prepare_dataset("modelnet40", root, from_path=archive).count == 6
    first_extraction = _extracted(root)

    subset = SYNTH_IDS[:4]
    _zip_folder(_synthetic_tree(tmp_path / "v2", test_ids=subset, seed=8), archive)
    _bump_mtime(archive)
    summary = prepare_dataset("modelnet40", root, from_path=archive)
    assert (summary.count, summary.converted, summary.already_done) == (4, 4, False)
    assert not first_extraction.exists() and _extracted(root) != first_extraction
    assert CachedPoints(summary.dest).names == NAMES[:4]
    again = prepare_dataset("modelnet40", root, from_path=archive)
    assert (again.already_done, again.count) == (True, 4)


def test_changed_folder_is_converted_again(tmp_path: Path, offline: None) -> None:
    tree = _synthetic_tree(tmp_path / "release")
    root = tmp_path / "data"
    prepare_dataset("modelnet40", root, from_path=tree)
    listing = tree / "modelnet40_normal_resampled" / "modelnet40_test.txt"
    listing.write_text("\n".join(SYNTH_IDS[:3]) + "\n")
    _bump_mtime(listing)
    summary = prepare_dataset("modelnet40", root, from_path=tree)
    assert (summary.count, summary.already_done) == (3, False)


def test_damaged_cache_is_rebuilt_by_prepare(tmp_path: Path, offline: None) -> None:
    tree = _synthetic_tree(tmp_path / "release")
    root = tmp_path / "data"
    dest = prepare_dataset("modelnet40", root, from_path=tree).dest
    points = dest / read_index(dest).shards[0]["points"]
    points.write_bytes(points.read_bytes()[:1000])  # truncated, say by a full disk
    with pytest.raises(VitlensError, match="truncated"):
        CachedPoints(dest)
    summary = prepare_dataset("modelnet40", root, from_path=tree)
    assert (summary.converted, summary.already_done) == (6, False)
    _check_cache(dest, tree / "modelnet40_normal_resampled")


def test_wrong_release_is_reported_by_its_archive(tmp_path: Path, offline: None) -> None:
    archive = tmp_path / "h5_files.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("h5_files/main_split/test_objectdataset.h5", b"not what modelnet40 needs")
    root = tmp_path / "data"
    with pytest.raises(VitlensError, match="neither a modelnet40_normal_resampled tree") as info:
        prepare_dataset("modelnet40", root, from_path=archive)
    assert str(info.value).startswith(f"{archive}: ")
    assert _files_under(root) == []


def test_one_prepare_at_a_time_per_data_root(tmp_path: Path, offline: None) -> None:
    tree = _synthetic_tree(tmp_path / "release")
    root = tmp_path / "data"
    root.mkdir()
    fd = os.open(root, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a running prepare holds it
        with pytest.raises(VitlensError, match="another `vitlens prepare`"):
            prepare_dataset("modelnet40", root, from_path=tree)
    finally:
        os.close(fd)
    assert prepare_dataset("modelnet40", root, from_path=tree).count == 6


def test_killed_extraction_leftovers_are_cleared(tmp_path: Path, offline: None,
                                                synthetic_zip: tuple[Path, str]) -> None:
    archive, _ = synthetic_zip
    root = tmp_path / "data"
    stale = root / "_sources" / ".modelnet40_normal_resampled-0123456789abcdef.x1y2.extracting"
    stale.mkdir(parents=True)
    (stale / "half.txt").write_text("left by a run killed mid-extraction")
    prepare_dataset("modelnet40", root, from_path=archive)
    assert not stale.exists()


def test_conversion_progress_has_a_total(tmp_path: Path, offline: None) -> None:
    events: list[tuple[str, int, int | None]] = []
    prepare_dataset("modelnet40", tmp_path / "data", from_path=_synthetic_tree(tmp_path / "src"),
                    progress=lambda stage, done, total: events.append((stage, done, total)))
    convert = [(done, total) for stage, done, total in events if stage == "convert"]
    assert convert == [(i, len(SYNTH_IDS)) for i in range(len(SYNTH_IDS) + 1)]
