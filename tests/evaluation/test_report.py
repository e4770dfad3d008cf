"""Report files: contents match compute_metrics, predictions recompute exactly, writes are atomic."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vitlens_cli.evaluation.metrics import compute_metrics, topk
from vitlens_cli.evaluation.report import metrics_from_predictions, write_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FILES = {"metrics.json", "per_class.csv", "predictions.parquet", "confusion.png"}
META = {"benchmark": "modelnet40", "variant": "test", "model": "vitlens-tiny", "prompts_encoded": 64}


def _run(n: int, c: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    classnames = [f"class {i}, odd" if i == 1 else f"class_{i}" for i in range(c)]
    labels = rng.integers(0, c, size=n)
    scores = rng.normal(size=(n, c))
    scores[np.arange(n), labels] += 1.5  # make predictions better than chance so top-K differ
    idx, vals = topk(scores, k=5)
    return {
        "names": [f"shapes/{i:03d}.ply" for i in range(n)],
        "labels": labels,
        "topk_idx": idx,
        "topk_scores": vals,
        "classnames": classnames,
        "metrics": compute_metrics(labels, idx, classnames),
    }


def _write(out: Path, run: dict, meta: dict = META) -> dict[str, Path]:
    return write_report(
        out,
        run["metrics"],
        names=run["names"],
        labels=run["labels"],
        topk_idx=run["topk_idx"],
        topk_scores=run["topk_scores"],
        classnames=run["classnames"],
        meta=meta,
    )


def test_writes_all_files_and_nothing_else(tmp_path):
    run = _run(40, 7, seed=0)
    paths = _write(tmp_path / "report", run)
    assert set(paths) == {"metrics", "per_class", "predictions", "confusion"}
    assert {p.name for p in paths.values()} == FILES
    # No temp files survive next to the report.
    assert {p.name for p in (tmp_path / "report").iterdir()} == FILES


def test_metrics_json_meta_first_and_values_match(tmp_path):
    run = _run(40, 7, seed=1)
    meta = {**META, "prompts_encoded": np.int64(64), "checkpoint": Path("/ckpt/x.pt")}
    paths = _write(tmp_path, run, meta)
    doc = json.loads(paths["metrics"].read_text())
    keys = list(doc)
    assert keys[: len(meta)] == list(meta)
    assert keys[len(meta):] == ["n", "top1", "top3", "top5", "mean_class_acc", "per_class"]
    assert doc["prompts_encoded"] == 64 and doc["checkpoint"] == "/ckpt/x.pt"
    m = run["metrics"]
    assert {k: doc[k] for k in ("n", "top1", "top3", "top5", "mean_class_acc")} == {
        "n": m.n, "top1": m.top1, "top3": m.top3, "top5": m.top5, "mean_class_acc": m.mean_class_acc
    }
    assert doc["per_class"] == m.per_class


def test_per_class_csv(tmp_path):
    run = _run(30, 9, seed=2)
    paths = _write(tmp_path, run)
    with paths["per_class"].open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["class", "index", "n", "correct", "top1"]
    assert len(rows) == 9
    for row, ref in zip(rows, run["metrics"].per_class):
        assert row["class"] == ref["class"]  # "class 1, odd" survives the comma
        assert (int(row["index"]), int(row["n"]), int(row["correct"])) == (ref["index"], ref["n"], ref["correct"])
        assert row["top1"] == ("" if ref["top1"] is None else repr(ref["top1"]))


def test_predictions_parquet_schema_and_recompute(tmp_path):
    run = _run(50, 12, seed=3)
    paths = _write(tmp_path, run)
    table = pq.read_table(paths["predictions"])
    assert table.column_names == ["path", "label", "label_index", "top5_labels", "top5_indices", "top5_scores"]
    assert table.schema.field("path").type == pa.string()
    assert table.schema.field("label_index").type == pa.int64()
    assert table.schema.field("top5_labels").type == pa.list_(pa.string())
    assert table.schema.field("top5_indices").type == pa.list_(pa.int64())
    assert table.schema.field("top5_scores").type == pa.list_(pa.float32())
    rows = table.to_pylist()
    assert rows[4]["path"] == run["names"][4]
    assert rows[4]["label"] == run["classnames"][run["labels"][4]]
    assert rows[4]["top5_indices"] == run["topk_idx"][4].tolist()
    assert rows[4]["top5_labels"] == [run["classnames"][i] for i in run["topk_idx"][4]]
    assert rows[4]["top5_scores"] == run["topk_scores"][4].tolist()
    recomputed = metrics_from_predictions(paths["predictions"], run["classnames"])
    assert recomputed == run["metrics"]  # exact, confusion matrix included


def test_fewer_than_five_classes(tmp_path):
    run = _run(10, 3, seed=4)
    paths = _write(tmp_path, run)
    rows = pq.read_table(paths["predictions"]).to_pylist()
    assert all(len(r["top5_indices"]) == 3 for r in rows)
    m = metrics_from_predictions(paths["predictions"], run["classnames"])
    assert m == run["metrics"] and m.top5 == 1.0


def test_confusion_png_valid_with_and_without_tick_labels(tmp_path):
    for c, sub in ((7, "small"), (70, "large")):
        paths = _write(tmp_path / sub, _run(80, c, seed=5))
        data = paths["confusion"].read_bytes()
        assert data[:8] == PNG_SIGNATURE and len(data) > 1000


def test_second_write_overwrites_cleanly(tmp_path):
    first, second = _run(40, 7, seed=6), _run(25, 7, seed=7)
    _write(tmp_path, first)
    paths = _write(tmp_path, second)
    assert {p.name for p in tmp_path.iterdir()} == FILES
    assert json.loads(paths["metrics"].read_text())["n"] == 25
    assert pq.read_table(paths["predictions"]).num_rows == 25
    assert metrics_from_predictions(paths["predictions"], second["classnames"]) == second["metrics"]


def test_meta_clash_and_bad_shapes_write_nothing(tmp_path):
    run = _run(10, 7, seed=8)
    with pytest.raises(ValueError, match="collide"):
        _write(tmp_path / "a", run, {**META, "top1": 0.99})
    bad = {**run, "topk_scores": run["topk_scores"][:, :3]}
    with pytest.raises(ValueError, match="topk_scores"):
        _write(tmp_path / "b", bad)
    bad = {**run, "names": run["names"][:-1]}
    with pytest.raises(ValueError, match="labels"):
        _write(tmp_path / "c", bad)
    assert not any(tmp_path.iterdir())


def test_recompute_with_wrong_classnames_is_refused(tmp_path):
    run = _run(20, 7, seed=9)
    paths = _write(tmp_path, run)
    with pytest.raises(ValueError, match="class list"):
        metrics_from_predictions(paths["predictions"], list(reversed(run["classnames"])))


def test_recompute_from_foreign_parquet_is_refused(tmp_path):
    path = tmp_path / "other.parquet"
    pq.write_table(pa.table({"x": [1, 2]}), path)
    with pytest.raises(ValueError, match="missing column"):
        metrics_from_predictions(path, ["a", "b"])


def _errors_from_parquet(path: Path, n: int) -> list[str]:
    """The n most confident wrong rows, read back from predictions.parquet alone."""
    table = pq.read_table(path).to_pydict()
    wrong = [(-scores[0], i) for i, (label, idx, scores) in
             enumerate(zip(table["label_index"], table["top5_indices"], table["top5_scores"])) if idx[0] != label]
    return [table["path"][i] for _, i in sorted(wrong)[:n]]


def _page_items(page: str) -> tuple[list[str], list[np.ndarray]]:
    import base64
    import html
    import io
    import re

    from PIL import Image

    paths = [html.unescape(p) for p in re.findall(r"<div class='path'>(.*?)</div>", page)]
    images = [np.asarray(Image.open(io.BytesIO(base64.b64decode(b))).convert("RGB"))
              for b in re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)]
    return paths, images


def test_worst_errors_page_shows_the_most_confident_errors_with_their_thumbnails(tmp_path):
    from vitlens_cli.thumbnails import render_points

    run = _run(60, 6, seed=7)
    rng = np.random.default_rng(0)
    asked = []

    def preview(name: str) -> bytes:
        asked.append(name)
        return render_points(rng.normal(size=(300, 3)))

    paths = write_report(tmp_path, run["metrics"], names=run["names"], labels=run["labels"],
                         topk_idx=run["topk_idx"], topk_scores=run["topk_scores"], classnames=run["classnames"],
                         meta=META, preview=preview, worst=5)
    assert paths["worst_errors"] == tmp_path / "worst_errors.html"
    expected = _errors_from_parquet(paths["predictions"], 5)
    page = paths["worst_errors"].read_text(encoding="utf-8")
    shown, images = _page_items(page)
    assert shown == expected and asked == expected
    assert len(images) == 5
    for img in images:
        assert img.shape[:2] == (192, 192) and img.reshape(-1, 3).std(axis=0).max() > 10  # a picture, not blank
    # The first card names the predicted and the true class of the most confident error.
    first = run["names"].index(expected[0])
    assert f"predicted: {run['classnames'][run['topk_idx'][first, 0]]}" in page
    assert f"true: {run['classnames'][run['labels'][first]]}" in page
    assert {p.name for p in tmp_path.iterdir()} == FILES | {"worst_errors.html"}


def test_worst_errors_lists_every_error_when_fewer_than_asked_and_ties_in_row_order():
    from vitlens_cli.evaluation.report import worst_errors

    labels = np.array([0, 1, 2, 0, 1])
    top = np.array([[1, 0], [1, 0], [0, 2], [2, 0], [0, 1]])
    scores = np.array([[0.5, 0.1], [0.9, 0.1], [0.7, 0.1], [0.5, 0.2], [0.8, 0.1]])
    assert worst_errors(labels, top, scores, 10).tolist() == [4, 2, 0, 3]
    assert worst_errors(labels, top, scores, 2).tolist() == [4, 2]


def test_source_preview_renders_files_and_cached_clouds(tmp_path):
    from types import SimpleNamespace

    from vitlens_cli.evaluation.report import source_preview
    from vitlens_cli.thumbnails import render_points, thumbnail

    rng = np.random.default_rng(1)
    cloud, cached = (rng.normal(size=(500, 3)).astype(np.float32) for _ in range(2))
    np.save(tmp_path / "a.npy", cloud)

    class Cache:
        names = ["cached/item_0", str(tmp_path / "a.npy")]

        def __getitem__(self, i):
            return cached, 0, self.names[i]

    preview = source_preview(SimpleNamespace(dataset=Cache(), modality="3d", prepared=False, up_axis="z"))
    assert preview(str(tmp_path / "a.npy")) == thumbnail(tmp_path / "a.npy", "3d", up_axis="z")
    assert preview("cached/item_0") == render_points(cached, None, "z")
    assert preview("cached/item_0") != preview(str(tmp_path / "a.npy"))
