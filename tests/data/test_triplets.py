"""Triplet datasets, each read from a tiny synthetic copy of its documented layout built in tmp_path."""
from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from vitlens_cli.data.meta import templates
from vitlens_cli.data.triplets import (CaptionedShapes, OpenShapeTriplets, Triplet, ULIP2ObjaverseTriplets,
                                       ULIPShapeNetTriplets, safe_loads)
from vitlens_cli.errors import PointFileError, VitlensError

lmdb = pytest.importorskip("lmdb")


def _same(a: Triplet, b: Triplet) -> bool:
    def eq(x, y):
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            return x is not None and y is not None and np.array_equal(x, y)
        return x == y
    return all(eq(getattr(a, f), getattr(b, f)) for f in ("points", "text", "image", "text_feat", "image_feat", "key"))


def _draws(ds, i, epochs=range(12)):
    out = []
    for e in epochs:
        ds.set_epoch(e)
        out.append(ds[i])
    ds.set_epoch(0)
    return out


def _check_determinism(make, n_items):
    a, b = make(0), make(0)
    for i in range(n_items):
        assert _same(a[i], b[i])
        assert _same(a[i], a[i])
    a.set_epoch(3)
    b.set_epoch(3)
    assert all(_same(a[i], b[i]) for i in range(n_items))


# --- ULIP ShapeNet-55 (synthetic) -------------------------------------------------------------

def _synthetic_shapenet(root, with_images=True):
    rng = np.random.default_rng(0)
    (root / "shapenet_pc").mkdir(parents=True)
    taxonomy = [{"synsetId": "02691156", "name": "airplane,aeroplane,plane", "children": []},
                {"synsetId": "03001627", "name": "chair", "children": []}]
    (root / "taxonomy.json").write_text(json.dumps(taxonomy))
    train = ["02691156-aaa.npy", "03001627-bbb.npy", "02691156-ccc.npy"]
    (root / "train.txt").write_text("\n".join(train) + "\n")
    (root / "test.txt").write_text("03001627-ddd.npy\n")
    for f in train + ["03001627-ddd.npy"]:
        np.save(root / "shapenet_pc" / f, rng.normal(size=(64, 3)).astype(np.float32))
        if with_images:
            stem = f[:-4]
            d = root / "rendered_images" / stem
            d.mkdir(parents=True)
            for deg in range(0, 360, 12):
                for kind in ("", "_depth0001"):
                    (d / f"{stem}_r_{deg:03d}{kind}.png").write_bytes(b"png")
    return train


def test_ulip_shapenet_synthetic(tmp_path):
    train = _synthetic_shapenet(tmp_path)
    ds = ULIPShapeNetTriplets(tmp_path, "train", seed=1)
    assert len(ds) == 3
    assert len(ULIPShapeNetTriplets(tmp_path, "train", whole=True)) == 4
    t = ds[0]
    assert t.key == "02691156-aaa" and t.points.shape == (64, 3) and t.points.dtype == np.float32
    np.testing.assert_array_equal(t.points, np.load(tmp_path / "shapenet_pc" / train[0]))
    assert t.text_feat is None and t.image_feat is None
    tmpl = templates("ulip_64")
    texts, images = set(), set()
    for t in _draws(ds, 0, range(40)):
        assert any(t.text == x.format(n) for x in tmpl for n in ("airplane", "aeroplane", "plane"))
        assert t.image.startswith(str(tmp_path / "rendered_images" / "02691156-aaa" / "02691156-aaa_r_"))
        texts.add(t.text)
        images.add(t.image)
    assert len(texts) > 10 and len(images) > 10
    assert all(t.text in {x.format("chair") for x in tmpl} for t in _draws(ds, 1))
    _check_determinism(lambda s: ULIPShapeNetTriplets(tmp_path, "train", seed=s), 3)
    assert not all(_same(x, y) for x, y in zip(_draws(ds, 0, [0]), _draws(ds, 0, [1])))
    bare = ULIPShapeNetTriplets(tmp_path, "train", use_templates=False)
    assert bare[0].text in ("airplane", "aeroplane", "plane")


def test_ulip_shapenet_missing_images_and_bad_file(tmp_path):
    _synthetic_shapenet(tmp_path, with_images=False)
    ds = ULIPShapeNetTriplets(tmp_path, "train")
    assert ds[0].image is None
    (tmp_path / "shapenet_pc" / "03001627-bbb.npy").write_bytes(b"garbage")
    with pytest.raises(PointFileError, match="03001627-bbb.npy"):
        ds[1]
    with pytest.raises(VitlensError, match="val.txt"):
        ULIPShapeNetTriplets(tmp_path, "val")
    with pytest.raises(IndexError):
        ds[3]


# --- ULIP-2 Objaverse LMDB (synthetic) --------------------------------------------------------

def _write_lmdb(path, records, protocol=4):
    path.mkdir(parents=True, exist_ok=True)
    env = lmdb.open(str(path), map_size=1 << 24)
    with env.begin(write=True) as txn:
        for k, v in records.items():
            txn.put(k.encode(), v if isinstance(v, bytes) else pickle.dumps(v, protocol=protocol))
        txn.put(b"__len__", str(len(records)).encode())
    env.close()


