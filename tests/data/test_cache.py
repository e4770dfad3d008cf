"""build_cache / read_index / CachedPoints on synthetic items: sharding, resume after a crash, pickling."""
from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from vitlens_cli.data import cache as cache_mod
from vitlens_cli.data.cache import (CACHE_FORMAT, INDEX_NAME, CachedPoints, CacheError, CacheIndex, Sample,
                                    build_cache, check_cache, is_complete, read_index, tidy, valid_index)
from vitlens_cli.errors import VitlensError

N_POINTS, CHANNELS = 16, 3
N_ITEMS = 1_100  # 3 shards of 512 with the real SHARD_SIZE
CLASSES = ["a", "b", "c", "d", "e"]


def _index(source_key: str = "") -> CacheIndex:
    return CacheIndex(benchmark="synthetic", variant=None, classes=list(CLASSES), num_points=N_POINTS,
                      channels=CHANNELS, up_axis="y", protocol="synthetic test data", source="nowhere",
                      source_key=source_key)


def _points(i: int) -> np.ndarray:
    """Deterministic, item-specific synthetic points."""
    return (np.arange(N_POINTS * CHANNELS, dtype=np.float32).reshape(N_POINTS, CHANNELS) + i * 1000.0) / 7.0


NAMES = [f"item-{i:04d}" for i in range(N_ITEMS)]


def _label(i: int) -> int:
    return (i * 3) % len(CLASSES)


