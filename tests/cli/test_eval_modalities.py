"""`vitlens eval` classifies files of every modality: the real audio and depth fixture files as tiny custom
benchmarks (a folder of class sub-folders, a CSV of path,label), with tiny-omni's towers.

Each run's metrics equal a recomputation from its predictions.parquet, the predictions equal an
independent encode (plug-in prepare → tower → the official classifier rule by hand), and a second run
encodes no prompts.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from typer.testing import CliRunner

from tests.conftest import fixture_folder
from vitlens_cli.cli.app import app
from vitlens_cli.data.meta import templates
from vitlens_cli.evaluation.report import metrics_from_predictions
from vitlens_cli.modalities import get_modality
from vitlens_cli.models import load_model

runner = CliRunner()
MODEL = "tiny-omni"
AUDIO = {"chirping_birds.flac": "birds", "crackling_fire.flac": "fire", "dog.flac": "dog", "sea_wave.flac": "sea waves"}
DEPTH = {"NYU0001_depth.png": "kitchen", "NYU0002_depth.png": "office"}


def _class_folders(src: Path, labels: dict[str, str], dest: Path) -> Path:
    """The fixture files as ``dest/<class>/<file>`` (symbolic links: the fixtures are never copied)."""
    for name, label in labels.items():
        (dest / label.replace(" ", "_")).mkdir(parents=True, exist_ok=True)
        (dest / label.replace(" ", "_") / name).symlink_to(src / name)
    return dest


def _eval(args: list[str], cache: Path) -> dict:
    res = runner.invoke(app, ["eval", *args, "--model", MODEL, "--workers", "0", "--precision", "fp32", "--json"],
                        env={"VITLENS_CACHE": str(cache)})
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def _independent_top1(modality: str, files: list[Path], classes: list[str], template_set: str) -> list[int]:
    """Best class per file from the plug-in and the tower alone (classifier built here, not by vitlens eval)."""
    model = load_model(MODEL)
    plugin = get_modality(modality)
    with torch.inference_mode():
        rows = []
        for name in classes:
            emb = torch.nn.functional.normalize(model.encode_text([t.format(name) for t in templates(template_set)]),
                                                dim=-1)
            rows.append(torch.nn.functional.normalize(emb.mean(dim=0), dim=-1))
        classifier = torch.stack(rows)
        x = torch.stack([plugin.prepare(f, plugin.default_contract()) for f in files])
        emb = model.encode(modality, x, normalize=True)
    return (emb @ classifier.T).argmax(dim=1).tolist()


def _check_report(out: Path, metrics: dict, classes: list[str]) -> dict:
    for name in ("metrics.json", "per_class.csv", "predictions.parquet", "confusion.png"):
        assert (out / name).is_file(), name
    recomputed = metrics_from_predictions(out / "predictions.parquet", classes)
    for key in ("n", "top1", "top3", "top5", "mean_class_acc"):
        assert getattr(recomputed, key) == metrics[key], key
    return pq.read_table(out / "predictions.parquet").to_pydict()


def test_audio_folder_of_class_subfolders(fixtures, tmp_path):
    audio_files = fixture_folder(fixtures, "audio")
    root = _class_folders(audio_files, AUDIO, tmp_path / "sounds")
    metrics = _eval([str(root), "--out", str(tmp_path / "out")], tmp_path / "cache")
    classes = sorted(AUDIO.values())
    assert metrics["modality"] == "audio" and metrics["templates"] == "sound_as_image_12"
    assert metrics["n"] == 4 and metrics["failed"] == 0
    assert metrics["prompts_encoded"] == 4 * len(templates("sound_as_image_12"))
    table = _check_report(tmp_path / "out", metrics, classes)
    files = [Path(p) for p in table["path"]]
    assert sorted(f.name for f in files) == sorted(AUDIO)
    assert [row[0] for row in table["top5_indices"]] == _independent_top1("audio", files, classes,
                                                                          "sound_as_image_12")
    assert table["label"] == [AUDIO[f.name] for f in files]

    again = _eval([str(root), "--out", str(tmp_path / "out2"), "--workers", "2"], tmp_path / "cache")
    assert again["prompts_encoded"] == 0  # the classifier came from the cache
    assert again["top1"] == metrics["top1"] and again["per_class"] == metrics["per_class"]


def test_depth_csv_needs_the_modality_for_png(fixtures, tmp_path):
    depth_files = fixture_folder(fixtures, "depth")
    csv = tmp_path / "depth.csv"
    csv.write_text("path,label\n" + "".join(f"{depth_files / n},{label}\n" for n, label in DEPTH.items()))
    res = runner.invoke(app, ["eval", str(csv), "--model", MODEL, "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "--modality" in res.output and "depth or image" in res.output
    assert not (tmp_path / "x").exists()

    metrics = _eval([str(csv), "--modality", "depth", "--out", str(tmp_path / "out")], tmp_path / "cache")
    classes = sorted(DEPTH.values())
    assert metrics["modality"] == "depth" and metrics["templates"] == "scene_19" and metrics["n"] == 2
    table = _check_report(tmp_path / "out", metrics, classes)
    files = [Path(p) for p in table["path"]]
    assert [f.name for f in files] == list(DEPTH)
    assert [row[0] for row in table["top5_indices"]] == _independent_top1("depth", files, classes, "scene_19")
    assert _eval([str(csv), "--modality", "depth", "--out", str(tmp_path / "out2")],
                 tmp_path / "cache")["prompts_encoded"] == 0


def test_depth_folder_takes_only_the_files_depth_reads(fixtures, tmp_path):
    """The fixture folder also holds an RGB .jpg: with --modality depth it is not an item."""
    depth_files = fixture_folder(fixtures, "depth")
    root = tmp_path / "scenes"
    (root / "kitchen").mkdir(parents=True)
    for f in sorted(depth_files.iterdir()):
        (root / "kitchen" / f.name).symlink_to(f)
    metrics = _eval([str(root), "--modality", "depth", "--out", str(tmp_path / "out")], tmp_path / "cache")
    assert metrics["n"] == 2 and metrics["failed"] == 0


def test_mixed_modalities_are_refused(fixtures, tmp_path):
    audio_files = fixture_folder(fixtures, "audio")
    root = _class_folders(audio_files, {"dog.flac": "dog"}, tmp_path / "mixed")
    np.savetxt(root / "dog" / "cloud.xyz", np.random.default_rng(0).normal(size=(64, 3)))
    res = runner.invoke(app, ["eval", str(root), "--model", MODEL, "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "several modalities" in res.output and "--modality" in res.output
    metrics = _eval([str(root), "--modality", "audio", "--out", str(tmp_path / "out")], tmp_path / "cache")
    assert metrics["n"] == 1 and metrics["modality"] == "audio"


def test_damaged_files_are_skipped_one_line_each(fixtures, tmp_path):
    audio_files = fixture_folder(fixtures, "audio")
    root = _class_folders(audio_files, {"dog.flac": "dog", "sea_wave.flac": "sea waves"}, tmp_path / "sounds")
    (root / "dog" / "garbage.wav").write_bytes(b"RIFF" + bytes(range(256)) * 4)
    (root / "sea_waves" / "cut.flac").write_bytes((audio_files / "sea_wave.flac").read_bytes()[:3000])
    res = runner.invoke(app, ["eval", str(root), "--model", MODEL, "--workers", "0", "--out", str(tmp_path / "out"),
                              "--json"], env={"VITLENS_CACHE": str(tmp_path / "cache")})
    assert res.exit_code == 1, res.output  # items failed, the rest evaluated
    assert "Traceback" not in res.output
    skipped = [ln for ln in res.stderr.splitlines() if ln.startswith("skipped: ")]
    assert len(skipped) == 2 and any("garbage.wav" in ln for ln in skipped) and any("cut.flac" in ln for ln in skipped)
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["n"] == 2 and metrics["failed"] == 2
