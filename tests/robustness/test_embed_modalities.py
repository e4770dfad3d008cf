"""`vitlens embed --model tiny-omni` on the real fixture files of every modality, mixed in one run.

Good files embed in input order, each row equal to its modality's own ``prepare`` + ``encode``; a truncated
and a garbage file of each modality are skipped with one line each (exit 1); an extension several
modalities read stops the run with one error line (exit 2) unless ``--modality`` chooses.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import vitlens_cli
from tests.robustness.harness import Snapshot, assert_clean_failure, assert_no_temp_files, invoke
from vitlens_cli.embedding import load_embeddings
from vitlens_cli.modalities import get_modality

GARBAGE = bytes(np.random.default_rng(5).integers(0, 256, 900, dtype=np.uint8))


@pytest.fixture(scope="module")
def omni():
    return vitlens_cli.load_model("tiny-omni")


def _good(fixtures: Path, tmp: Path) -> list[tuple[Path, str]]:
    """(file, modality) in the order given on the command line: modalities interleaved on purpose."""
    eeg = tmp / "trial.npy"
    np.save(eeg, np.random.default_rng(0).standard_normal((128, 500)).astype(np.float32))
    return [(fixtures / "audio" / "dog.flac", "audio"), (fixtures / "depth" / "NYU0001_depth.png", "depth"),
            (fixtures / "images" / "dog.jpg", "image"), (fixtures / "meshes" / "airplane_0001.off", "3d"),
            (fixtures / "audio" / "sea_wave.flac", "audio"), (eeg, "eeg"),
            (fixtures / "depth" / "NYU0002_depth.png", "depth"), (fixtures / "images" / "beach.jpg", "image"),
            (fixtures / "audio" / "chirping_birds.flac", "audio"), (fixtures / "audio" / "crackling_fire.flac", "audio")]


def _expected(model, path: Path, modality: str) -> np.ndarray:
    """The row computed apart from the CLI: the plug-in's prepare, one item, encode(normalize=True)."""
    if modality == "3d":
        from vitlens_cli.points import read_points

        x = torch.from_numpy(vitlens_cli.prepare_points(read_points(path), model.cfg.preprocess))
    else:
        x = get_modality(modality).prepare(path, get_modality(modality).default_contract())
    with torch.inference_mode():
        return model.encode(modality, x[None], normalize=True)[0].numpy()


MODALITY_ARGS = ["--modality", "eeg", "--modality", "depth", "--modality", "image",
                 "--precision", "fp32"]  # the first that reads a suffix wins


def test_every_fixture_modality_embeds_in_one_mixed_run(fixtures, tmp_path, omni):
    good = _good(fixtures, tmp_path)
    out = tmp_path / "out" / "e.parquet"
    outcome = invoke(["embed", *[p for p, _ in good], "--model", "tiny-omni", *MODALITY_ARGS, "--batch-size", "3",
                      "--out", out], timeout=300)
    assert outcome.exit_code == 0, outcome.stderr
    saved = load_embeddings(out)
    items = saved.manifest["items"]
    assert [(i["path"], i["modality"]) for i in items] == [(str(p), m) for p, m in good]
    contracts = saved.manifest["settings"]["contracts"]
    assert set(contracts) == {"audio", "depth", "image", "3d", "eeg"}
    assert contracts["audio"]["mel_bins"] == 128 and contracts["depth"]["baseline"] == 0.075
    assert contracts["3d"]["num_points"] == 1024
    for row, (path, modality) in zip(saved.embeddings, good):
        np.testing.assert_allclose(row, _expected(omni, path, modality), atol=1e-5, rtol=1e-4)
    assert "10 item(s) (4 audio, 2 depth, 2 image, 1 3d, 1 eeg)" in outcome.stdout
    assert_no_temp_files(tmp_path)


def _truncated(src: Path, dst: Path) -> Path:
    dst.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    return dst


def _garbage(dst: Path) -> Path:
    dst.write_bytes(GARBAGE)
    return dst