class Maker:
    """A ``make`` callable that counts its calls and can fail at one item."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.calls: list[int] = []
        self.fail_at = fail_at

    def __call__(self, i: int) -> Sample:
        if i == self.fail_at:
            raise RuntimeError(f"synthetic failure at item {i}")
        self.calls.append(i)
        return Sample(_points(i), _label(i), NAMES[i])


def _recorder() -> tuple[list[tuple[int, bool]], Callable[[int, bool], None]]:
    seen: list[tuple[int, bool]] = []
    return seen, lambda i, skipped: seen.append((i, skipped))


def _check_contents(dest: Path) -> None:
    ds = CachedPoints(dest)
    assert len(ds) == N_ITEMS
    assert ds.names == NAMES
    np.testing.assert_array_equal(ds.labels, [_label(i) for i in range(N_ITEMS)])
    for i in (0, 1, 511, 512, 513, 1023, 1024, 1099):
        pts, label, name = ds[i]
        assert pts.dtype == np.float32 and pts.shape == (N_POINTS, CHANNELS)
        np.testing.assert_array_equal(pts, _points(i))
        assert label == _label(i) and name == NAMES[i]


def test_build_and_read_back_three_shards(tmp_path: Path) -> None:
    dest = tmp_path / "synth"
    make = Maker()
    seen, on_item = _recorder()
    index = build_cache(dest, _index(), NAMES, make, on_item=on_item)
    assert make.calls == list(range(N_ITEMS))
    assert seen == [(i, False) for i in range(N_ITEMS)]
    assert is_complete(dest)
    assert not (tmp_path / "synth.partial").exists()
    assert index.count == N_ITEMS

    raw = json.loads((dest / INDEX_NAME).read_text())
    assert raw["format"] == CACHE_FORMAT
    assert raw["count"] == N_ITEMS and raw["num_points"] == N_POINTS and raw["channels"] == CHANNELS
    assert raw["benchmark"] == "synthetic" and raw["classes"] == CLASSES and raw["up_axis"] == "y"
    assert raw["protocol"] == "synthetic test data" and raw["source"] == "nowhere" and raw["variant"] is None
    assert [s["count"] for s in raw["shards"]] == [512, 512, 76]
    data_dirs = [p.name for p in dest.iterdir() if p.is_dir()]
    assert len(data_dirs) == 1 and data_dirs[0].startswith("data-")  # one build, committed as one folder
    assert [s["points"] for s in raw["shards"]] == [f"{data_dirs[0]}/shard-{k:05d}.points.npy" for k in range(3)]
    for s in raw["shards"]:
        for key in ("points", "labels", "names"):
            assert (dest / s[key]).is_file()
    assert sorted(p.name for p in dest.iterdir()) == sorted([INDEX_NAME, data_dirs[0]])
    assert not [p for p in dest.rglob("*") if p.name.endswith(".tmp") or p.name == "build.json"]
    shard = np.load(dest / raw["shards"][2]["points"])
    assert shard.shape == (76, N_POINTS, CHANNELS) and shard.dtype == np.float32
    assert np.load(dest / raw["shards"][0]["labels"]).dtype == np.int64
    assert read_index(dest) == index

    _check_contents(dest)
    ds = CachedPoints(dest)
    with pytest.raises(IndexError):
        ds[N_ITEMS]
    with pytest.raises(IndexError):
        ds[-1]


def test_crash_leaves_partial_and_rerun_resumes(tmp_path: Path) -> None:
    dest = tmp_path / "synth"
    partial = tmp_path / "synth.partial"
    first = Maker(fail_at=700)
    with pytest.raises(RuntimeError, match="item 700"):
        build_cache(dest, _index(), NAMES, first)
    assert not dest.exists()
    assert partial.is_dir()
    assert (partial / "shard-00000.names.json").is_file()
    assert not (partial / "shard-00001.names.json").exists()
    assert not (partial / INDEX_NAME).exists()
    assert first.calls == list(range(700))

    with pytest.raises(CacheError, match="interrupted"):
        read_index(dest)
    with pytest.raises(CacheError):
        CachedPoints(dest)

    second = Maker()
    seen, on_item = _recorder()
    build_cache(dest, _index(), NAMES, second, on_item=on_item)
    assert second.calls == list(range(512, N_ITEMS))  # shard 0 is kept, not rebuilt
    assert seen == [(i, i < 512) for i in range(N_ITEMS)]
    assert dest.is_dir() and not partial.exists()
    _check_contents(dest)

    third = Maker()
    seen, on_item = _recorder()
    again = build_cache(dest, _index(), NAMES, third, on_item=on_item)
    assert third.calls == [] and seen == []
    assert again == read_index(dest)
    _check_contents(dest)


def test_small_shard_size_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache_mod, "SHARD_SIZE", 100)
    dest = tmp_path / "synth"
    with pytest.raises(RuntimeError):
        build_cache(dest, _index(), NAMES, Maker(fail_at=450))
    assert sorted(p.name for p in (tmp_path / "synth.partial").glob("*.names.json")) == \
        [f"shard-{k:05d}.names.json" for k in range(4)]
    make = Maker()
    index = build_cache(dest, _index(), NAMES, make)
    assert make.calls == list(range(400, N_ITEMS))
    assert len(index.shards) == 11 and [s["count"] for s in index.shards] == [100] * 11
    _check_contents(dest)


def test_empty_item_list(tmp_path: Path) -> None:
    dest = tmp_path / "empty"
    index = build_cache(dest, _index(), [], Maker())
    assert index.count == 0 and index.shards == []
    ds = CachedPoints(dest)
    assert len(ds) == 0 and ds.names == [] and len(ds.labels) == 0


@pytest.mark.parametrize("shape", [(N_POINTS - 1, CHANNELS), (N_POINTS, CHANNELS + 3), (N_POINTS * CHANNELS,)])
def test_wrong_point_shape_is_a_cache_error(tmp_path: Path, shape: tuple[int, ...]) -> None:
    dest = tmp_path / "synth"

    def make(i: int) -> Sample:
        pts = _points(i) if i != 3 else np.zeros(shape, np.float32)
        return Sample(pts, 0, NAMES[i])

    with pytest.raises(CacheError, match=r"item-0003.*shape") as info:
        build_cache(dest, _index(), NAMES[:10], make)
    assert isinstance(info.value, VitlensError)
    assert not dest.exists()


def test_read_index_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(CacheError, match="vitlens prepare") as info:
        read_index(tmp_path / "nothing")
    assert "interrupted" not in str(info.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CacheError):
        read_index(tmp_path / "empty")


def test_read_index_partial_folder_mentions_interrupted_run(tmp_path: Path) -> None:
    (tmp_path / "synth.partial").mkdir()
    with pytest.raises(CacheError, match=r"interrupted run.*\.partial"):
        read_index(tmp_path / "synth")


def test_read_index_foreign_format_version(tmp_path: Path) -> None:
    dest = tmp_path / "synth"
    build_cache(dest, _index(), NAMES[:5], Maker())
    raw = json.loads((dest / INDEX_NAME).read_text())
    raw["format"] = "vitlens-cache/999"
    (dest / INDEX_NAME).write_text(json.dumps(raw))
    with pytest.raises(CacheError, match="vitlens-cache/999"):
        read_index(dest)
    with pytest.raises(CacheError):
        CachedPoints(dest)


def test_read_index_corrupt_json_is_a_cache_error(tmp_path: Path) -> None:
    dest = tmp_path / "synth"
    dest.mkdir()
    (dest / INDEX_NAME).write_text("{not json")
    with pytest.raises(CacheError):
        read_index(dest)


def test_foreign_format_cache_is_rebuilt(tmp_path: Path) -> None:
    dest = tmp_path / "synth"
    build_cache(dest, _index(), NAMES[:5], Maker())
    raw = json.loads((dest / INDEX_NAME).read_text())
    raw["format"] = "vitlens-cache/0"
    (dest / INDEX_NAME).write_text(json.dumps(raw))
    make = Maker()
    index = build_cache(dest, _index(), NAMES[:5], make)
    assert make.calls == list(range(5))
    assert index.format == CACHE_FORMAT and read_index(dest).format == CACHE_FORMAT


def test_stale_partial_shard_with_other_items_is_redone(tmp_path: Path) -> None:
    """A .partial left by a run over a different item list must not leak its shards into this one."""
    dest = tmp_path / "synth"
    other = [f"other-{i:04d}" for i in range(600)]

    def make_other(i: int) -> Sample:
        if i >= 512:
            raise RuntimeError("stop")
        return Sample(_points(i) + 1, 0, other[i])

    with pytest.raises(RuntimeError):
        build_cache(dest, _index(), other, make_other)
    assert (tmp_path / "synth.partial" / "shard-00000.names.json").is_file()
    make = Maker()
    build_cache(dest, _index(), NAMES, make)
    assert make.calls == list(range(N_ITEMS))
    _check_contents(dest)


def test_cached_points_pickles_and_maps_lazily(tmp_path: Path) -> None:
    dest = tmp_path / "synth"
    build_cache(dest, _index(), NAMES, Maker())
    ds = CachedPoints(dest)
    assert ds._points == [None, None, None]  # nothing mapped until an item is read
    ds[600]
    assert ds._points[0] is None and ds._points[2] is None
    mapped = ds._points[1]
    assert isinstance(mapped, np.memmap)

    clone = pickle.loads(pickle.dumps(ds))
    assert clone._points == [None, None, None]  # each worker maps its own view
    assert ds._points[1] is mapped  # pickling does not touch the original
    assert len(clone) == N_ITEMS and clone.names == NAMES
    np.testing.assert_array_equal(clone.labels, ds.labels)
    for i in (0, 600, 1099):
        pts, label, name = clone[i]
        np.testing.assert_array_equal(pts, _points(i))
        assert (label, name) == (_label(i), NAMES[i])
    assert all(isinstance(m, np.memmap) for m in clone._points)

    pts, _, _ = ds[5]
    pts[:] = -1  # items are copies: writing to one cannot touch the read-only map
    np.testing.assert_array_equal(ds[5][0], _points(5))


# --- another release: rebuilt, the previous cache intact until the new one is committed -------------------


class OtherMaker(Maker):
    """Items of another release of the same dataset: other points and labels under the same names."""

    def __call__(self, i: int) -> Sample:
        if i == self.fail_at:
            raise RuntimeError(f"synthetic failure at item {i}")
        self.calls.append(i)
        return Sample(-_points(i), (_label(i) + 1) % len(CLASSES), NAMES[i])


def test_other_source_is_rebuilt_and_previous_cache_survives_a_failed_rebuild(tmp_path: Path) -> None:
    dest = tmp_path / "synth"
    build_cache(dest, _index("release-a"), NAMES, Maker())
    first_dirs = {p.name for p in dest.iterdir() if p.is_dir()}
    assert build_cache(dest, _index("release-a"), NAMES, Maker(fail_at=0)).source_key == "release-a"  # reused

    with pytest.raises(RuntimeError, match="item 600"):
        build_cache(dest, _index("release-b"), NAMES, OtherMaker(fail_at=600))
    _check_contents(dest)  # still release A, complete and readable
    assert read_index(dest).source_key == "release-a"

    make = OtherMaker()
    index = build_cache(dest, _index("release-b"), NAMES, make)
    assert make.calls == list(range(512, N_ITEMS))  # release B's finished shard 0 was resumed
    assert index.source_key == "release-b" and read_index(dest).source_key == "release-b"
    ds = CachedPoints(dest)
    for i in (0, 700, 1099):
        pts, label, _ = ds[i]
        np.testing.assert_array_equal(pts, -_points(i))
        assert label == (_label(i) + 1) % len(CLASSES)
    assert not first_dirs & {p.name for p in dest.iterdir()}  # release A's shards are gone
    assert not (tmp_path / "synth.partial").exists()


def test_partial_of_another_source_is_not_resumed(tmp_path: Path) -> None:
    dest = tmp_path / "synth"
    with pytest.raises(RuntimeError):
        build_cache(dest, _index("release-a"), NAMES, Maker(fail_at=600))
    assert (tmp_path / "synth.partial" / "shard-00000.names.json").is_file()
    make = OtherMaker()
    build_cache(dest, _index("release-b"), NAMES, make)
    assert make.calls == list(range(N_ITEMS))  # same names, other release: nothing of A is reused
    np.testing.assert_array_equal(CachedPoints(dest)[3][0], -_points(3))


# --- a damaged cache: one error naming the file, and build_cache rebuilds it ------------------------------


def _shard(dest: Path, key: str, n: int = 0) -> Path:
    return dest / json.loads((dest / INDEX_NAME).read_text())["shards"][n][key]


def _edit_index(dest: Path, edit: Callable[[dict], None]) -> None:
    raw = json.loads((dest / INDEX_NAME).read_text())
    edit(raw)
    (dest / INDEX_NAME).write_text(json.dumps(raw))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-7])


def _mkfifo_over(path: Path) -> None:
    import os

    path.unlink()
    os.mkfifo(path)


DAMAGE: dict[str, tuple[Callable[[Path], Path], str]] = {
    "missing-points": (lambda d: (_shard(d, "points").unlink(), _shard(d, "points"))[1], "shard file missing"),
    "missing-names": (lambda d: (_shard(d, "names").unlink(), _shard(d, "names"))[1], "shard file missing"),
    "truncated-points": (lambda d: (_truncate(_shard(d, "points")), _shard(d, "points"))[1], "truncated"),
    "truncated-labels": (lambda d: (_truncate(_shard(d, "labels")), _shard(d, "labels"))[1], "truncated"),
    "garbage-points": (lambda d: (_shard(d, "points").write_bytes(b"junk"), _shard(d, "points"))[1],
                       "not a readable .npy"),
    "count-lies": (lambda d: (_edit_index(d, lambda r: r.update(count=r["count"] + 1)), d / INDEX_NAME)[1],
                   "its shards hold"),
    "shard-count-lies": (lambda d: (_edit_index(d, lambda r: (r["shards"][0].update(count=4), r.update(count=4))),
                                    _shard(d, "points"))[1], "the index says"),
    "num-points-lies": (lambda d: (_edit_index(d, lambda r: r.update(num_points=N_POINTS * 2)),
                                   _shard(d, "points"))[1], "the index says"),
    "names-wrong-length": (lambda d: (_shard(d, "names").write_text('["only-one"]'), _shard(d, "names"))[1],
                           "expected a list of 5 names"),
    "labels-out-of-range": (lambda d: (_edit_index(d, lambda r: r.update(classes=["a"])),
                                       _shard(d, "labels"))[1], "labels outside 0..0"),
    "path-outside-cache": (lambda d: (_edit_index(d, lambda r: r["shards"][0].update(points="../elsewhere.npy")),
                                      d / INDEX_NAME)[1], "outside the cache"),
    "fifo-shard": (lambda d: (_mkfifo_over(_shard(d, "points")), _shard(d, "points"))[1], "not a regular file"),
    "wrong-type": (lambda d: (_edit_index(d, lambda r: r.update(num_points="8192")), d / INDEX_NAME)[1],
                   "'num_points' must be a positive integer"),
    "unknown-key": (lambda d: (_edit_index(d, lambda r: r.update(colour="red")), d / INDEX_NAME)[1],
                    "unknown key(s) colour"),
    "foreign-version": (lambda d: (_edit_index(d, lambda r: r.update(format="vitlens-cache/7")),
                                   d / INDEX_NAME)[1], "vitlens-cache/7"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_cache_names_the_file_and_is_rebuilt(tmp_path: Path, damage: str) -> None:
    dest = tmp_path / "synth"
    build_cache(dest, _index(), NAMES[:5], Maker())
    make_damage, fragment = DAMAGE[damage]
    culprit = make_damage(dest)
    with pytest.raises(CacheError) as info:
        CachedPoints(dest)  # must not hang on a FIFO nor read past a truncated file
    message = str(info.value)
    assert message.startswith(f"{culprit}: ") and fragment in message and "vitlens prepare" in message
    assert valid_index(dest) is None
    make = Maker()
    build_cache(dest, _index(), NAMES[:5], make)  # the cache promised a rebuild: it keeps that promise
    assert make.calls == list(range(5))
    assert len(CachedPoints(dest)) == 5 and check_cache(dest)[1] == NAMES[:5]


def test_tidy_removes_leftovers_of_killed_runs_only(tmp_path: Path) -> None:
    dest = tmp_path / "synth"
    index = build_cache(dest, _index(), NAMES[:5], Maker())
    (dest / "data-deadbeef").mkdir()  # a build moved in by a run killed before its index was written
    (dest / "data-deadbeef" / "shard-00000.points.npy").write_bytes(b"x")
    (dest / f".{INDEX_NAME}.123-abc.tmp").write_text("{")  # a killed index write
    (dest / "shard-00000.points.npy").write_bytes(b"x")  # an unreferenced shard of the flat layout
    (dest / "notes.txt").write_text("the user's own file")
    tidy(dest, index)
    kept = sorted(p.name for p in dest.iterdir())
    assert kept == sorted([INDEX_NAME, Path(index.shards[0]["points"]).parts[0], "notes.txt"])
    _ = CachedPoints(dest)


def test_flat_layout_of_earlier_versions_is_read_and_replaced(tmp_path: Path) -> None:
    dest = tmp_path / "synth"
    build_cache(dest, _index(), NAMES[:5], Maker())
    data_dir = next(p for p in dest.iterdir() if p.is_dir())
    for f in data_dir.iterdir():  # the layout vitlens wrote before builds were committed as one folder
        f.rename(dest / f.name)
    data_dir.rmdir()
    _edit_index(dest, lambda r: [s.update({k: Path(v).name for k, v in s.items() if isinstance(v, str)})
                                 for s in r["shards"]])
    assert CachedPoints(dest).names == NAMES[:5]
    build_cache(dest, _index("new-release"), NAMES[:5], OtherMaker())
    assert not list(dest.glob("shard-*"))
    np.testing.assert_array_equal(CachedPoints(dest)[0][0], -_points(0))


def _tensor_index(**kw) -> CacheIndex:
    return CacheIndex.for_tensors("synthetic-audio", None, ["a", "b"], "audio", (3, 4, 5), {"mel_bins": 5},
                                  "synthetic", **kw)


def test_cache_of_preprocessed_tensors_round_trips(tmp_path: Path) -> None:
    items = np.arange(6 * 60, dtype=np.float32).reshape(6, 3, 4, 5)
    build_cache(tmp_path / "c", _tensor_index(prompts=["a", "b", "c"], prompt_to_class=[0, 1, 1]),
                [f"n{i}" for i in range(6)], lambda i: Sample(items[i], i % 2, f"n{i}"))
    ds = CachedPoints(tmp_path / "c")
    assert ds.index.modality == "audio" and ds.index.shape == (3, 4, 5) and ds.index.contract == {"mel_bins": 5}
    assert ds.index.prompt_names == ["a", "b", "c"]
    np.testing.assert_array_equal(ds[4][0], items[4])
    with pytest.raises(CacheError, match=r"shape \(4, 5\), expected \(3, 4, 5\)"):
        build_cache(tmp_path / "d", _tensor_index(), ["x"], lambda i: Sample(items[0, 0], 0, "x"))


@pytest.mark.parametrize("edit, key", [({"prompt_to_class": [0, 2]}, "prompt_to_class"),
                                       ({"item_shape": [3, 0, 5]}, "item_shape"),
                                       ({"groups": {"fold": {"n0": 1}}}, "groups")])
def test_index_of_tensors_with_bad_fields_is_refused(tmp_path: Path, edit: dict, key: str) -> None:
    build_cache(tmp_path / "c", _tensor_index(prompts=["a", "b"], prompt_to_class=[0, 1]), ["n0"],
                lambda i: Sample(np.zeros((3, 4, 5), np.float32), 0, "n0"))
    path = tmp_path / "c" / INDEX_NAME
    path.write_text(json.dumps({**json.loads(path.read_text()), **edit}))
    with pytest.raises(CacheError, match=f"'{key}' must be"):
        read_index(tmp_path / "c")
