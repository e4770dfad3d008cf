"""`vitlens prepare` + `vitlens eval` end to end on real ModelNet40 shapes and synthetic ScanObjectNN files."""
from __future__ import annotations

import json
import math
import shutil
from collections import defaultdict
from pathlib import Path

import h5py
import numpy as np
import pyarrow.parquet as pq
from typer.testing import CliRunner

from vitlens_cli.cli.app import app
from vitlens_cli.data.meta import classnames
from vitlens_cli.evaluation.report import metrics_from_predictions

runner = CliRunner()

# Official test-split size per class (the rest of each class, in filelist order, is train).
_SMALL = {"bench", "bowl", "cone", "cup", "curtain", "door", "flower_pot", "keyboard", "lamp", "laptop", "person",
          "radio", "sink", "stairs", "stool", "tent", "wardrobe", "xbox"}
_K = {"bathtub": 50, "desk": 86, "dresser": 86, "night_stand": 86} | {c: 20 for c in _SMALL}


def official_tree(fixtures: Path, dest: Path) -> tuple[Path, list[str]]:
    """The fixture shapes laid out as modelnet40_normal_resampled, with a test list from filelist.txt."""
    src = fixtures / "modelnet40" / "normal_resampled"
    root = dest / "modelnet40_normal_resampled"
    root.mkdir(parents=True)
    shutil.copy(src / "modelnet40_shape_names.txt", root)
    by_class = defaultdict(list)
    for line in (src / "filelist.txt").read_text().split():
        cls, name = line.split("/")
        by_class[cls].append(name[:-4])
    test_ids = {i for cls, ids in by_class.items() for i in ids[-_K.get(cls, 100):]}
    present = []
    for f in sorted(src.glob("*/*.txt")):
        (root / f.parent.name).mkdir(exist_ok=True)
        shutil.copy(f, root / f.parent.name / f.name)
        if f.stem in test_ids:
            present.append(f.stem)
    (root / "modelnet40_test.txt").write_text("\n".join(present) + "\n")
    return dest, present


