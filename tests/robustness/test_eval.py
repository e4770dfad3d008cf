"""`vitlens eval` as a hostile and clumsy user runs it: every bad input is one clean line, nothing is touched.

Fatal cases (exit 2, one ``error:`` line naming the file, template or key) run against an output folder that
holds a previous report and a data root that holds a prepared cache: both must be exactly as they were, and
no temporary file may be left. They all fail before the model is loaded. Batch cases put one bad item beside
good shapes: exit 1, one ``skipped:`` line naming it, the good shapes evaluated and reported.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.robustness.harness import (Snapshot, as_nobody, assert_clean_failure, assert_no_temp_files, invoke,
                                      temp_files)
from vitlens_cli.data.cache import INDEX_NAME, CacheIndex, Sample, build_cache
from vitlens_cli.data.meta import classnames

RNG = np.random.default_rng(5)
TEMPLATE = ["--template", "a point cloud of {}."]  # one prompt per class keeps each run short
FAST = ["--workers", "0", *TEMPLATE]


def _npy(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, RNG.standard_normal((400, 3)).astype(np.float32))
    return path


def _shapes(d: Path) -> Path:
    """Two classes of good shapes (``mug`` and ``lamp post``)."""
    for cls in ("mug", "lamp_post"):
        for i in range(2):
            _npy(d / "shapes" / cls / f"{i}.npy")
    return d / "shapes"


def _write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def _csv(d: Path, data: bytes | str) -> Path:
    _npy(d / "a.npy")
    return _write(d / "list.csv", data)


def _loop(path: Path) -> Path:
    os.symlink(path.with_name(path.name + "-b"), path)
    os.symlink(path, path.with_name(path.name + "-b"))
    return path


def _socket_file(path: Path) -> Path:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))  # the socket file stays; nothing listens
    return path


def _cache(root: Path, n: int = 3) -> Path:
    """A prepared ModelNet40 cache of synthetic shapes under ``root``."""
    index = CacheIndex("modelnet40", None, classnames("modelnet40"), 1024, 3, "y", "synthetic test cache")
    pts = RNG.standard_normal((n, 1024, 3)).astype(np.float32)
    build_cache(root / "modelnet40", index, [f"shape-{i}" for i in range(n)],
                lambda i: Sample(pts[i], i % 40, f"shape-{i}"))
    return root / "modelnet40"


def _shard(dest: Path, key: str) -> Path:
    return dest / json.loads((dest / INDEX_NAME).read_text())["shards"][0][key]


def _edit_index(dest: Path, **changes: object) -> Path:
    raw = json.loads((dest / INDEX_NAME).read_text())
    raw.update(changes)
    (dest / INDEX_NAME).write_text(json.dumps(raw))
    return dest / INDEX_NAME


def _damaged(d: Path, damage: Callable[[Path], Path], *, by_folder: bool = False) -> tuple[list, list[str]]:
    """A data root in ``d`` whose ModelNet40 cache ``damage`` breaks; the line must name what it returns."""
    dest = _cache(d / "root")
    culprit = damage(dest)
    target = [str(dest)] if by_folder else ["modelnet40", "--data-root", str(d / "root")]
    return target, [str(culprit), "vitlens prepare"]


def _truncate(path: Path) -> Path:
    path.write_bytes(path.read_bytes()[:-9])
    return path


def _fifo_over(path: Path) -> Path:
    path.unlink()
    os.mkfifo(path)
    return path


def _unlinked(path: Path) -> Path:
    path.unlink()
    return path


# Each maker builds its inputs under ``d`` and returns (args after "eval", what the error line must name).
FATAL: dict[str, Callable[[Path], tuple[list, list[str]]]] = {
    # CSV input
    "csv-foreign-header": lambda d: ([_csv(d, "file,class\na.npy,mug\n")], ["list.csv:1", "'path,label'"]),
    "csv-without-header": lambda d: ([_csv(d, "a.npy,mug\n")], ["list.csv:1", "header 'path,label'"]),
    "csv-not-utf8": lambda d: ([_csv(d, b"path,label\na.npy,caf\xe9\n")], ["list.csv", "not UTF-8"]),
    "csv-utf16": lambda d: ([_csv(d, "path,label\na.npy,mug\n".encode("utf-16"))], ["list.csv", "NUL byte"]),
    "csv-nul-byte": lambda d: ([_csv(d, b"path,label\na.npy,m\x00ug\n")], ["list.csv", "NUL byte"]),
    "csv-empty": lambda d: ([_csv(d, "")], ["list.csv", "empty"]),
    "csv-header-only": lambda d: ([_csv(d, "path,label\n")], ["list.csv", "no rows"]),
    "csv-one-column": lambda d: ([_csv(d, "path,label\na.npy\n")], ["list.csv:2", "expected 'path,label'"]),
    "csv-empty-label": lambda d: ([_csv(d, "path,label\na.npy,  \n")], ["list.csv:2"]),
    "csv-unclosed-quote": lambda d: ([_csv(d, 'path,label\n"a.npy,mug\n')], ["list.csv:"]),
    "csv-huge-field": lambda d: ([_csv(d, "path,label\na.npy," + "x" * 200_000 + "\n")], ["list.csv",
                                                                                         "field larger"]),
    "csv-fifo": lambda d: (os.mkfifo(d / "list.csv"), ([d / "list.csv"], ["list.csv", "named pipe"]))[1],
    "csv-missing": lambda d: ([d / "nope.csv"], ["nope.csv", "no such file"]),
    # other inputs
    "input-symlink-loop": lambda d: ([_loop(d / "shapes")], ["shapes", "symbolic link loop"]),
    "input-socket": lambda d: ([_socket_file(d / "s.csv")], ["s.csv", "socket"]),
    "input-char-device": lambda d: (["/dev/null"], ["/dev/null", "character device"]),
    "input-plain-file": lambda d: ([_npy(d / "one.npy")], ["one.npy", "neither a folder"]),
    "input-empty-folder": lambda d: ((d / "empty").mkdir(), ([d / "empty"], ["empty", "no class sub-folders"]))[1],
    "input-folder-without-3d-files": lambda d: ([_write(d / "f" / "mug" / "readme.md", "hi").parent.parent],
                                                ["no class sub-folders with supported 3D files"]),
    "unknown-benchmark": lambda d: (["modelnet41"], ["modelnet41", "unknown benchmark"]),
    "bad-variant": lambda d: (["scanobjectnn", "--variant", "hardest"], ["hardest", "obj_only"]),
    "variant-without-variants": lambda d: (["modelnet40", "--variant", "test"], ["modelnet40 has no variants"]),
    "not-prepared": lambda d: (["shapenet55", "--data-root", d], ["shapenet55-test", "run `vitlens prepare`"]),
    "interrupted-prepare": lambda d: ((d / "modelnet40.partial").mkdir(),
                                      (["modelnet40", "--data-root", d], ["interrupted run"]))[1],
    # templates: {} exactly once, nothing else
    "template-without-placeholder": lambda d: ([_shapes(d), "--template", "a shape"], ["'a shape'", "found 0"]),
    "template-twice": lambda d: ([_shapes(d), "--template", "{} or {}"], ["'{} or {}'", "found 2"]),
    "template-named": lambda d: ([_shapes(d), "--template", "a {label}"], ["'a {label}'", "{label}"]),
    "template-positional": lambda d: ([_shapes(d), "--template", "a {0}"], ["'a {0}'"]),
    "template-unbalanced": lambda d: ([_shapes(d), "--template", "a {} {"], ["'a {} {'", "literal braces"]),
    "template-stray-close": lambda d: ([_shapes(d), "--template", "a } {}"], ["'a } {}'"]),
    "template-one-bad-of-two": lambda d: ([_shapes(d), "--template", "a {}", "--template", "b {x}"], ["'b {x}'"]),
    # a damaged prepared cache: the line names the file
    "cache-missing-shard": lambda d: _damaged(d, lambda c: _unlinked(_shard(c, "points"))),
    "cache-missing-names": lambda d: _damaged(d, lambda c: _unlinked(_shard(c, "names"))),
    "cache-truncated-points": lambda d: _damaged(d, lambda c: _truncate(_shard(c, "points"))),
    "cache-truncated-labels": lambda d: _damaged(d, lambda c: _truncate(_shard(c, "labels"))),
    "cache-index-lies-about-count": lambda d: _damaged(d, lambda c: _edit_index(c, count=99)),
    "cache-index-lies-about-shape": lambda d: _damaged(d, lambda c: (_edit_index(c, num_points=2048),
                                                                     _shard(c, "points"))[1]),
    "cache-foreign-version": lambda d: _damaged(d, lambda c: _edit_index(c, format="vitlens-cache/9")),
    "cache-index-not-json": lambda d: _damaged(d, lambda c: _write(c / INDEX_NAME, "{\"format\": ")),
    "cache-index-wrong-types": lambda d: _damaged(d, lambda c: _edit_index(c, classes="chair")),
    "cache-names-wrong-length": lambda d: _damaged(d, lambda c: _write(_shard(c, "names"), '["just-one"]')),
    "cache-labels-out-of-range": lambda d: _damaged(d, lambda c: (_edit_index(c, classes=["a", "b"]),
                                                                  _shard(c, "labels"))[1]),
    "cache-shard-outside": lambda d: _damaged(d, lambda c: (
        _edit_index(c, shards=[{**json.loads((c / INDEX_NAME).read_text())["shards"][0], "points": "/etc/passwd"}]),
        c / INDEX_NAME)[1]),
    "cache-shard-is-a-fifo": lambda d: _damaged(d, lambda c: _fifo_over(_shard(c, "points"))),
    "cache-by-folder-truncated": lambda d: _damaged(d, lambda c: _truncate(_shard(c, "points")), by_folder=True),
    "cache-by-folder-foreign-version": lambda d: _damaged(d, lambda c: _edit_index(c, format="x"), by_folder=True),
}

OUT_CASES: dict[str, Callable[[Path], tuple[Path, str]]] = {
    "out-is-a-file": lambda d: (_write(d / "out.txt", "x"), "is not a folder"),
    "out-under-a-file": lambda d: (_write(d / "f", "x") / "out", "is not a folder"),
}


@pytest.fixture(scope="module")
def previous(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(a report folder written by a good run, a data root with a complete cache): what cases must not touch."""
    base = tmp_path_factory.mktemp("previous")
    _cache(base / "root")
    # Module fixtures run before the per-test isolated roots: keep the classifier cache in this folder too.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VITLENS_CACHE", str(base / "vitlens-cache"))
        outcome = invoke(["eval", "modelnet40", "--data-root", base / "root", "--out", base / "out", *FAST],
                         timeout=300)
    assert outcome.exit_code == 0, outcome.stderr
    return base / "out", base / "root"


