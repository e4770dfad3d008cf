"""Bad inputs to `vitlens index` and `vitlens search`: one clean line, the documented exit code, nothing
half-written, previous index intact."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from .harness import Snapshot, assert_clean_failure, assert_no_temp_files, invoke


@pytest.fixture(scope="module")
def good_index(fixtures, tmp_path_factory) -> Path:
    from vitlens_cli.retrieval import Index

    folder = tmp_path_factory.mktemp("robust-index") / "idx"
    Index.build([fixtures / "meshes" / "chair_0002.off", fixtures / "meshes" / "toilet_0001.off",
                 fixtures / "meshes" / "airplane_0001.resampled.txt"], folder, shard_files=2)
    return folder


@pytest.fixture
def index(good_index, tmp_path) -> Path:
    copy = tmp_path / "idx"
    shutil.copytree(good_index, copy)
    return copy


def _shard(index: Path) -> Path:
    return index / json.loads((index / "index.json").read_text())["shards"][0]["file"]


def _overwrite_tail(path: Path, n: int = 64) -> None:
    data = bytearray(path.read_bytes())
    data[-n:] = b"\0" * n
    path.write_bytes(bytes(data))


# (id, damage(index, tmp) -> args, names in the error line)
def _missing_folder(index, tmp):
    return ["search", tmp / "nowhere", "--text", "a chair"], ["nowhere", "no such index folder"]


def _file_not_folder(index, tmp):
    (tmp / "plain.txt").write_text("x")
    return ["search", tmp / "plain.txt", "--text", "a"], ["plain.txt", "not an index folder"]


def _empty_folder(index, tmp):
    (tmp / "empty").mkdir()
    return ["search", tmp / "empty", "--text", "a"], ["empty", "not a vitlens index"]


def _interrupted(index, tmp):
    (index / "index.json").unlink()
    return ["search", index, "--text", "a"], ["interrupted build"]


def _index_json_garbage(index, tmp):
    (index / "index.json").write_text("{not json")
    return ["search", index, "--text", "a"], ["index.json", "corrupted"]


def _index_json_foreign(index, tmp):
    (index / "index.json").write_text(json.dumps({"format": "something-else/9"}))
    return ["search", index, "--text", "a"], ["index.json", "something-else/9"]


def _shard_missing(index, tmp):
    shard = _shard(index)
    shard.unlink()
    return ["search", index, "--text", "a"], [shard.name, "missing"]


def _shard_truncated(index, tmp):
    shard = _shard(index)
    shard.write_bytes(shard.read_bytes()[:100])
    return ["search", index, "--text", "a"], [shard.name, "size differs"]


def _shard_corrupted(index, tmp):
    shard = _shard(index)
    _overwrite_tail(shard)
    return ["search", index, "--text", "a"], [shard.name, "corrupted"]


def _ann_corrupted(index, tmp):
    _overwrite_tail(index / "ann.faiss", 200)
    return ["search", index, "--text", "a"], ["ann.faiss", "corrupted"]


def _info_detects_flipped_bytes(index, tmp):
    shard = _shard(index)
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    return ["index", "info", index], [shard.name, "sha256 differs"]


def _model_mismatch(index, tmp):
    return ["search", index, "--text", "a", "--model", "tiny-rgb"], ["tiny-rgb", "other weights"]


def _queries_file_missing(index, tmp):
    return ["search", index, "--queries", tmp / "q.txt"], ["q.txt", "not found"]


def _queries_file_empty(index, tmp):
    (tmp / "q.txt").write_text("# only a comment\n\n")
    return ["search", index, "--queries", tmp / "q.txt"], ["q.txt", "no queries"]


def _queries_file_binary(index, tmp):
    (tmp / "q.txt").write_bytes(b"\xff\xfe\x00garbage")
    return ["search", index, "--queries", tmp / "q.txt"], ["q.txt", "not UTF-8"]


def _k_zero(index, tmp):
    return ["search", index, "--text", "a", "-k", "0"], ["-k", "at least 1"]


def _k_negative(index, tmp):
    return ["search", index, "--text", "a", "-k", "-5"], ["-k", "-5"]


def _unknown_modality_filter(index, tmp):
    return ["search", index, "--text", "a", "--modality-filter", "smell"], ["smell", "unknown modality"]


def _no_query(index, tmp):
    return ["search", index], ["give a query"]


def _html_is_folder(index, tmp):
    (tmp / "out.html").mkdir()
    return ["search", index, "--text", "a", "--html", tmp / "out.html"], ["out.html", ".html"]


def _build_into_file(index, tmp):
    (tmp / "taken").write_text("x")
    return ["index", "build", index.parent / "nothing.ply", "--out", tmp / "taken"], ["taken", "is a file"]


def _build_into_foreign_folder(index, tmp):
    (tmp / "docs").mkdir()
    (tmp / "docs" / "notes.md").write_text("mine")
    return ["index", "build", tmp / "x.ply", "--out", tmp / "docs"], ["docs", "not an index"]


def _build_other_model(index, tmp):
    return (["index", "build", index.parent / "x.ply", "--out", index, "--model", "tiny-rgb"],
            ["was built with model 'tiny'"])


def _build_unknown_modality(index, tmp):
    return ["index", "build", tmp, "--out", tmp / "new", "--modality", "smell"], ["smell", "unknown modality"]


def _build_bad_ann(index, tmp):
    return ["index", "build", tmp, "--out", tmp / "new", "--ann", "lsh"], ["--ann", "lsh"]


def _build_zero_batch(index, tmp):
    return ["index", "build", tmp, "--out", tmp / "new", "--batch-size", "0"], ["--batch-size", "at least 1"]


def _build_zero_shard_files(index, tmp):
    return ["index", "build", tmp, "--out", tmp / "new", "--shard-files", "0"], ["--shard-files"]


def _add_to_non_index(index, tmp):
    (tmp / "plain").mkdir()
    return ["index", "add", tmp / "plain", tmp], ["plain", "not a vitlens index"]


def _info_on_interrupted(index, tmp):
    (index / "index.json").unlink()
    return ["index", "info", index], ["interrupted build"]


FATAL = [_missing_folder, _file_not_folder, _empty_folder, _interrupted, _index_json_garbage, _index_json_foreign,
         _shard_missing, _shard_truncated, _shard_corrupted, _ann_corrupted, _info_detects_flipped_bytes,
         _model_mismatch, _queries_file_missing, _queries_file_empty, _queries_file_binary, _k_zero, _k_negative,
         _unknown_modality_filter, _no_query, _html_is_folder, _build_into_file, _build_into_foreign_folder,
         _build_other_model, _build_unknown_modality, _build_bad_ann, _build_zero_batch, _build_zero_shard_files,
         _add_to_non_index, _info_on_interrupted]


@pytest.mark.parametrize("case", FATAL, ids=[c.__name__.lstrip("_") for c in FATAL])
def test_fatal_errors_are_one_line(case, index, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    args, names = case(index, work)
    before_index, before_work = Snapshot(index), Snapshot(work)
    outcome = invoke(args, timeout=120)
    assert_clean_failure(outcome, exit_code=2, names=[str(n) for n in names])
    before_index.assert_unchanged()
    before_work.assert_unchanged()
    assert_no_temp_files(index)
    assert_no_temp_files(work)
    assert not (work / "new").exists()


def test_unreadable_query_files_are_skipped_and_the_rest_answered(index, tmp_path, fixtures):
    bad = tmp_path / "broken.ply"
    bad.write_text("ply\nformat ascii 1.0\nelement vertex 9\nend_header\n1 2\n")
    outcome = invoke(["search", index, "--file", bad, "--text", "a chair", "--json"], timeout=120)
    assert_clean_failure(outcome, exit_code=1, names=["broken.ply"], prefix="skipped:")
    answered = json.loads(outcome.stdout)["queries"]
    assert [q["query"] for q in answered] == ["a chair"] and len(answered[0]["results"]) == 3


@pytest.mark.parametrize("name,content,reason", [
    ("missing.off", None, "no such file"),
    ("shape.unknownext", b"1 2 3\n", "unsupported file type"),
    ("empty.ply", b"", "empty file"),
], ids=["missing", "unknown-extension", "empty"])
def test_bad_query_file_kinds_are_skipped(index, tmp_path, name, content, reason):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    outcome = invoke(["search", index, "--file", path, "--text", "a table"], timeout=120)
    assert_clean_failure(outcome, exit_code=1, names=[name, reason], prefix="skipped:")
    assert "a table" in outcome.stdout


def test_build_skips_bad_files_and_indexes_the_good_ones(fixtures, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(fixtures / "meshes" / "chair_0002.off", data / "chair.off")
    (data / "broken.off").write_text("OFF\n3 1 0\n0 0 0\n")
    out = tmp_path / "idx"
    outcome = invoke(["index", "build", data, "--out", out, "--json"], timeout=300)
    assert_clean_failure(outcome, exit_code=1, names=["broken.off"], prefix="skipped:")
    report = json.loads(outcome.stdout)
    assert report["rows"] == 1 and [f["path"] for f in report["failures"]] == [str(data / "broken.off")]
    assert_no_temp_files(out)
    hit = invoke(["search", out, "--file", data / "chair.off", "-k", "1", "--json"], timeout=120)
    assert hit.exit_code == 0, hit.stderr
    assert json.loads(hit.stdout)["queries"][0]["results"][0]["path"] == str(data / "chair.off")
