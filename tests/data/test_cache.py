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
                                    build_cache, is_complete, read_index)
from vitlens_cli.errors import VitlensError

N_POINTS, CHANNELS = 16, 3
N_ITEMS = 1_100  # 3 shards of 512 with the real SHARD_SIZE
CLASSES = ["a", "b", "c", "d", "e"]


def _index() -> CacheIndex:
    return CacheIndex(benchmark="synthetic", variant=None, classes=list(CLASSES), num_points=N_POINTS,
                      channels=CHANNELS, up_axis="y", protocol="synthetic test data", source="nowhere")


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
    assert [s["points"] for s in raw["shards"]] == [f"shard-{k:05d}.points.npy" for k in range(3)]
    for s in raw["shards"]:
        for key in ("points", "labels", "names"):
            assert (dest / s[key]).is_file()
    assert not [p for p in dest.iterdir() if p.name.endswith(".tmp")]  # no atomic-write leftovers
    shard = np.load(dest / "shard-00002.points.npy")
    assert shard.shape == (76, N_POINTS, CHANNELS) and shard.dtype == np.float32
    assert np.load(dest / "shard-00000.labels.npy").dtype == np.int64
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
