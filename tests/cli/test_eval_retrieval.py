"""`vitlens eval CAPTIONS.csv` end to end with tiny-omni on real audio clips, ModelNet40 shapes and a depth map:
the ranks are checked against embeddings computed here through the modality plug-ins, the metrics against a
recomputation from per_query.parquet, and a second run encodes no caption."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

from vitlens_cli.cli.app import app

runner = CliRunner()
# Cosines of unit float32 vectors, computed here one item at a time and there in batches.
TOL = 1e-5

# (file under the fixtures, where it goes beside the CSV, its captions)
ITEMS = [
    ("audio/dog.flac", "sounds/dog.flac", ["a dog barks", "a dog, barking loudly"]),
    ("audio/sea_wave.flac", "sounds/sea.flac", ["waves crash on the shore", "something outdoors"]),
    ("audio/crackling_fire.flac", "sounds/fire.flac", ["a fire crackles"]),
    ("audio/chirping_birds.flac", "sounds/birds.flac", ["birds chirp in the morning", "something outdoors"]),
    ("modelnet40/normal_resampled/airplane/airplane_0703.txt", "shapes/airplane.txt", ["an airplane"]),
    ("modelnet40/normal_resampled/chair/chair_0962.txt", "shapes/chair.txt", ["a wooden chair"]),
    ("modelnet40/normal_resampled/guitar/guitar_0165.txt", "shapes/guitar.txt", ["a guitar"]),
    ("depth/NYU0001_depth.png", "depth/room.png", ["a depth map of a room"]),  # .png: needs --modality depth
]


@pytest.fixture(scope="module")
def captions_csv(fixtures: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("captions")
    lines = ["path,caption"]
    for src, dest, texts in ITEMS:
        (root / dest).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(fixtures / src, root / dest)
        lines += [f'{dest},"{t}"' for t in texts]
    (root / "captions.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root / "captions.csv"


def _independent_scores(csv: Path) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """(items, captions, scores (captions, items), relevance): every file read and prepared here one at a time
    through its modality plug-in (3D through the point reader and the model card's preprocessing)."""
    from vitlens_cli.models import load_model, prepare_points
    from vitlens_cli.modalities import get_modality
    from vitlens_cli.points import read_points

    model = load_model("tiny-omni")
    items = [str(csv.parent / dest) for _, dest, _ in ITEMS]
    texts = list(dict.fromkeys(t for _, _, ts in ITEMS for t in ts))
    relevance = np.array([[t in ts for _, _, ts in ITEMS] for t in texts])
    rows = []
    with torch.inference_mode():
        for path in items:
            if path.endswith(".txt"):
                cloud = read_points(path)
                x = torch.from_numpy(prepare_points(cloud, model.cfg.preprocess, seed=0))
                rows.append(model.encode("3d", x[None], normalize=True)[0])
            else:
                name = "audio" if path.endswith(".flac") else "depth"
                mod = get_modality(name)
                rows.append(model.encode(name, mod.prepare(path, mod.default_contract())[None], normalize=True)[0])
        text = model.encode_text(texts, normalize=True)
    return items, texts, (text @ torch.stack(rows).T).numpy(), relevance


def _run(csv: Path, out: Path, cache: Path, *extra: str):
    return runner.invoke(app, ["eval", str(csv), "--model", "tiny-omni", "--modality", "depth", "--out", str(out),
                               "--precision", "fp32", *extra], env={"VITLENS_CACHE": str(cache)})


def test_retrieval_eval_end_to_end(captions_csv: Path, tmp_path: Path) -> None:
    out, cache = tmp_path / "out", tmp_path / "cache"
    res = _run(captions_csv, out, cache)
    assert res.exit_code == 0, res.output
    assert "text → file" in res.stdout and "file → text" in res.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["task"] == "retrieval" and metrics["model"] == "tiny-omni" and metrics["precision"] == "fp32"
    assert (metrics["items"], metrics["captions"], metrics["pairs"]) == (8, 10, 11)
    assert metrics["modalities"] == {"3d": 3, "audio": 4, "depth": 1}
    assert metrics["captions_encoded"] == 10 and metrics["failed"] == 0 and metrics["dropped_captions"] == 0
    assert "any of the file's captions" in metrics["protocol"]["item_to_text"]

    items, texts, scores, relevance = _independent_scores(captions_csv)
    table = pq.read_table(out / "per_query.parquet").to_pylist()
    for direction, s, rel, queries, gallery in (("text_to_item", scores, relevance, texts, items),
                                                ("item_to_text", scores.T, relevance.T, items, texts)):
        rows = [r for r in table if r["direction"] == direction]
        assert [r["query"] for r in rows] == queries
        summary = metrics[direction]
        assert (summary["n_queries"], summary["n_gallery"]) == (len(queries), len(gallery))
        for row, s_q, rel_q in zip(rows, s, rel):
            # Both galleries have at most 10 entries, so the listed best entries are the whole ranking: each
            # once, with the score computed here, best first (up to the rounding of batched float32 sums).
            listed = [gallery.index(name) for name in row["top10"]]
            assert sorted(listed) == list(range(len(gallery)))
            np.testing.assert_allclose(row["top10_scores"], s_q[listed], atol=TOL)
            assert all(a >= b - 2 * TOL for a, b in zip(s_q[listed], s_q[listed][1:]))
            expected_ranks = sorted(listed.index(j) + 1 for j in np.flatnonzero(rel_q))
            assert row["relevant_ranks"] == expected_ranks
            assert row["n_relevant"] == rel_q.sum() and row["first_rank"] == expected_ranks[0]
        # The metrics, recomputed from the table alone.
        first = np.array([r["first_rank"] for r in rows])
        for k in (1, 5, 10):
            assert summary[f"R@{k}"] == np.count_nonzero(first <= k) / len(rows)
        ap = [np.mean([j / rank for j, rank in enumerate(r["relevant_ranks"], start=1)]) for r in rows]
        assert [r["average_precision"] for r in rows] == pytest.approx(ap, rel=1e-12)
        assert summary["mAP"] == pytest.approx(np.mean(ap), rel=1e-12)
        assert summary["median_rank"] == np.median(first) and summary["mean_rank"] == pytest.approx(first.mean())

    again = _run(captions_csv, out, cache, "--json")
    assert again.exit_code == 0, again.output
    second = json.loads(again.stdout)
    assert second["captions_encoded"] == 0  # the caption embeddings came from the cache
    for direction in ("text_to_item", "item_to_text"):
        assert second[direction] == pytest.approx(metrics[direction], rel=1e-6)


def test_limit_takes_the_first_files_and_their_captions(captions_csv: Path, tmp_path: Path) -> None:
    res = _run(captions_csv, tmp_path / "out", tmp_path / "cache", "--limit", "2", "--json")
    assert res.exit_code == 0, res.output
    metrics = json.loads(res.stdout)
    assert (metrics["items"], metrics["captions"]) == (2, 4) and metrics["modalities"] == {"audio": 2}
    assert metrics["text_to_item"]["n_gallery"] == 2 and metrics["item_to_text"]["n_gallery"] == 4