def test_ulip2_objaverse_synthetic(tmp_path):
    rng = np.random.default_rng(0)
    imgs = [f"img{v}".encode() for v in range(4)]
    caps = [[f"view {v} caption {c}" for c in range(3)] for v in range(4)]
    rec_a = {"pc": rng.normal(size=(32, 6)).astype(np.float32), "images": imgs, "captions": caps}
    rec_b = {"xyz": rng.normal(size=(16, 3)), "rgb": rng.uniform(size=(16, 3)), "image": b"only",
             "captions": ["a red chair", "a chair"]}
    rec_c = {"points": rng.normal(size=(8, 3)).astype(np.float32), "images": np.zeros((2, 4, 4, 3), np.uint8)}
    _write_lmdb(tmp_path / "ulip_batches" / "bucket_0", {"uid_a": rec_a, "uid_b": rec_b}, protocol=2)
    _write_lmdb(tmp_path / "ulip_batches" / "bucket_1", {"uid_c": rec_c}, protocol=5)
    ds = ULIP2ObjaverseTriplets(tmp_path / "ulip_batches", seed=0)
    assert len(ds) == 3
    assert [ds[i].key for i in range(3)] == ["uid_a", "uid_b", "uid_c"]
    a = ds[0]
    assert a.points.shape == (32, 6) and a.points.dtype == np.float32
    for t in _draws(ds, 0, range(30)):
        v = imgs.index(t.image)
        assert t.text in caps[v]  # the caption belongs to the chosen view
    b = ds[1]
    assert b.points.shape == (16, 6) and b.image == b"only" and b.text in rec_b["captions"]
    c = ds[2]
    assert c.text is None and c.image.startswith(b"\x89PNG") and c.points.shape == (8, 3)
    _check_determinism(lambda s: ULIP2ObjaverseTriplets(tmp_path / "ulip_batches", seed=s), 3)
    # a single environment as root works too
    assert len(ULIP2ObjaverseTriplets(tmp_path / "ulip_batches" / "bucket_1")) == 1


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_ulip2_refuses_unsafe_pickles(tmp_path):
    _write_lmdb(tmp_path / "db", {"bad": pickle.dumps({"pc": np.zeros((4, 3)), "x": _Evil()}),
                                  "junk": b"not a pickle"})
    ds = ULIP2ObjaverseTriplets(tmp_path / "db")
    with pytest.raises(VitlensError, match="refusing to load 'builtins.print'"):
        ds[0]
    with pytest.raises(VitlensError, match="junk"):
        ds[1]
    assert safe_loads(pickle.dumps({"a": [np.arange(3)], "b": b"x"}, protocol=5))["b"] == b"x"
    (tmp_path / "empty").mkdir()
    with pytest.raises(VitlensError, match="no LMDB"):
        ULIP2ObjaverseTriplets(tmp_path / "empty")


# --- OpenShape (synthetic) --------------------------------------------------------------------

def _feat(tag, dim=8):
    return np.full((1, dim), float(tag), np.float32)


def _synthetic_openshape_shape(uid, dataset, n_text=2, blip="a blip caption", msft="", n_retr=2):
    rng = np.random.default_rng(abs(hash(uid)) % 1000)
    return {
        "dataset": dataset, "group": "000-001", "id": uid,
        "xyz": rng.uniform(-1, 1, (100, 3)).astype(np.float32), "rgb": rng.uniform(0, 1, (100, 3)).astype(np.float32),
        "image_feat": np.stack([np.full(8, 100 + v, np.float32) for v in range(12)]),
        "thumbnail_feat": np.full(8, 999, np.float32),
        "text": [f"name {k}" for k in range(n_text)],
        "text_feat": [{"original": _feat(10 + k), "prompt_avg": _feat(20 + k)} for k in range(n_text)],
        "blip_caption": blip, "blip_caption_feat": {"original": _feat(30), "prompt_avg": _feat(31)},
        "msft_caption": msft, "msft_caption_feat": {"original": _feat(40), "prompt_avg": _feat(41)},
        "retrieval_text": [f"retrieved {k}" for k in range(n_retr)],
        "retrieval_text_feat": [{"original": _feat(50 + k), "prompt_avg": _feat(60 + k)} for k in range(n_retr)],
    }


