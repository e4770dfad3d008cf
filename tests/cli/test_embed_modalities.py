"""`vitlens embed` reproduces the official depth, audio, tactile, EEG and one-stop outputs (parity-modalities).

The cases' inputs are prepared lens tensors (nano-sized), so each item is written to its own ``.npy`` /
``.npz`` / ``.pt`` file and embedded with ``--prepared``; the one-stop point clouds also go through the 3D
file reader (``--no-normalize`` feeds them as read). Tolerances are the fixture README's §10.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from tests.conftest import missing_data
from vitlens_cli.cli.app import app

runner = CliRunner()
TOL = dict(atol=1e-5, rtol=1e-4)
# case → (modality, input key, container the items are written in)
LENS_CASES = {"depth_lens": ("depth", "depth", ".npy"), "audio_lens": ("audio", "fbank", ".npz"),
              "tactile_lens": ("tactile", "tactile", ".pt"), "eeg_lens": ("eeg", "eeg", ".npy")}
ONESTOP = {"image": "image", "pc": "3d", "depth": "depth", "audio": "audio", "tactile": "tactile", "eeg": "eeg"}


@pytest.fixture(scope="module")
def modal(fixtures: Path) -> Path:
    path = fixtures / "parity-modalities"
    if not path.is_dir():
        missing_data(f"parity-modalities fixtures not found under {fixtures}")
    return path


def _write_items(folder: Path, batch: torch.Tensor, suffix: str) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for b, item in enumerate(batch):
        path = folder / f"item{b}{suffix}"
        if suffix == ".pt":
            torch.save(item.clone(), path)
        elif suffix == ".npz":
            np.savez(path, input=item.numpy())
        else:
            np.save(path, item.numpy())
        paths.append(str(path))
    return paths


def _embed(args: list[str]) -> None:
    res = runner.invoke(app, ["embed", *args, "--precision", "fp32"])  # compared with fp32 references
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize("case", list(LENS_CASES))
def test_cli_reproduces_each_lens_case(modal, tmp_path, case):
    modality, key, suffix = LENS_CASES[case]
    d = modal / case
    io = load_file(str(d / "io.safetensors"))
    paths = _write_items(tmp_path / "in", io[key], suffix)
    out = tmp_path / "e.npy"
    _embed([*paths, "--checkpoint", str(d / "checkpoint.pt"), "--config", str(d / "config.json"),
            "--modality", modality, "--prepared", "--no-normalize", "--batch-size", "2", "--out", str(out)])
    np.testing.assert_allclose(np.load(out), io["embedding"].numpy(), **TOL)
    manifest = json.loads((tmp_path / "e.npy.manifest.json").read_text())
    assert [i["modality"] for i in manifest["items"]] == [modality] * len(paths)
    assert manifest["settings"]["contracts"] == {modality: {"prepared": True}}


@pytest.fixture(scope="module")
def onestop(modal):
    d = modal / "onestop_layout"
    return d, load_file(str(d / "io.safetensors")), json.loads((d / "config.json").read_text())


def _model_args(d: Path) -> list[str]:
    return ["--checkpoint", str(d / "checkpoint.pt"), "--config", str(d / "config.json")]


@pytest.mark.parametrize("official", list(ONESTOP))
def test_cli_reproduces_the_onestop_encode_of_each_tower(onestop, tmp_path, official):
    """``encode(m, x, normalize=True)``; audio items are (3 clips, frames, mel): their embeddings averaged."""
    d, io, _ = onestop
    modality = ONESTOP[official]
    paths = _write_items(tmp_path / "in", io[f"input_{official}"], ".npy")
    out = tmp_path / "e.npy"
    _embed([*paths, *_model_args(d), "--modality", modality, "--prepared", "--out", str(out)])
    np.testing.assert_allclose(np.load(out), io[f"encode_{official}"].numpy(), **TOL)


def test_cli_reads_the_onestop_clouds_as_3d_files(onestop, tmp_path):
    """The point clouds as ordinary ``.npy`` cloud files: ``--no-normalize`` feeds them as read."""
    d, io, _ = onestop
    paths = _write_items(tmp_path / "in", io["input_pc"], ".npy")
    out = tmp_path / "e.npy"
    _embed([*paths, *_model_args(d), "--modality", "3d", "--no-normalize", "--out", str(out)])
    np.testing.assert_allclose(np.load(out), io["embedding_pc"].numpy(), **TOL)


def test_cli_text_table_for_a_non_3d_modality(onestop, tmp_path):
    """``--text`` compares any modality: softmax(100 · cos) against the one-stop text encodings."""
    d, io, cfg = onestop
    captions = cfg["inputs"]["input_text"]["captions"]
    paths = _write_items(tmp_path / "in", io["input_eeg"], ".pt")
    res = runner.invoke(app, ["embed", *paths, *_model_args(d), "--modality", "eeg", "--prepared", "--json",
                              "--precision", "fp32", *[a for c in captions for a in ("--text", c)]])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    expected = torch.softmax(100 * io["encode_eeg"] @ io["encode_text"].T, dim=-1).numpy()
    got = np.array([[summary["similarity"][p][c] for c in captions] for p in paths])
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert summary["modalities"] == {"eeg": len(paths)}


def test_cli_prepared_inputs_of_the_wrong_size_are_skipped(modal, tmp_path):
    d = modal / "depth_lens"
    io = load_file(str(d / "io.safetensors"))
    good = _write_items(tmp_path / "good", io["depth"][:1], ".npy")
    bad = _write_items(tmp_path / "bad", torch.zeros(1, 1, 16, 16), ".npy")
    out = tmp_path / "e.npy"
    res = runner.invoke(app, ["embed", *good, *bad, "--checkpoint", str(d / "checkpoint.pt"), "--config",
                              str(d / "config.json"), "--prepared", "--no-normalize", "--precision", "fp32",
                              "--out", str(out)])
    assert res.exit_code == 1
    skipped = [ln for ln in res.stderr.splitlines() if ln.startswith("skipped:")]
    assert len(skipped) == 1 and bad[0] in skipped[0] and "does not fit the model's depth tower" in skipped[0]
    np.testing.assert_allclose(np.load(out), io["embedding"][:1].numpy(), **TOL)
