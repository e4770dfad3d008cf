"""SUN-D / NYU-D: a small SUN RGB-D copy laid out as SUNRGBD.zip (<sensor>/<collection>/<scene>/depth_bfx/<frame>.png,
intrinsics.txt; some frames with the processed copy's <frame>_disparity.pt) goes through `vitlens prepare
<name> --from` and `vitlens eval <name> --model tiny-omni`. NYU-D's "others" rule is checked against an
independent encode; metrics equal a recomputation from predictions.parquet; a second run encodes no prompts."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from tests.data.list_releases import zip_folder
from vitlens_cli.cli.app import app
from vitlens_cli.data.cache import CachedPoints
from vitlens_cli.data.meta import meta_file, templates
from vitlens_cli.evaluation.report import metrics_from_predictions
from vitlens_cli.evaluation.zeroshot import zeroshot_classifier
from vitlens_cli.modalities import get_modality
from vitlens_cli.modalities.depth import SENSOR_BASELINES
from vitlens_cli.models import load_model

runner = CliRunner()
FX = 520.0


def _pick(meta: dict, per_prompt: int = 1, limit: int = 8) -> list[list]:
    """A few listed frames, at most ``per_prompt`` per prompted class, "others" ones among them where listed."""
    seen: dict[int, int] = {}
    picked = []
    for scene, frame, label in meta["items"]:
        if seen.get(label, 0) < per_prompt and len(picked) < limit:
            seen[label] = seen.get(label, 0) + 1
            picked.append([scene, frame, label])
    return picked


def _copy(dest: Path, items: list[list], disparity_every: int = 2) -> Path:
    """SUNRGBD/<scene>/{depth_bfx/<frame>.png, intrinsics.txt}; every ``disparity_every``-th frame also has the
    processed copy's _disparity.pt."""
    rng = np.random.default_rng(0)
    root = dest / "SUNRGBD"
    for n, (scene, frame, _) in enumerate(items):
        folder = root / scene / "depth_bfx"
        folder.mkdir(parents=True)
        depth = rng.integers(500, 8000, size=(48, 64), dtype=np.uint16)
        Image.fromarray(depth).save(folder / f"{frame}.png")
        (root / scene / "intrinsics.txt").write_text(f"{FX} 0 320\n0 {FX} 240\n0 0 1\n")
        if n % disparity_every == 0:
            torch.save(torch.from_numpy(rng.uniform(1, 60, size=(48, 64)).astype(np.float32)),
                       folder / f"{frame}_disparity.pt")
    return root


def _expected_top1(root: Path, items: list[list], meta: dict) -> list[int]:
    """Scored class of each frame from the plug-in, the tower and the official rule, by hand."""
    model = load_model("tiny-omni")
    depth = get_modality("depth")
    base = depth.default_contract()
    xs = []
    for scene, frame, _ in items:
        folder = root / scene / "depth_bfx"
        if (folder / f"{frame}_disparity.pt").exists():
            xs.append(depth.prepare(folder / f"{frame}_disparity.pt", base))
        else:
            contract = replace(base, baseline=SENSOR_BASELINES[scene.split("/")[0]], focal_length=FX)
            xs.append(depth.prepare(folder / f"{frame}.png", contract))
    prompts = meta.get("prompts") or meta["classes"]
    with torch.inference_mode():
        emb = model.encode("depth", torch.stack(xs), normalize=True)
        best = (emb @ zeroshot_classifier(model, prompts, templates("scene_19")).T).argmax(dim=1).tolist()
    to_class = meta.get("prompt_to_class") or list(range(len(prompts)))
    return [to_class[b] for b in best]