def test_openshape_synthetic(tmp_path):
    root = tmp_path / "objaverse-processed" / "merged_for_training_final"
    split = []
    for uid, dataset in (("u1", "Objaverse"), ("u2", "ShapeNet"), ("u3", "ABO")):
        d = root / dataset / "000-001"
        d.mkdir(parents=True, exist_ok=True)
        np.save(d / f"{uid}.npy", _synthetic_openshape_shape(uid, dataset), allow_pickle=True)
        tail = f"{dataset}/000-001/{uid}.npy"
        split.append({"id": uid, "dataset": dataset, "group": "000-001",
                      "data_path": f"/mnt/data/objaverse-processed/merged_for_training_final/{tail}"})
    split.append({"id": "u1", "dataset": "Objaverse", "group": "000-001"})  # no data_path: built from fields
    sj = tmp_path / "train_all.json"
    sj.write_text(json.dumps(split))
    ds = OpenShapeTriplets(root, sj, seed=0)
    assert len(ds) == 4
    t = ds[1]
    assert t.key == "ShapeNet/000-001/u2" and t.points.shape == (100, 6) and t.points.dtype == np.float32
    assert t.image is None
    assert ds[3].key == "Objaverse/000-001/u1"
    # Objaverse: name text is always the first; prompt_avg for names/captions, original for retrieval
    obj_text_vals, obj_img_vals, other_text_vals, other_img_vals = set(), set(), set(), set()
    for e in range(60):
        ds.set_epoch(e)
        o, s = ds[0], ds[1]
        for trip, tv, iv in ((o, obj_text_vals, obj_img_vals), (s, other_text_vals, other_img_vals)):
            assert trip.text_feat.shape == (8,) and trip.text_feat.dtype == np.float32
            assert trip.image_feat.shape == (8,)
            tv.add((trip.text, float(trip.text_feat[0])))
            iv.add(float(trip.image_feat[0]))
    assert obj_text_vals <= {("name 0", 20.0), ("a blip caption", 31.0), ("retrieved 0", 50.0), ("retrieved 1", 51.0)}
    assert ("name 0", 20.0) in obj_text_vals and ("a blip caption", 31.0) in obj_text_vals
    assert ("name 1", 21.0) in other_text_vals  # non-Objaverse: any name text
    assert 999.0 in obj_img_vals and obj_img_vals - {999.0} <= {100.0 + v for v in range(12)}
    assert other_img_vals <= {100.0 + v for v in range(12)} and len(other_img_vals) > 3
    _check_determinism(lambda s: OpenShapeTriplets(root, sj, seed=s), 4)
    # original features, text source restriction and GPT-4 filtering
    flt = tmp_path / "gpt4_filtering.json"
    flt.write_text(json.dumps({"u1": {"flag": "N"}}))
    ds2 = OpenShapeTriplets(root, sj, use_prompt_engineering=False, text_source=("text",), gpt4_filtering=flt)
    assert ds2[0].text is None and ds2[0].text_feat is None
    assert {float(x.text_feat[0]) for x in _draws(ds2, 1)} <= {10.0, 11.0}


def test_openshape_errors(tmp_path):
    sj = tmp_path / "split.json"
    sj.write_text(json.dumps([{"id": "x", "dataset": "ABO", "group": "g"}]))
    ds = OpenShapeTriplets(tmp_path, sj)
    with pytest.raises(PointFileError, match="x.npy"):
        ds[0]
    (tmp_path / "ABO" / "g").mkdir(parents=True)
    np.save(tmp_path / "ABO" / "g" / "x.npy", np.array([_Evil()], dtype=object), allow_pickle=True)
    with pytest.raises(VitlensError, match="x.npy"):
        ds[0]


# --- captioned shapes CSV (synthetic) ---------------------------------------------------------

def test_captioned_shapes_synthetic(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "shapes").mkdir()
    np.savetxt(tmp_path / "shapes" / "a.xyz", rng.normal(size=(20, 3)))
    pts6 = np.concatenate([rng.normal(size=(10, 3)), rng.uniform(size=(10, 3))], axis=1)
    np.save(tmp_path / "shapes" / "b.npy", pts6.astype(np.float32))
    csv_path = tmp_path / "captions.csv"
    csv_path.write_text("path,caption,image\n"
                        "shapes/a.xyz,a cube|a box,views/a0.png\n"
                        "shapes/b.npy,\"a red, round ball\",\n"
                        "shapes/a.xyz,a crate,views/a1.png\n")
    ds = CaptionedShapes(csv_path, seed=0)
    assert len(ds) == 2
    a, b = ds[0], ds[1]
    assert a.key == "shapes/a.xyz" and a.points.shape == (20, 3) and a.points.dtype == np.float32
    assert b.points.shape[0] == 10 and b.text == "a red, round ball" and b.image is None
    texts = {t.text for t in _draws(ds, 0, range(30))}
    images = {t.image for t in _draws(ds, 0, range(30))}
    assert texts == {"a cube", "a box", "a crate"}
    assert images == {str(tmp_path / "views" / "a0.png"), str(tmp_path / "views" / "a1.png")}
    _check_determinism(lambda s: CaptionedShapes(csv_path, seed=s), 2)
    # header optional
    headless = tmp_path / "plain.csv"
    headless.write_text("shapes/a.xyz,a cube\n")
    assert CaptionedShapes(headless)[0].text == "a cube"
    missing = tmp_path / "missing.csv"
    missing.write_text("shapes/nope.ply,a thing\n")
    with pytest.raises(PointFileError, match="nope.ply"):
        CaptionedShapes(missing)[0]
    with pytest.raises(VitlensError):
        CaptionedShapes(tmp_path / "absent.csv")
