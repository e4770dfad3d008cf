"""Index.build / search on the real fixtures with the tiny model: rows, self-retrieval, exact ranking, filters."""
from __future__ import annotations

import json

import numpy as np
import pytest

from vitlens_cli.errors import VitlensError
from vitlens_cli.retrieval import Index, Query, read_queries
from vitlens_cli.retrieval.index import RESULT_COLUMNS
from vitlens_cli.retrieval.store import COLUMNS

from .conftest import expected_items

# Two float32 dot products of the same unit vectors, summed in different orders (FAISS vs numpy, batch of 8
# at build time vs a batch of 1 at query time): each may be off by about dim roundings of a unit-scale sum.
DIM = 32
TOL = float(4 * DIM * np.finfo(np.float32).eps)


def test_every_item_is_a_row_with_its_manifest(built_index, fixtures):
    frame = built_index.frame()
    assert list(frame.columns) == list(COLUMNS)
    expected = expected_items(fixtures)
    assert dict(zip(frame["item"], frame["sha256"])) == expected
    assert len(frame) == len(expected) == built_index.rows
    assert set(frame["modality"]) == {"3d"} and set(frame["model"]) == {"tiny"}
    pre = json.loads(frame["preprocessing"].iloc[0])
    assert pre["contract"]["num_points"] == 1024 and pre["seed"] == 0 and pre["mesh_points"] == 10_000
    emb = built_index.embeddings()
    assert emb.shape == (len(expected), DIM)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1, atol=TOL)
    assert built_index.record.ann["kind"] == "flat"


def test_each_file_finds_itself_first_with_score_one(built_index):
    frame = built_index.frame()
    paths = list(dict.fromkeys(frame["path"]))
    result = built_index.search_many([Query("file", p) for p in paths], k=3)
    assert not result.failures
    top = result.hits[result.hits["rank"] == 1]
    assert len(top) == len(frame)  # an h5 stack queries with each of its clouds
    for hit in top.itertuples():
        assert hit.item == hit.query, hit.query
        assert hit.score == pytest.approx(1.0, abs=TOL)


def test_file_queries_are_embedded_in_one_pass_and_keep_query_order(built_index, tmp_path, monkeypatch):
    from vitlens_cli.retrieval import index as index_module

    paths = list(dict.fromkeys(built_index.frame()["path"]))[:3]
    broken = tmp_path / "broken.ply"
    broken.write_text("ply\nformat nonsense\n")
    queries = [Query("file", paths[0]), Query("text", "a chair"), Query("file", str(tmp_path / "gone.ply")),
               Query("file", paths[1]), Query("file", str(broken)), Query("file", paths[0]), Query("file", paths[2])]
    one_by_one = [built_index.encode([q]) for q in queries]
    calls = []
    real = index_module.embed_sources
    monkeypatch.setattr(index_module, "embed_sources", lambda model, sources, *a, **k: (
        calls.append(list(sources)), real(model, sources, *a, **k))[1])
    labels, matrix, origin, failures = built_index.encode(queries)
    assert len(calls) == 1 and len(calls[0]) == 4  # paths[0] asked twice, read once; the missing file never
    assert labels == [label for got in one_by_one for label in got[0]]
    assert origin == [(i, kind) for i, got in enumerate(one_by_one) for _, kind in got[2]]
    np.testing.assert_allclose(matrix, np.concatenate([got[1] for got in one_by_one]), atol=TOL)
    assert [(f.path, f.reason) for f in failures] == [(f.path, f.reason) for got in one_by_one for f in got[3]]
    assert [f.path for f in failures] == [str(tmp_path / "gone.ply"), str(broken)]


def test_exact_search_is_the_brute_force_ranking(built_index):
    queries = [Query("text", "a chair"), Query("text", "an airplane"), Query("file", built_index.frame()["path"][5])]
    labels, matrix, _, _ = built_index.encode(queries)
    hits = built_index.search_many(queries, k=10).hits
    brute = matrix @ built_index.embeddings().T
    for qi, label in enumerate(labels):
        rows = hits[hits["query"] == label]
        assert list(rows["rank"]) == list(range(1, 11))
        ids = rows["row"].to_numpy()
        np.testing.assert_allclose(rows["score"], brute[qi, ids], atol=TOL)
        # Ties aside: nothing left out scores above the last hit, and the hits come best first.
        rest = np.delete(brute[qi], ids)
        assert rest.max() <= rows["score"].min() + TOL
        assert np.all(np.diff(rows["score"].to_numpy()) <= TOL)


def test_results_are_a_dataframe_and_k_is_clipped(built_index):
    hits = built_index.search("a lamp", k=1000)
    assert list(hits.columns) == RESULT_COLUMNS
    assert len(hits) == built_index.rows and sorted(hits["row"]) == list(range(built_index.rows))
    assert hits["score"].between(-1 - TOL, 1 + TOL).all()


def test_modality_filter(built_index):
    assert len(built_index.search("a cup", k=5, modality="3d")) == 5
    assert built_index.search("a cup", k=5, modality="audio").empty  # known, but nothing of it indexed
    with pytest.raises(VitlensError, match="unknown modality"):
        built_index.search("a cup", modality="smell")


def test_bad_k_and_missing_query_file(built_index, tmp_path):
    for k in (0, -3, 1.5):
        with pytest.raises(VitlensError, match="-k"):
            built_index.search("x", k=k)
    with pytest.raises(VitlensError, match="no such file"):
        built_index.search(file=tmp_path / "nope.ply")


def test_queries_file(tmp_path, fixtures):
    shape = fixtures / "meshes" / "chair_0002.off"
    (tmp_path / "q.txt").write_text(f"# comment\n\na red chair\ntext: file: not a path\nfile: {shape}\n"
                                    "image: photo.jpg\n", encoding="utf-8")
    got = read_queries(tmp_path / "q.txt")
    assert got == [Query("text", "a red chair"), Query("text", "file: not a path"), Query("file", str(shape)),
                   Query("image", str(tmp_path / "photo.jpg"))]
    (tmp_path / "empty.txt").write_text("# nothing\n", encoding="utf-8")
    with pytest.raises(VitlensError, match="no queries"):
        read_queries(tmp_path / "empty.txt")


def test_one_index_holds_every_modality(fixtures, tmp_path):
    inputs = [fixtures / "audio", fixtures / "depth" / "NYU0001_depth.png", fixtures / "depth" / "NYU0002_depth.png",
              fixtures / "images", fixtures / "meshes" / "chair_0002.off", fixtures / "clouds" / "owl_rgb.ply"]
    index = Index.build(inputs, tmp_path / "idx", model="tiny-omni", modalities=("depth", "image"))
    frame = index.frame()
    assert frame["modality"].value_counts().to_dict() == {"audio": 4, "depth": 2, "image": 2, "3d": 2}
    for rel in ("audio/dog.flac", "depth/NYU0002_depth.png", "images/dog.jpg", "clouds/owl_rgb.ply"):
        hit = index.search(file=fixtures / rel, k=1).iloc[0]
        assert hit["path"] == str(fixtures / rel) and hit["score"] == pytest.approx(1.0, abs=TOL)
    only_audio = index.search("a dog barking", k=10, modality="audio")
    assert len(only_audio) == 4 and set(only_audio["modality"]) == {"audio"}
    # An image query goes through the image tower even for a .png, which alone would be ambiguous.
    assert index.search(image=fixtures / "images" / "beach.jpg", k=1)["path"].iloc[0] == str(
        fixtures / "images" / "beach.jpg")
