"""ESC-50: a small archive laid out as ESC-50-master.zip (audio/*.wav, meta/esc50.csv with the release's seven
columns) goes through `vitlens prepare esc50 --from` and `vitlens eval esc50 --model tiny-omni`; top-1 and
per-fold top-1 equal a recomputation from predictions.parquet; a second run encodes no prompts."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from typer.testing import CliRunner

from tests.data.list_releases import zip_folder
from vitlens_cli.cli.app import app
from vitlens_cli.data import esc50
from vitlens_cli.data.cache import CachedPoints
from vitlens_cli.data.meta import templates
from vitlens_cli.errors import VitlensError
from vitlens_cli.evaluation.report import metrics_from_predictions

runner = CliRunner()
# (fold, clip id, take, target): targets 0 dog, 14 chirping birds, 36 vacuum cleaner, 19 thunderstorm
CLIPS = [(1, 100032, "A", 0), (1, 100038, "A", 14), (2, 100210, "A", 36), (2, 100210, "B", 36),
         (3, 101296, "A", 19), (4, 101404, "A", 0), (5, 103298, "A", 14), (5, 104089, "B", 19)]
HEADER = "filename,fold,target,category,esc10,src_file,take"


def _clip_name(fold: int, clip: int, take: str, target: int) -> str:
    return f"{fold}-{clip}-{take}-{target}.wav"


def _release(dest: Path, clips=CLIPS, csv: bool = True, folder: str = "ESC-50-master") -> Path:
    """An ESC-50 copy: 5 s, 44.1 kHz mono tones (one pitch per class), the release's CSV."""
    root = dest / folder
    (root / "audio").mkdir(parents=True)
    names = esc50.classes()
    rows = []
    t = np.arange(5 * 44100) / 44100
    for fold, clip, take, target in clips:
        name = _clip_name(fold, clip, take, target)
        sf.write(root / "audio" / name, (0.3 * np.sin(2 * np.pi * (200 + 40 * target) * t)).astype(np.float32),
                 44100, subtype="PCM_16")
        rows.append(f"{name},{fold},{target},{names[target].replace(' ', '_')},{target in (0, 14)},"
                    f"{clip},{take}")
    if csv:
        (root / "meta").mkdir()
        (root / "meta" / "esc50.csv").write_text(HEADER + "\n" + "\n".join(rows) + "\n")
    return root


def _eval(data: Path, out: Path, cache: Path, *extra: str) -> dict:
    res = runner.invoke(app, ["eval", "esc50", "--data-root", str(data), "--model", "tiny-omni", "--out", str(out),
                              "--workers", "0", "--precision", "fp32", "--json", *extra],
                        env={"VITLENS_CACHE": str(cache)})
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_prepare_and_eval_esc50_archive(tmp_path):
    archive = zip_folder(_release(tmp_path / "src"), tmp_path / "ESC-50-master.zip")
    data = tmp_path / "data"
    res = runner.invoke(app, ["prepare", "esc50", "--root", str(data), "--from", str(archive)])
    assert res.exit_code == 0, res.output
    ds = CachedPoints(data / "esc50")
    assert ds.index.modality == "audio" and ds.index.shape == (3, 512, 128) and len(ds) == len(CLIPS)
    assert ds.names == [_clip_name(*c) for c in CLIPS]
    np.testing.assert_array_equal(ds.labels, [c[3] for c in CLIPS])
    assert ds.index.groups == {"fold": {_clip_name(*c): str(c[0]) for c in CLIPS}}
    assert len(ds.index.classes) == 50 and ds.index.classes[14] == "chirping birds"

    metrics = _eval(data, tmp_path / "out", tmp_path / "cache")
    assert metrics["benchmark"] == "esc50" and metrics["modality"] == "audio" and metrics["n"] == len(CLIPS)
    assert metrics["templates"] == "sound_as_image_12" and "per fold" in metrics["protocol"]
    assert metrics["prompts_encoded"] == 50 * len(templates("sound_as_image_12"))
    recomputed = metrics_from_predictions(tmp_path / "out" / "predictions.parquet", ds.index.classes)
    for key in ("n", "top1", "top3", "top5", "mean_class_acc"):
        assert getattr(recomputed, key) == metrics[key], key
    table = pq.read_table(tmp_path / "out" / "predictions.parquet").to_pydict()
    fold_of = {_clip_name(*c): str(c[0]) for c in CLIPS}
    for fold in "12345":
        rows = [i for i, p in enumerate(table["path"]) if fold_of[p] == fold]
        correct = sum(table["top5_indices"][i][0] == table["label_index"][i] for i in rows)
        assert metrics["per_fold"][fold] == {"n": len(rows), "correct": correct, "top1": correct / len(rows)}

    again = _eval(data, tmp_path / "out2", tmp_path / "cache")
    assert again["prompts_encoded"] == 0
    assert again["top1"] == metrics["top1"] and again["per_fold"] == metrics["per_fold"]


def test_mirror_without_csv_is_listed_by_file_names(tmp_path):
    root = _release(tmp_path / "src", csv=False, folder="esc50")
    for wav in sorted((root / "audio").iterdir()):  # ONE-PEACE's mirror holds FLAC
        data, rate = sf.read(wav)
        sf.write(wav.with_suffix(".flac"), data, rate)
        wav.unlink()
    index = esc50.prepare(tmp_path / "src", tmp_path / "esc50")
    assert index.count == len(CLIPS) and "no esc50.csv" in index.protocol
    assert index.groups["fold"] == {_clip_name(*c)[:-4] + ".flac": str(c[0]) for c in CLIPS}


def test_missing_clip_is_skipped_and_reported(tmp_path):
    root = _release(tmp_path / "src")
    (root / "audio" / _clip_name(*CLIPS[2])).unlink()
    res = runner.invoke(app, ["prepare", "esc50", "--root", str(tmp_path / "data"), "--from", str(tmp_path / "src")])
    assert res.exit_code == 1
    assert f"skipped: {_clip_name(*CLIPS[2])}: no such file" in res.output
    assert len(CachedPoints(tmp_path / "data" / "esc50")) == len(CLIPS) - 1


@pytest.mark.parametrize("row, message", [
    ("1-1-A-0.wav,1,0,cat,False,1,A", "category 'cat' is not class 0 ('dog')"),
    ("1-1-A-0.wav,1,50,dog,False,1,A", "target 50 outside 0..49"),
    ("1-1-A-0.wav,x,0,dog,False,1,A", "fold and target must be integers"),
])
def test_bad_csv_row_is_one_error_naming_the_line(tmp_path, row, message):
    root = _release(tmp_path / "src", clips=CLIPS[:1])
    (root / "meta" / "esc50.csv").write_text(f"{HEADER}\n{row}\n")
    with pytest.raises(VitlensError, match=r"esc50\.csv:2: " + message.replace("(", r"\(").replace(")", r"\)")):
        esc50.prepare(tmp_path / "src", tmp_path / "esc50")