# (name, maker, fragment of the reason): a truncated and a garbage file of each modality.
BAD = [
    ("t.flac", lambda f, d: _truncated(f / "audio" / "dog.flac", d / "t.flac"), "cannot decode audio"),
    ("g.flac", lambda f, d: _garbage(d / "g.flac"), "not a decodable audio file"),
    ("t.png", lambda f, d: _truncated(f / "depth" / "NYU0001_depth.png", d / "t.png"), "cannot decode PNG"),
    ("g.png", lambda f, d: _garbage(d / "g.png"), "not a PNG image"),
    ("t.jpg", lambda f, d: _truncated(f / "images" / "dog.jpg", d / "t.jpg"), "image file is truncated"),
    ("g.jpg", lambda f, d: _garbage(d / "g.jpg"), "not an image file"),
    ("t.off", lambda f, d: _truncated(f / "meshes" / "airplane_0001.off", d / "t.off"), "truncated"),
    ("g.off", lambda f, d: _garbage(d / "g.off"), "not an OFF file"),
    ("t.npy", lambda f, d: _truncated(_eeg(d / "e.npy"), d / "t.npy"), "truncated"),
    ("g.npy", lambda f, d: _garbage(d / "g.npy"), "not a .npy file"),
]


def _eeg(path: Path) -> Path:
    np.save(path, np.random.default_rng(1).standard_normal((128, 480)).astype(np.float32))
    return path


def test_truncated_and_garbage_files_of_each_modality_are_skipped(fixtures, tmp_path):
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    bad = [(make(fixtures, bad_dir), fragment) for _, make, fragment in BAD]
    good = _good(fixtures, tmp_path)[:6]
    args = [p for p, _ in good[:3]] + [p for p, _ in bad] + [p for p, _ in good[3:]]
    out = tmp_path / "out" / "e.npy"
    outcome = invoke(["embed", *args, "--model", "tiny-omni", *MODALITY_ARGS, "--out", out], timeout=300)
    assert outcome.exception is None and outcome.exit_code == 1, outcome.stderr
    skipped = [ln for ln in outcome.lines if ln.startswith("skipped:")]
    assert len(skipped) == len(bad) and len(outcome.lines) == len(bad), outcome.stderr
    for line, (path, fragment) in zip(skipped, bad):
        assert line.startswith(f"skipped: {path}: ") and fragment in line, line
    saved = load_embeddings(out)
    assert [(i["path"], i["modality"]) for i in saved.manifest["items"]] == [(str(p), m) for p, m in good]
    assert_no_temp_files(tmp_path)


@pytest.mark.parametrize("name,could_be", [("x.npy", "3d, depth or eeg"), ("x.png", "depth, tactile or image")])
def test_an_ambiguous_extension_is_one_error_line(fixtures, tmp_path, name, could_be):
    path = tmp_path / name
    if name.endswith(".png"):
        path.write_bytes((fixtures / "depth" / "NYU0001_depth.png").read_bytes())
    else:
        np.save(path, np.zeros((128, 500), np.float32))
    other = tmp_path / f"y{path.suffix}"
    other.write_bytes(path.read_bytes())
    before = Snapshot(tmp_path)
    outcome = invoke(["embed", path, other, fixtures / "audio" / "dog.flac", "--model", "tiny-omni",
                      "--out", tmp_path / "e.npy"], timeout=120)
    line = assert_clean_failure(outcome, exit_code=2, names=[str(path), could_be, "--modality"])
    assert "1 more file(s) alike" in line
    before.assert_unchanged()


def test_a_modality_the_model_lacks_is_a_skipped_file(fixtures, tmp_path):
    """The default 'tiny' holds 3D only: a sound file is skipped with the reason, the cloud embedded."""
    cloud = tmp_path / "c.npy"
    np.save(cloud, np.random.default_rng(2).standard_normal((500, 3)).astype(np.float32))
    outcome = invoke(["embed", cloud, fixtures / "audio" / "dog.flac", fixtures / "images" / "dog.jpg",
                      "--out", tmp_path / "e.npy"], timeout=120)
    assert outcome.exit_code == 1, outcome.stderr
    skipped = [ln for ln in outcome.lines if ln.startswith("skipped:")]
    assert len(skipped) == 2
    assert "no audio tower" in skipped[0] and "has no tower for any of them" in skipped[1]
    assert load_embeddings(tmp_path / "e.npy").embeddings.shape == (1, 32)


def test_tactile_frames_need_the_modality_named(fixtures, tmp_path, omni):
    photo = fixtures / "images" / "beach.jpg"
    out = tmp_path / "e.npy"
    outcome = invoke(["embed", photo, "--model", "tiny-omni", "--modality", "tactile", "--precision", "fp32",
                      "--out", out], timeout=120)
    assert outcome.exit_code == 0, outcome.stderr
    saved = load_embeddings(out)
    assert saved.manifest["items"][0]["modality"] == "tactile"
    np.testing.assert_allclose(saved.embeddings[0], _expected(omni, photo, "tactile"), atol=1e-5, rtol=1e-4)