def _independent_top5(data: Path, n_expected: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """``(labels, top-5 class indices)`` of the tiny model on the prepared cache, computed here from the model
    alone: the shards read with numpy, the classifier built from the 64 templates by hand, ranks by argsort.

    Batches are formed exactly as eval forms them (same size, same order, same per-shape seeds), so every
    float is computed the same way and the ranks are exact, not close.
    """
    import torch

    from vitlens_cli.data.meta import templates
    from vitlens_cli.models import load_model, prepare_points
    from vitlens_cli.points import PointCloud

    index = json.loads((data / "modelnet40" / "index.json").read_text())
    points = np.concatenate([np.load(data / "modelnet40" / s["points"]) for s in index["shards"]])
    labels = np.concatenate([np.load(data / "modelnet40" / s["labels"]) for s in index["shards"]])
    assert len(points) == n_expected
    model = load_model("tiny")
    with torch.inference_mode():
        rows = []
        for name in index["classes"]:
            emb = model.encode_text([t.format(name) for t in templates()])
            emb = emb / emb.norm(dim=-1, keepdim=True)
            mean = emb.mean(dim=0)
            rows.append(mean / mean.norm())
        classifier = torch.stack(rows).float()
        scores = []
        for start in range(0, len(points), batch_size):
            batch = [prepare_points(PointCloud(points[i]), model.cfg.preprocess, source_up_axis="y", seed=i)
                     for i in range(start, min(start + batch_size, len(points)))]
            emb = model.encode_points(torch.from_numpy(np.stack(batch)), normalize=True)
            scores.append((emb @ classifier.T).float().numpy())
    scores = np.concatenate(scores)
    # best first; equal scores go to the smaller class index
    return labels, np.argsort(-scores, axis=1, kind="stable")[:, :5]


def test_prepare_and_eval_modelnet40(fixtures, tmp_path):
    tree, test_ids = official_tree(fixtures, tmp_path / "release")
    assert len(test_ids) == 20  # the fixture README lists 20 test-split shapes
    data = tmp_path / "data"
    res = runner.invoke(app, ["prepare", "modelnet40", "--root", str(data), "--from", str(tree)])
    assert res.exit_code == 0, res.output
    assert "20 shapes" in res.output
    index = json.loads((data / "modelnet40" / "index.json").read_text())
    assert index["count"] == 20 and index["num_points"] == 8192 and index["up_axis"] == "y"
    points = np.load(data / "modelnet40" / index["shards"][0]["points"])
    assert points.shape == (20, 8192, 3)
    np.testing.assert_allclose(np.linalg.norm(points, axis=2).max(axis=1), 1.0, atol=1e-5)

    again = runner.invoke(app, ["prepare", "modelnet40", "--root", str(data), "--from", str(tree)])
    assert again.exit_code == 0 and "already prepared" in again.output

    out = tmp_path / "out"
    cache = tmp_path / "cache"
    args = ["eval", "modelnet40", "--data-root", str(data), "--model", "tiny", "--out", str(out), "--workers", "0",
            "--batch-size", "8", "--precision", "fp32"]  # compared with an fp32 encode below
    res = runner.invoke(app, args, env={"VITLENS_CACHE": str(cache)})
    assert res.exit_code == 0, res.output
    for name in ("metrics.json", "per_class.csv", "predictions.parquet", "confusion.png"):
        assert (out / name).is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["benchmark"] == "modelnet40" and metrics["n"] == 20 and metrics["model"] == "tiny"
    assert metrics["prompts_encoded"] == 40 * 64 and metrics["precision"] == "fp32"

    labels, top5 = _independent_top5(data, 20, batch_size=8)
    hit = top5 == labels[:, None]
    expected = {"top1": hit[:, 0].sum() / 20, "top3": hit[:, :3].any(axis=1).sum() / 20,
                "top5": hit.any(axis=1).sum() / 20}
    per_class = [hit[labels == c, 0].mean() for c in np.unique(labels)]
    for key, value in expected.items():
        assert metrics[key] == value, (key, metrics[key], value)  # counts over 20: exact fractions
    # an average of per-class fractions: equal up to the rounding of summing ~20 doubles
    assert math.isclose(metrics["mean_class_acc"], sum(per_class) / len(per_class), rel_tol=1e-12)
    table = pq.read_table(out / "predictions.parquet").to_pydict()
    assert sorted(Path(p).stem for p in table["path"]) == sorted(test_ids)
    assert table["top5_indices"] == top5.tolist() and table["label_index"] == labels.tolist()
    recomputed = metrics_from_predictions(out / "predictions.parquet", classnames("modelnet40"))
    for key in ("n", "top1", "top3", "top5", "mean_class_acc"):
        assert getattr(recomputed, key) == metrics[key]

    res = runner.invoke(app, args + ["--json", "--workers", "2"], env={"VITLENS_CACHE": str(cache)})
    assert res.exit_code == 0, res.output
    second = json.loads((out / "metrics.json").read_text())
    assert second["prompts_encoded"] == 0  # the classifier came from the cache
    assert second["top1"] == metrics["top1"] and second["top5"] == metrics["top5"]  # workers change nothing


def _write_sonn(path: Path, labels: np.ndarray, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as fh:
        fh["data"] = rng.normal(size=(len(labels), 2048, 3)).astype(np.float32)
        fh["label"] = labels.astype(np.int64)
        fh["mask"] = np.zeros((len(labels), 2048), np.int64)


def test_prepare_and_eval_synthetic_scanobjectnn(tmp_path):
    release = tmp_path / "h5_files"
    labels = np.array([0, 14, 3, 9, 10])
    _write_sonn(release / "main_split" / "test_objectdataset_augmentedrot_scale75.h5", labels)  # synthetic
    _write_sonn(release / "main_split_nobg" / "test_objectdataset.h5", labels[:2], seed=1)  # synthetic
    data = tmp_path / "data"
    for variant, n in (("pb_t50_rs", 5), ("obj_only", 2)):
        res = runner.invoke(app, ["prepare", "scanobjectnn", "--variant", variant, "--root", str(data),
                                  "--from", str(release)])
        assert res.exit_code == 0, res.output
        assert f"{n} shapes" in res.output
    res = runner.invoke(app, ["prepare", "scanobjectnn", "--variant", "obj_bg", "--root", str(data),
                              "--from", str(release)])
    assert res.exit_code == 2 and "main_split/test_objectdataset.h5" in res.output
    out = tmp_path / "out"
    res = runner.invoke(app, ["eval", "scanobjectnn", "--data-root", str(data), "--out", str(out), "--workers", "0"],
                        env={"VITLENS_CACHE": str(tmp_path / "cache")})
    assert res.exit_code == 0, res.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["variant"] == "pb_t50_rs" and metrics["n"] == 5
    table = pq.read_table(out / "predictions.parquet").to_pydict()
    official = ["bag", "bin", "box", "cabinet", "chair", "desk", "display", "door", "shelf", "table", "bed",
                "pillow", "sink", "sofa", "toilet"]
    assert table["label"] == [official[i] for i in labels]


def test_scanobjectnn_needs_from(tmp_path):
    res = runner.invoke(app, ["prepare", "scanobjectnn", "--root", str(tmp_path)])
    assert res.exit_code == 2
    assert "--from" in res.output and "hkust-vgd" in res.output


def test_eval_own_folder_skips_bad_files(tmp_path):
    rng = np.random.default_rng(0)
    for cls in ("mug", "lamp_post"):
        (tmp_path / "shapes" / cls).mkdir(parents=True)
        for i in range(2):
            np.save(tmp_path / "shapes" / cls / f"{i}.npy", rng.normal(size=(700, 3)).astype(np.float32))
    (tmp_path / "shapes" / "mug" / "broken.ply").write_bytes(b"ply\ngarbage")
    out = tmp_path / "out"
    res = runner.invoke(app, ["eval", str(tmp_path / "shapes"), "--out", str(out), "--workers", "0",
                              "--precision", "bf16"], env={"VITLENS_CACHE": str(tmp_path / "cache")})
    assert res.exit_code == 1
    assert any(ln.startswith("skipped:") and "broken.ply" in ln for ln in res.output.splitlines())
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == 4 and metrics["failed"] == 1 and metrics["precision"] == "bf16"
    assert [c["class"] for c in metrics["per_class"]] == ["lamp post", "mug"]


def test_eval_without_prepare_is_one_line_error(tmp_path):
    res = runner.invoke(app, ["eval", "modelnet40", "--data-root", str(tmp_path)])
    assert res.exit_code == 2
    assert "run `vitlens prepare` first" in res.output


def test_openshape_layout_with_rgb_model(tmp_path):
    rng = np.random.default_rng(3)
    meta = tmp_path / "release" / "meta_data" / "scanobjectnn"
    meta.mkdir(parents=True)
    xyz = np.empty(4, dtype=object)
    for i in range(4):
        xyz[i] = rng.normal(size=(3000, 3)).astype(np.float32)
    np.save(meta / "xyz_label.npy", {"xyz": xyz, "label": np.array([1, 2, 3, 4])})  # synthetic, OpenShape layout
    data = tmp_path / "data"
    res = runner.invoke(app, ["prepare", "scanobjectnn-openshape", "--root", str(data),
                              "--from", str(tmp_path / "release")])
    assert res.exit_code == 0, res.output
    out = tmp_path / "out"
    res = runner.invoke(app, ["eval", "scanobjectnn-openshape", "--data-root", str(data), "--model", "tiny-rgb",
                              "--out", str(out), "--workers", "0", "--json"],
                        env={"VITLENS_CACHE": str(tmp_path / "cache")})
    assert res.exit_code == 0, res.output
    metrics = json.loads(res.output)
    assert metrics["benchmark"] == "scanobjectnn-openshape" and metrics["n"] == 4 and metrics["model"] == "tiny-rgb"
    assert metrics["prompts_encoded"] == 15 * 64


def test_eval_writes_the_worst_errors_page_with_thumbnails(fixtures, tmp_path):
    import base64
    import html
    import io
    import re

    from PIL import Image

    src = fixtures / "modelnet40" / "normal_resampled"
    for cls in ("airplane", "chair", "lamp"):
        (tmp_path / "shapes" / cls).mkdir(parents=True)
        for shape in sorted((src / cls).glob("*.txt")) + sorted((src / "car").glob("*.txt")):
            shutil.copy(shape, tmp_path / "shapes" / cls / shape.name)  # each class also holds a car: errors
    out = tmp_path / "out"
    res = runner.invoke(app, ["eval", str(tmp_path / "shapes"), "--out", str(out), "--workers", "0",
                              "--worst-errors", "3"], env={"VITLENS_CACHE": str(tmp_path / "cache")})
    assert res.exit_code == 0, res.output
    frame = pq.read_table(out / "predictions.parquet").to_pandas()
    frame["top1"] = [row[0] for row in frame["top5_indices"]]
    frame["score"] = [row[0] for row in frame["top5_scores"]]
    wrong = frame[frame["top1"] != frame["label_index"]].sort_values("score", ascending=False, kind="stable")
    assert len(wrong) >= 3, "the tiny model got (almost) everything right: no errors to show"
    page = (out / "worst_errors.html").read_text(encoding="utf-8")
    assert [html.unescape(p) for p in re.findall(r"<div class='path'>(.*?)</div>", page)] == \
        list(wrong["path"][:3])
    for b64 in re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page):
        img = np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB")).astype(int)
        # A rendered cloud (viridis colours), not a grey "no preview" placeholder.
        assert (img.max(axis=2) - img.min(axis=2)).max() > 60
    assert len(re.findall("data:image/png;base64,", page)) == 3
