"""`vitlens embed` end to end through Typer's CliRunner (and one real subprocess)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from safetensors.torch import load_file
from typer.testing import CliRunner

from vitlens_cli.cli.app import app

runner = CliRunner()


def _cloud(path: Path, n: int = 600, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    np.save(path, rng.standard_normal((n, 3)).astype(np.float32))
    return path


def test_embed_writes_rows_in_input_order_with_manifest(tmp_path):
    a, b = _cloud(tmp_path / "b.npy", seed=1), _cloud(tmp_path / "a.npy", seed=2)
    out = tmp_path / "e.npy"
    res = runner.invoke(app, ["embed", str(a), str(b), "--precision", "fp32", "--out", str(out)])
    assert res.exit_code == 0, res.output
    emb = np.load(out)
    assert emb.shape == (2, 32)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    manifest = json.loads((tmp_path / "e.npy.manifest.json").read_text())
    assert [i["path"] for i in manifest["items"]] == [str(a), str(b)]
    assert manifest["items"][0]["num_points"] == 600
    assert len(manifest["items"][0]["sha256"]) == 64
    assert manifest["settings"]["model"] == "tiny"
    assert manifest["settings"]["preprocess"]["num_points"] == 1024
    # Same input, same rows: the pipeline is deterministic (in fp32 a row does not depend on its batch).
    single = tmp_path / "single.npy"
    assert runner.invoke(app, ["embed", str(b), "--precision", "fp32", "--out", str(single)]).exit_code == 0
    np.testing.assert_allclose(np.load(single)[0], emb[1], atol=1e-6)


def test_the_command_pins_the_allocator_and_the_library_does_not(tmp_path, monkeypatch):
    import vitlens_cli.allocator
    from vitlens_cli.embedding import embed_files

    calls = []
    monkeypatch.setattr(vitlens_cli.allocator, "pin_malloc_thresholds", lambda: calls.append(1) or True)
    a = _cloud(tmp_path / "a.npy")
    embed_files(vitlens_cli.load_model("tiny"), [a], precision="fp32")
    assert calls == []
    assert runner.invoke(app, ["embed", str(a), "--precision", "fp32", "--json"]).exit_code == 0
    assert calls == [1]


def test_bad_file_is_skipped_and_reported(tmp_path):
    good = _cloud(tmp_path / "good.npy")
    bad = tmp_path / "bad.ply"
    bad.write_bytes(b"ply\nformat ascii 1.0\nelement vertex 10\nproperty float x\nend_header\n1\n2\n")
    junk = tmp_path / "junk.off"
    junk.write_bytes(b"\x00\x01garbage")
    out = tmp_path / "e.parquet"
    res = runner.invoke(app, ["embed", str(good), str(bad), str(junk), str(tmp_path / "missing.npy"),
                              "--out", str(out)])
    assert res.exit_code == 1
    skipped = [ln for ln in res.output.splitlines() if ln.startswith("skipped:")]
    assert len(skipped) == 3
    assert any(str(bad) in ln for ln in skipped) and any(str(junk) in ln for ln in skipped)
    table = pq.read_table(out)
    assert table.column("path").to_pylist() == [str(good)]
    assert len(table.column("embedding")[0].as_py()) == 32


def test_folder_and_glob_expand_and_text_table(tmp_path):
    for i in range(3):
        _cloud(tmp_path / f"s{i}.npy", seed=i)
    (tmp_path / "notes.md").write_text("not a shape")
    res = runner.invoke(app, ["embed", str(tmp_path), "--text", "a chair", "--text", "a car", "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output)
    assert summary["embedded"] == 3
    for probs in summary["similarity"].values():
        assert set(probs) == {"a chair", "a car"}
        assert abs(sum(probs.values()) - 1.0) < 1e-5
    res = runner.invoke(app, ["embed", str(tmp_path / "s*.npy"), "--json"])
    assert json.loads(res.output)["embedded"] == 3


def test_unknown_model_is_one_line_error(tmp_path):
    res = runner.invoke(app, ["embed", str(_cloud(tmp_path / "a.npy")), "--model", "nope"])
    assert res.exit_code == 2
    assert "'nope' is neither a known model" in res.output
    assert len(res.output.strip().splitlines()) == 1


def test_checkpoint_without_config_is_one_line_error(tmp_path):
    ckpt = tmp_path / "mystery.pt"
    ckpt.write_bytes(b"not a checkpoint")
    res = runner.invoke(app, ["embed", str(_cloud(tmp_path / "a.npy")), "--checkpoint", str(ckpt)])
    assert res.exit_code == 2
    assert str(ckpt) in res.output


@pytest.mark.parametrize("case", ["pointbert_untied", "pointbert_tied", "pnsa_rgb"])
def test_cli_reproduces_official_embeddings(parity, tmp_path, case):
    d = parity / case
    io = load_file(str(d / "io.safetensors"))
    paths = []
    for b, cloud in enumerate(io["points"].numpy()):
        paths.append(str(tmp_path / f"cloud{b}.npy"))
        np.save(paths[-1], cloud)
    out = tmp_path / "e.npy"
    res = runner.invoke(app, ["embed", *paths, "--checkpoint", str(d / "checkpoint.pt"),
                              "--config", str(d / "config.json"), "--no-normalize", "--precision", "fp32",
                              "--out", str(out)])
    assert res.exit_code == 0, res.output
    np.testing.assert_allclose(np.load(out), io["embedding"].numpy(), atol=1e-5, rtol=1e-4)


def test_every_fixture_format_embeds(fixtures, tmp_path):
    files = [
        fixtures / "modelnet40" / "normal_resampled" / "airplane" / "airplane_0703.txt",
        next((fixtures / "modelnet40" / "npy").glob("*.npy")),
        fixtures / "meshes" / "airplane_0001.off",
        fixtures / "clouds" / "owl_rgb.ply",
        fixtures / "clouds" / "airplane_partial.pcd",
        fixtures / "clouds" / "ycb_layout_test.h5",
    ]
    trunc = tmp_path / "truncated.npy"
    trunc.write_bytes(files[1].read_bytes()[:200])
    out = tmp_path / "e.npy"
    res = runner.invoke(app, ["embed", *map(str, files), str(trunc), "--out", str(out)])
    assert res.exit_code == 1
    skipped = [ln for ln in res.output.splitlines() if ln.startswith("skipped:")]
    assert len(skipped) == 1 and str(trunc) in skipped[0]
    manifest = json.loads((tmp_path / "e.npy.manifest.json").read_text())
    embedded_paths = {i["path"] for i in manifest["items"]}
    assert embedded_paths == {str(f) for f in files}
    assert np.load(out).shape[0] == len(manifest["items"]) > len(files)  # the h5 holds several clouds
    assert np.isfinite(np.load(out)).all()


def test_console_script_runs_as_subprocess(tmp_path):
    res = subprocess.run([sys.executable, "-m", "vitlens_cli", "models", "--json"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    names = [m["name"] for m in json.loads(res.stdout)]
    assert "tiny" in names and "vitlens-bigg14-openshape" in names


def test_precision_is_recorded_and_fp16_on_cpu_is_one_line_error(tmp_path):
    out = tmp_path / "e.parquet"
    res = runner.invoke(app, ["embed", str(_cloud(tmp_path / "a.npy")), "--precision", "bf16", "--out", str(out),
                              "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["precision"] == "bf16"
    manifest = json.loads((tmp_path / "e.parquet.manifest.json").read_text())
    assert manifest["settings"]["precision"] == "bf16"
    for value, fragment in (("fp16", "fp16 needs a CUDA device"), ("fp8", "'fp8' is not one of")):
        res = runner.invoke(app, ["embed", str(tmp_path / "a.npy"), "--precision", value])
        assert res.exit_code == 2 and fragment in res.output and "--precision" in res.output
        assert len(res.output.strip().splitlines()) == 1
