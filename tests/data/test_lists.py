"""Clotho, AudioCaps, AudioSet and VGGSound lists: each layout the official code reads, file look-up by trailing
path components, presence.csv, idempotent re-runs, and the errors a wrong release gets."""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

from tests.data.list_releases import (
    CLOTHO,
    audiocaps_release,
    audioset_list,
    clotho_release,
    clotho_vitlens,
    touch_and_go,
    vggsound_list,
    zip_folder,
)
from vitlens_cli.data import audio_labels
from vitlens_cli.data.listed import PRESENCE_CSV, FileIndex, read_listed
from vitlens_cli.data.lists import build_listed, open_prepared, prepare_listed
from vitlens_cli.errors import VitlensError


def _missing_rows(dest: Path) -> list[dict]:
    """The rows of presence.csv for files not found, without the empty path column."""
    with open(dest / PRESENCE_CSV, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert all((r["present"] == "1") == bool(r["path"]) for r in rows)
    return [{k: r[k] for k in ("id", "expected_path", "reason")} for r in rows if r["present"] == "0"]


def test_clotho_vitlens_layout_from_an_archive(tmp_path):
    archive = zip_folder(clotho_vitlens(tmp_path / "src"), tmp_path / "clotho.zip")
    summary = prepare_listed("clotho", tmp_path / "root", from_path=archive)
    assert (summary.listed, summary.present, summary.missing, summary.already_done) == (4, 3, 1, False)
    listed = read_listed(summary.dest)
    assert [i.id for i in listed.items] == ["1", "2", "3", "4"]
    # every caption of the texts JSON, in order, duplicates kept
    assert [i.captions for i in listed.items] == [CLOTHO[k] for k in ("1", "2", "3", "4")]
    # evaluation/1.flac, never the validation clip of the same name
    assert Path(listed.items[0].path).parts[-3:] == ("audio", "evaluation", "1.flac")
    assert _missing_rows(summary.dest) == [
        {"id": "4", "expected_path": "clotho/audio/evaluation/4.flac", "reason": "not found"}]
    assert listed.protocol["layout"] == "ViT-Lens/ONE-PEACE: clotho_evaluation_new.tsv + evaluation_texts.json"
    again = prepare_listed("clotho", tmp_path / "root", from_path=archive)
    assert again.already_done and again.present == 3


def test_a_clip_only_in_another_split_is_missing_not_taken(tmp_path):
    base = clotho_vitlens(tmp_path / "src")
    (base / "audio" / "evaluation" / "1.flac").unlink()
    listed = build_listed("clotho", tmp_path / "src", "test")
    assert listed.items[0].path is None and listed.items[0].reason == "not found"


def test_clotho_release_csv(tmp_path):
    listed = build_listed("clotho", clotho_release(tmp_path / "c"), "test")
    assert [(i.id, i.path is not None, len(i.captions)) for i in listed.items] == [
        ("Santa Motor.wav", True, 5), ("Gone.wav", False, 5)]
    assert listed.protocol["layout"] == "clotho release: clotho_captions_evaluation.csv"


def test_audiocaps_release_groups_captions_by_youtube_id_and_finds_y_prefixed_files(tmp_path):
    listed = build_listed("audiocaps", audiocaps_release(tmp_path / "a"), "test")
    assert [(i.id, i.captions) for i in listed.items] == [
        ("7fmOlUlwoNg", ["Constant rattling noise", "Vibrations and rattling"]),
        ("6BJ455B1aAs", ["A rocket flies by"]), ("missingclip", ["nobody has this one"])]
    assert Path(listed.items[0].path).name == "Y7fmOlUlwoNg_20.000_30.000.flac"
    assert Path(listed.items[1].path).name == "6BJ455B1aAs.flac"
    assert listed.items[2].path is None


def test_texts_json_without_tsv_clip_drops_and_counts_its_captions(tmp_path):
    base = clotho_vitlens(tmp_path / "src", with_missing=False)
    texts = json.loads((base / "evaluation_texts.json").read_text())
    texts["99"] = ["an orphan caption", "another"]
    (base / "evaluation_texts.json").write_text(json.dumps(texts))
    listed = build_listed("clotho", tmp_path / "src", "test")
    assert listed.protocol["captions_dropped_without_clip"] == 2
    assert len(listed.items) == 3


@pytest.mark.parametrize("breakage, needle", [
    (lambda b: (b / "evaluation_texts.json").unlink(), "not its captions clotho_evaluation_texts.json"),
    (lambda b: (b / "clotho_evaluation_new.tsv").write_text("id\taudio\n1\tx.flac\n"), "no column 'uniq_id'"),
    (lambda b: (b / "clotho_evaluation_new.tsv").write_text("uniq_id\taudio\n1\tx.flac\n1\ty.flac\n"),
     "'1' is listed twice"),
    (lambda b: (b / "evaluation_texts.json").write_text('{"1": "one caption"}'), "list of caption strings"),
])
def test_a_damaged_clotho_release_is_one_error_naming_the_file(tmp_path, breakage, needle):
    base = clotho_vitlens(tmp_path / "src")
    breakage(base)
    with pytest.raises(VitlensError, match=needle):
        build_listed("clotho", tmp_path / "src", "test")


def test_another_benchmarks_release_is_refused_naming_both_layouts(tmp_path):
    clotho_vitlens(tmp_path / "src")
    with pytest.raises(VitlensError, match="no audiocaps test split found: expected audiocaps_test_new.tsv"):
        build_listed("audiocaps", tmp_path / "src", "test")


def test_vggsound_presence_csv_and_labels(tmp_path):
    names = audio_labels.classes("vggsound")
    entries = [("---g-f_I2yQ_1", 115, names[115]), ("--U7joUcTCo_0", 203, names[203]), ("gone_7", 9, names[9])]
    root = vggsound_list(tmp_path / "v", entries, present={"---g-f_I2yQ_1", "--U7joUcTCo_0"})
    summary = prepare_listed("vggsound", tmp_path / "root", from_path=root)
    assert (summary.present, summary.missing) == (2, 1)
    listed = open_prepared("vggsound", tmp_path / "root")
    assert [i.labels for i in listed.items] == [[115], [203], [9]]
    assert listed.classes == names and len(names) == 309
    assert _missing_rows(summary.dest) == [
        {"id": "gone_7", "expected_path": "vggsound/audio/test/gone_7.flac", "reason": "not found"}]


def test_vggsound_list_of_another_label_order_is_refused(tmp_path):
    names = audio_labels.classes("vggsound")
    root = vggsound_list(tmp_path / "v", [("a_1", 0, names[1])], present=set())
    with pytest.raises(VitlensError, match="entry 0: class_name .* another label order"):
        build_listed("vggsound", root, "val")


def test_audioset_multilabel_list(tmp_path):
    root = audioset_list(tmp_path / "s", [("aaa", [0, 137]), ("bbb", [72]), ("ccc", [5])], present={"aaa", "bbb"})
    listed = build_listed("audioset", root, "val")
    assert [i.labels for i in listed.items] == [[0, 137], [72], [5]]
    assert [i.path is not None for i in listed.items] == [True, True, False]
    classes = audio_labels.classes("audioset")
    assert len(classes) == 527 and classes[0] == "speech" and classes[1] == "male speech, man speaking"


@pytest.mark.parametrize("labels, needle", [([527], "outside \\[0, 527\\)"), (["speech"], "class indices"),
                                            ([], "no class_labels")])
def test_audioset_bad_labels_name_the_entry(tmp_path, labels, needle):
    root = audioset_list(tmp_path / "s", [("aaa", labels)], present=set())
    with pytest.raises(VitlensError, match=f"entry 0: .*{needle}"):
        build_listed("audioset", root, "val")


def test_audioset_cannot_be_downloaded_and_an_unprepared_eval_names_prepare(tmp_path):
    with pytest.raises(VitlensError, match="audioset cannot be downloaded automatically"):
        prepare_listed("audioset", tmp_path / "root")
    with pytest.raises(VitlensError, match="run `vitlens prepare clotho --from"):
        open_prepared("clotho", tmp_path / "root")


def test_file_index_prefers_the_longest_matching_tail(tmp_path):
    for rel in ("x/audio/test/a.flac", "x/other/a.flac"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"1")
    index = FileIndex(tmp_path)
    assert index.find("vggsound/audio/test/a.flac")[0] == tmp_path / "x/audio/test/a.flac"
    assert index.find("elsewhere/b/a.flac", min_parts=2) == (None, "not found")
    (tmp_path / "x/empty.flac").write_bytes(b"")
    assert FileIndex(tmp_path).find("empty.flac") == (None, "empty file")


@pytest.mark.parametrize("split, labels, present", [
    ("material", [4, 13, 19, 3], [True, True, True, False]),
    ("hard", [0, 1, 0], [True, True, False]),  # the third frame has no hs_label
    ("rough", [1, 0, 1], [True, True, False]),
])
def test_touch_and_go_splits(tmp_path, split, labels, present):
    listed = build_listed("touch-and-go", touch_and_go(tmp_path / "tag"), split)
    assert [i.labels[0] for i in listed.items] == labels
    assert [i.path is not None for i in listed.items] == present
    assert listed.modality == "tactile" and listed.task == "classification"
    # a frame is found only under its own video: 0000000430.jpg exists in both
    for item in listed.present:
        assert item.path.endswith(item.expected)
    assert listed.protocol["entries_without_label"] == (1 if split == "hard" else 0)
    assert len(listed.classes) == {"material": 20, "hard": 2, "rough": 2}[split]
    assert listed.templates == ("tactile_material_2" if split == "material" else "tactile_binary_2")


def test_touch_and_go_list_of_another_label_order_is_refused(tmp_path):
    root = touch_and_go(tmp_path / "tag")
    data = json.loads((root / "test.json").read_text())
    data[1]["material_name"] = "wood"
    (root / "test.json").write_text(json.dumps(data))
    with pytest.raises(VitlensError, match="entry 1: material_name 'wood' but material_label 13 is 'grass'"):
        build_listed("touch-and-go", root, "material")


@pytest.mark.parametrize("bench, split, make, name, what", [
    ("audioset", "val", lambda r: audioset_list(r, [("aaa", [0])], present=set()), "audioset_val.json", "clips"),
    ("touch-and-go", "material", touch_and_go, "test.json", "frames"),
])
def test_a_list_file_that_holds_no_list_is_one_error_naming_it(tmp_path, bench, split, make, name, what):
    root = make(tmp_path / "r")
    (root / name).write_text('{"clips": []}')
    with pytest.raises(VitlensError, match=f"{name}: expected a JSON list of {what}, found dict"):
        build_listed(bench, root, split)


def test_clotho_downloads_the_mirror_without_from_and_drops_a_download_that_is_no_archive(tmp_path, http_server,
                                                                                            monkeypatch):
    from vitlens_cli.data import lists
    from vitlens_cli.data.prepare.extract import ArchiveError

    url, state = http_server
    archive = zip_folder(clotho_vitlens(tmp_path / "src"), tmp_path / "clotho.zip")
    monkeypatch.setitem(lists.URLS, "clotho", f"{url}/clotho.zip")
    monkeypatch.setitem(lists.URLS, "audiocaps", f"{url}/audiocaps.zip")
    state.files["/clotho.zip"] = archive.read_bytes()
    state.files["/audiocaps.zip"] = b"PK\x03\x04 cut short"
    summary = prepare_listed("clotho", tmp_path / "root")
    assert (summary.present, summary.missing) == (3, 1)
    assert (tmp_path / "root" / "_downloads" / "clotho.zip").read_bytes() == archive.read_bytes()
    with pytest.raises(ArchiveError, match="the download was deleted"):
        prepare_listed("audiocaps", tmp_path / "root")
    assert not (tmp_path / "root" / "_downloads" / "audiocaps.zip").exists()


def test_vggsound_without_its_list_uses_the_shipped_copy_of_the_official_one(tmp_path):
    from tests.data.list_releases import write_tone

    root = tmp_path / "v"
    # two clips of the official list, named as the ONE-PEACE archive names them
    write_tone(root / "vggsound" / "audio" / "test" / "---g-f_I2yQ_000001.flac", 300.0)
    write_tone(root / "vggsound" / "audio" / "test" / "-0BIyqJj9ZU_000030.flac", 400.0)
    listed = build_listed("vggsound", root, "val")
    assert len(listed.items) == 15434 and listed.protocol["layout"].endswith("(the copy shipped with vitlens)")
    found = {item.id: item.labels for item in listed.present}
    assert found == {"---g-f_I2yQ_1": [115], "-0BIyqJj9ZU_30": [185]}  # as in the official file
    assert listed.classes[115] == "people marching" and listed.classes[185] == "people belly laughing"


def test_shipped_vggsound_list_equals_the_official_file(fixtures_official_vggsound):
    from vitlens_cli.data.audio_labels import shipped_vggsound

    official = json.loads(fixtures_official_vggsound.read_text())
    assert [(i.id, i.expected, i.labels) for i in shipped_vggsound()] == [
        (e["vid"], e["audio_path"], [e["class_labels"]]) for e in official]


@pytest.fixture
def fixtures_official_vggsound() -> Path:
    path = Path(__file__).resolve().parents[2].parent / "shared" / "official" / "src" / "open_clip" / "modal_audio" / \
        "data" / "vggsound_audio-only_val.json"
    if not path.is_file():
        pytest.skip(f"the official ViT-Lens metadata is not at {path}")
    return path


def test_find_files_progress_has_a_total(tmp_path):
    events: list[tuple[str, int, int | None]] = []
    archive = zip_folder(clotho_vitlens(tmp_path / "src"), tmp_path / "clotho.zip")
    prepare_listed("clotho", tmp_path / "root", from_path=archive,
                   progress=lambda stage, done, total: events.append((stage, done, total)))
    found = [(done, total) for stage, done, total in events if stage == "find files"]
    assert found == [(i, len(CLOTHO)) for i in range(len(CLOTHO) + 1)]


def test_a_killed_extraction_is_cleared_and_an_earlier_one_kept(tmp_path):
    """Prepared lists point into their extraction: an archive of the same name, changed, leaves it in place."""
    root = tmp_path / "root"
    stale = root / "_sources" / ".clotho-0123456789abcdef.x1y2.extracting"
    stale.mkdir(parents=True)
    archive = zip_folder(clotho_vitlens(tmp_path / "src"), tmp_path / "clotho.zip")
    first = read_listed(prepare_listed("clotho", root, from_path=archive).dest)
    assert not stale.exists()
    zip_folder(clotho_vitlens(tmp_path / "src2", with_missing=False), archive)
    os.utime(archive, ns=(1, 1))  # a changed release, whatever the clock's resolution
    second = prepare_listed("clotho", root, from_path=archive)
    assert not second.already_done and second.missing == 0
    assert all(Path(item.path).is_file() for item in first.present)