@pytest.fixture
def state(previous: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    out, root = tmp_path / "out", tmp_path / "root"
    shutil.copytree(previous[0], out)
    shutil.copytree(previous[1], root)
    return out, root


@pytest.mark.parametrize("case", sorted(FATAL))
def test_fatal_input_is_one_line_and_touches_nothing(case: str, state: tuple[Path, Path], tmp_path: Path) -> None:
    out, root = state
    d = tmp_path / "in"
    d.mkdir()
    args, names = FATAL[case](d)
    before_out, before_root, before_in = Snapshot(out), Snapshot(root), Snapshot(d)
    temp_before = temp_files(tmp_path)  # a case's own input may look like one (a .partial folder)
    given = [str(a) for a in args]
    extra = ["--workers", "0", *([] if "--template" in given else TEMPLATE),
             *([] if "--data-root" in given else ["--data-root", root])]
    outcome = invoke(["eval", *args, "--out", out, *extra], timeout=60)
    assert_clean_failure(outcome, exit_code=2, names=[str(n) for n in names])
    before_out.assert_unchanged()
    before_root.assert_unchanged()
    before_in.assert_unchanged()
    assert temp_files(tmp_path) == temp_before


@pytest.mark.parametrize("case", sorted(OUT_CASES))
def test_unusable_out_is_refused_before_any_work(case: str, state: tuple[Path, Path], tmp_path: Path) -> None:
    _, root = state
    out, fragment = OUT_CASES[case](tmp_path / "in")
    before = Snapshot(tmp_path / "in")
    outcome = invoke(["eval", "modelnet40", "--data-root", root, "--out", out, *FAST], timeout=60)
    assert_clean_failure(outcome, exit_code=2, names=[str(out), fragment])
    before.assert_unchanged()
    assert_no_temp_files(tmp_path)


# --- batch: one bad item is skipped, the good shapes are evaluated ----------------------------------------

def _with_bad(d: Path, make_bad: Callable[[Path], Path]) -> tuple[list, Path]:
    shapes = _shapes(d)
    return [shapes], make_bad(shapes / "mug")


def _csv_listing(d: Path, bad_name: str, make_bad: Callable[[Path], object]) -> tuple[list, Path]:
    shapes = _shapes(d)
    make_bad(d / bad_name)
    rows = [f"{p.relative_to(d)},{p.parent.name.replace('_', ' ')}" for p in sorted(shapes.rglob("*.npy"))]
    return [_write(d / "list.csv", "path,label\n" + "\n".join(rows + [f"{bad_name},mug"]) + "\n")], d / bad_name


BATCH: dict[str, Callable[[Path], tuple[list, Path]]] = {
    "broken-file": lambda d: _with_bad(d, lambda f: _write(f / "broken.ply", "ply\ngarbage")),
    "fifo-in-folder": lambda d: _with_bad(d, lambda f: (os.mkfifo(f / "pipe.ply"), f / "pipe.ply")[1]),
    "symlink-loop-in-folder": lambda d: _with_bad(d, lambda f: _loop(f / "loop.ply")),
    "broken-symlink-in-folder": lambda d: _with_bad(d, lambda f: (os.symlink(f / "gone.npy", f / "dead.npy"),
                                                                  f / "dead.npy")[1]),
    "csv-lists-a-missing-file": lambda d: _csv_listing(d, "gone.npy", lambda p: None),
    "csv-lists-a-fifo": lambda d: _csv_listing(d, "pipe.npy", os.mkfifo),
    "csv-lists-a-folder": lambda d: _csv_listing(d, "folder.npy", Path.mkdir),
}


@pytest.mark.parametrize("case", sorted(BATCH))
def test_bad_item_is_skipped_and_good_shapes_evaluated(case: str, tmp_path: Path) -> None:
    d = tmp_path / "in"
    d.mkdir()
    args, bad = BATCH[case](d)
    out = tmp_path / "out"
    outcome = invoke(["eval", *args, "--out", out, *FAST], timeout=120)
    assert_clean_failure(outcome, exit_code=1, names=[str(bad)], prefix="skipped:")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == 4 and metrics["failed"] == 1
    assert [c["class"] for c in metrics["per_class"]] == ["lamp post", "mug"]
    assert_no_temp_files(tmp_path)


def test_unreadable_sub_folder_is_skipped_not_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shared = Path(tempfile.mkdtemp(prefix="vitlens-perm-"))
    monkeypatch.setenv("VITLENS_CACHE", str(shared / "cache"))
    try:
        shared.chmod(0o777)
        shapes = _shapes(shared)
        hidden = _npy(shapes / "mug" / "more" / "x.npy").parent
        for p in [shapes, *shapes.rglob("*")]:
            p.chmod(0o777 if p.is_dir() else 0o666)
        # The interpreter lives under /root, which nobody cannot read: one run as root first imports every
        # module eval loads lazily, so the case does not depend on which tests ran before it.
        assert invoke(["eval", shapes, "--out", shared / "warm", *FAST], timeout=120).exit_code == 0
        hidden.chmod(0o000)
        (shared / "out").mkdir()
        (shared / "out").chmod(0o777)
        with as_nobody():
            outcome = invoke(["eval", shapes, "--out", shared / "out", *FAST], timeout=120)
        assert_clean_failure(outcome, exit_code=1, names=[str(hidden), "permission denied"], prefix="skipped:")
        assert json.loads((shared / "out" / "metrics.json").read_text())["n"] == 4
    finally:
        for folder, dirs, _ in os.walk(shared):
            for name in dirs:
                os.chmod(os.path.join(folder, name), stat.S_IRWXU)
        shutil.rmtree(shared, ignore_errors=True)


# --- retrieval over a captions CSV (header path,caption) ------------------------------------------------

def _caps(d: Path, data: bytes | str, name: str = "caps.csv") -> Path:
    _write(d / "a.flac", b"fLaC")  # never read: every case fails before any file is opened
    return _write(d / name, data)


# Each maker returns (args after "eval", what the one error line must name). No --template: it is refused.
RETRIEVAL_FATAL: dict[str, Callable[[Path], tuple[list, list[str]]]] = {
    "foreign-header": lambda d: ([_caps(d, "file,text\na.flac,a dog\n")],
                                 ["caps.csv:1", "'path,label' (classification) or 'path,caption'"]),
    "missing-path-column": lambda d: ([_caps(d, "caption,file\na dog,a.flac\n")], ["caps.csv:1", "no 'path'"]),
    "duplicate-header": lambda d: ([_caps(d, "path,caption,caption\na.flac,x,y\n")],
                                   ["caps.csv:1", "'caption' appears twice"]),
    "duplicate-path-header": lambda d: ([_caps(d, "path,caption,PATH\na.flac,x,y\n")],
                                        ["caps.csv:1", "'PATH' appears twice"]),
    "unnamed-column": lambda d: ([_caps(d, "path,caption,\na.flac,x,\n")], ["caps.csv:1", "column 3", "no name"]),
    "header-only": lambda d: ([_caps(d, "path,caption\n")], ["caps.csv", "no rows after the header"]),
    "comments-only-after-header": lambda d: ([_caps(d, "path,caption\n# none yet\n\n")], ["caps.csv", "no rows"]),
    "empty-caption": lambda d: ([_caps(d, "path,caption\na.flac,a dog\na.flac,  \n")],
                                ["caps.csv:3", "empty 'caption'", "a.flac"]),
    "empty-path": lambda d: ([_caps(d, "path,caption\n,a dog\n")], ["caps.csv:2", "empty 'path'"]),
    "unquoted-comma": lambda d: ([_caps(d, "path,caption\na.flac,a dog, barking\n")],
                                 ["caps.csv:2", "3 field(s)", "quote captions"]),
    "too-few-fields": lambda d: ([_caps(d, "path,caption\na.flac\n")], ["caps.csv:2", "1 field(s)"]),
    "repeated-row": lambda d: ([_caps(d, "path,caption\na.flac,a dog\nb.flac,x\n./a.flac,a dog\n")],
                               ["caps.csv:4", "repeats line 2"]),
    "unclosed-quote": lambda d: ([_caps(d, 'path,caption\na.flac,"a dog\nb.flac,x\n')],
                                 ["caps.csv:3", "not a readable CSV", "unexpected end of data"]),
    "text-after-quote": lambda d: ([_caps(d, 'path,caption\na.flac,"a" dog\n')], ["caps.csv:2", "not a readable CSV"]),
    "not-utf8": lambda d: ([_caps(d, b"path,caption\na.flac,caf\xe9\n")], ["caps.csv", "not UTF-8"]),
    "nul-byte": lambda d: ([_caps(d, b"path,caption\na.flac,a d\x00og\n")], ["caps.csv", "NUL byte"]),
    "utf16": lambda d: ([_caps(d, "path,caption\na.flac,a dog\n".encode("utf-16"))], ["caps.csv", "NUL byte"]),
    "ambiguous-extension": lambda d: ([_caps(d, "path,caption\nx.npy,a map\n")],
                                      ["caps.csv:2", "x.npy", "could be 3d", "--modality"]),
    "unsupported-extension": lambda d: ([_caps(d, "path,caption\nnotes.docx,a memo\n")],
                                        ["caps.csv:2", "notes.docx", "unsupported file type"]),
    "unknown-modality": lambda d: ([_caps(d, "path,caption\na.flac,x\n"), "--modality", "smell"],
                                   ["smell", "unknown modality"]),
    "with-template": lambda d: ([_caps(d, "path,caption\na.flac,x\n"), "--template", "a {}"],
                                ["--template", "classification"]),
    "with-variant": lambda d: ([_caps(d, "path,caption\na.flac,x\n"), "--variant", "test"], ["--variant"]),
    "model-without-the-tower": lambda d: ([_caps(d, "path,caption\na.flac,a dog\n"), "--model", "tiny"],
                                          ["caps.csv", "1 audio file(s)", "no audio tower"]),
    "every-file-missing": lambda d: ([_write(d / "caps.csv", "path,caption\ngone.npy,x\nlost.npy,y\n"),
                                      "--modality", "3d"],
                                     ["caps.csv", "no file could be evaluated", "2 skipped", "gone.npy"]),
}


@pytest.mark.parametrize("case", sorted(RETRIEVAL_FATAL))
def test_captions_fatal_input_is_one_line_and_touches_nothing(case: str, state: tuple[Path, Path],
                                                              tmp_path: Path) -> None:
    out, _ = state
    d = tmp_path / "in"
    d.mkdir()
    args, names = RETRIEVAL_FATAL[case](d)
    before_out, before_in = Snapshot(out), Snapshot(d)
    outcome = invoke(["eval", *args, "--out", out], timeout=120)
    assert_clean_failure(outcome, exit_code=2, names=[str(n) for n in names])
    before_out.assert_unchanged()
    before_in.assert_unchanged()
    assert_no_temp_files(tmp_path)


def test_classification_takes_one_modality(tmp_path: Path) -> None:
    outcome = invoke(["eval", _shapes(tmp_path), "--modality", "3d", "--modality", "depth", "--out",
                      tmp_path / "out", *FAST])
    assert_clean_failure(outcome, exit_code=2, names=["--modality", "one modality"])
    assert not (tmp_path / "out").exists()


def test_modality_that_reads_none_of_the_files_is_one_line(tmp_path: Path) -> None:
    outcome = invoke(["eval", _shapes(tmp_path), "--modality", "audio", "--out", tmp_path / "out", *FAST])
    assert_clean_failure(outcome, exit_code=2, names=["shapes", "no class sub-folders with supported audio files"])
    assert not (tmp_path / "out").exists()


def _h5_stack(path: Path) -> None:
    import h5py

    with h5py.File(path, "w") as fh:
        fh["data"] = RNG.standard_normal((3, 512, 3)).astype(np.float32)
        fh["label"] = np.zeros(3, np.int64)


def _captions_listing(d: Path, bad_name: str, make_bad: Callable[[Path], object]) -> tuple[list, Path]:
    """Two good clouds with a caption each, and a bad entry whose only caption is its own."""
    _npy(d / "a.npy")
    _npy(d / "b.npy")
    make_bad(d / bad_name)
    rows = ["a.npy,a mug", "b.npy,a lamp post", "b.npy,a lamp", f"{bad_name},the bad one", f"{bad_name},a mug"]
    return [_write(d / "caps.csv", "path,caption\n" + "\n".join(rows) + "\n")], d / bad_name


RETRIEVAL_BATCH: dict[str, tuple[Callable[[Path], tuple[list, Path]], str]] = {
    "missing-file": (lambda d: _captions_listing(d, "gone.npy", lambda p: None), "no such file"),
    "fifo": (lambda d: _captions_listing(d, "pipe.npy", os.mkfifo), "named pipe"),
    "folder-of-clouds": (lambda d: _captions_listing(d, "folder.npy", lambda p: _npy(p / "inside.npy")),
                         "a folder, not a file"),
    "broken-file": (lambda d: _captions_listing(d, "broken.ply", lambda p: _write(p, "ply\ngarbage")), ""),
    "stack-of-clouds": (lambda d: _captions_listing(d, "stack.h5", _h5_stack), "holds 3 items"),
}


@pytest.mark.parametrize("case", sorted(RETRIEVAL_BATCH))
def test_captions_bad_file_is_skipped_and_the_rest_evaluated(case: str, tmp_path: Path) -> None:
    d = tmp_path / "in"
    d.mkdir()
    make, reason = RETRIEVAL_BATCH[case]
    args, bad = make(d)
    out = tmp_path / "out"
    outcome = invoke(["eval", *args, "--modality", "3d", "--out", out], timeout=120)
    assert_clean_failure(outcome, exit_code=1, names=[str(bad), reason], prefix="skipped:")
    metrics = json.loads((out / "metrics.json").read_text())
    # the bad file leaves both galleries; "the bad one" had no other file and is dropped, "a mug" stays
    assert (metrics["items"], metrics["captions"], metrics["failed"], metrics["dropped_captions"]) == (2, 3, 1, 1)
    assert (metrics["text_to_item"]["n_queries"], metrics["item_to_text"]["n_gallery"]) == (3, 3)
    assert_no_temp_files(tmp_path)