@pytest.mark.parametrize("name, meta_name", [("nyu-depth", "nyu_depth.json"), ("sunrgbd-depth", "sunrgbd_depth.json")])
def test_prepare_and_eval_depth_scenes(tmp_path, name, meta_name):
    meta = meta_file(meta_name)
    items = _pick(meta)
    root = _copy(tmp_path / "src", items)
    archive = zip_folder(root, tmp_path / "SUNRGBD.zip")
    data = tmp_path / "data"
    res = runner.invoke(app, ["prepare", name, "--root", str(data), "--from", str(archive)])
    # the rest of the official list is not in this copy: each frame is reported, the exit says so
    assert res.exit_code == 1, res.output
    assert res.output.count("skipped: ") == len(meta["items"]) - len(items)
    ds = CachedPoints(data / name)
    assert ds.index.modality == "depth" and ds.index.shape == (1, 224, 224) and len(ds) == len(items)
    n_pt = (len(items) + 1) // 2
    assert f"inputs: {n_pt} disparity .pt, {len(items) - n_pt} depth PNG" in ds.index.protocol
    assert ds.index.contract["baseline"] == "per item" and ds.index.contract["crop"] == 224

    cache = tmp_path / "cache"
    args = ["eval", name, "--data-root", str(data), "--model", "tiny-omni", "--workers", "0", "--precision", "fp32",
            "--json", "--batch-size", "3"]
    res = runner.invoke(app, [*args, "--out", str(tmp_path / "out")], env={"VITLENS_CACHE": str(cache)})
    assert res.exit_code == 0, res.output
    metrics = json.loads(res.stdout)
    prompts = meta.get("prompts") or meta["classes"]
    assert metrics["modality"] == "depth" and metrics["templates"] == "scene_19" and metrics["n"] == len(items)
    assert metrics["prompts_encoded"] == len(prompts) * 19
    table = pq.read_table(tmp_path / "out" / "predictions.parquet").to_pydict()
    assert [p for p in table["path"]] == [f"{s}/{f}" for s, f, _ in items]
    to_class = meta.get("prompt_to_class") or list(range(len(prompts)))
    assert table["label_index"] == [to_class[label] for _, _, label in items]
    assert [row[0] for row in table["top5_indices"]] == _expected_top1(root, items, meta)
    recomputed = metrics_from_predictions(tmp_path / "out" / "predictions.parquet", meta["classes"])
    for key in ("n", "top1", "top3", "top5", "mean_class_acc"):
        assert getattr(recomputed, key) == metrics[key], key

    res = runner.invoke(app, [*args, "--out", str(tmp_path / "out2")], env={"VITLENS_CACHE": str(cache)})
    assert res.exit_code == 0 and json.loads(res.stdout)["prompts_encoded"] == 0


def test_nyu_others_rule():
    """The shipped NYU-D list scores the official 10 classes; exactly the 7 renamed scenes count as others."""
    meta = meta_file("nyu_depth.json")
    others = meta["classes"].index("others")
    assert len(meta["items"]) == 654 and len(meta["prompts"]) == 16 and len(meta["classes"]) == 10
    merged = sorted(p for p, c in zip(meta["prompts"], meta["prompt_to_class"]) if c == others)
    assert merged == ["computer room", "lobby", "office kitchen", "playroom", "reception room", "study",
                      "study space"]
    for p, c in zip(meta["prompts"], meta["prompt_to_class"]):
        assert c == others or meta["classes"][c] == p
    sun = meta_file("sunrgbd_depth.json")
    assert len(sun["items"]) == 4659 and len(sun["classes"]) == 19 and "prompts" not in sun


def test_frame_with_png_but_no_intrinsics_is_skipped(tmp_path):
    from vitlens_cli.data.depth_scenes import prepare

    items = _pick(meta_file("nyu_depth.json"), limit=2)
    root = _copy(tmp_path / "src", items, disparity_every=99)  # the first has a .pt, the second only a PNG
    (root / items[1][0] / "intrinsics.txt").unlink()
    index = prepare("nyu-depth", tmp_path / "src", tmp_path / "nyu")
    assert index.count == 1
    reasons = {s["name"]: s["reason"] for s in index.skipped}
    assert "intrinsics.txt" in reasons[f"{items[1][0]}/{items[1][1]}"]
