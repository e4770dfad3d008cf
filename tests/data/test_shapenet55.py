"""ShapeNet-55 in ULIP's layout (synthetic clouds) and the shipped synset table (checked against real meta data)."""
from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner

from vitlens_cli.cli.app import app
from vitlens_cli.data.cache import CachedPoints
from vitlens_cli.data.meta import classnames, synsets


def test_synset_table_matches_shapenet_taxonomy(fixtures):
    ref = json.loads((fixtures / "meta" / "shapenet_synset_dict.json").read_text())
    assert synsets("shapenet55") == ref
    assert classnames("shapenet55") == list(ref.values())


def test_prepare_shapenet55_splits_and_skips_broken_files(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "ShapeNet55"
    (root / "shapenet_pc").mkdir(parents=True)
    files = ["02691156-aaa.npy", "04379243-bbb.npy", "03001627-ccc.npy"]
    for f in files:
        np.save(root / "shapenet_pc" / f, rng.normal(size=(9000, 3)).astype(np.float32))
    (root / "shapenet_pc" / "03001627-ccc.npy").write_bytes(b"broken")
    (root / "test.txt").write_text("\n".join(files) + "\n")
    (root / "train.txt").write_text(files[0] + "\n")
    runner = CliRunner()
    res = runner.invoke(app, ["prepare", "shapenet55", "--root", str(tmp_path / "data"), "--from", str(tmp_path)])
    assert res.exit_code == 1  # one broken file: reported, the rest prepared
    assert any(ln.startswith("skipped: 03001627-ccc.npy") for ln in res.output.splitlines())
    ds = CachedPoints(tmp_path / "data" / "shapenet55-test")
    assert ds.names == files[:2]
    assert [ds.index.classes[i] for i in ds.labels] == ["airplane", "table"]
    assert ds[0][0].shape == (8192, 3)
    res = runner.invoke(app, ["prepare", "shapenet55", "--variant", "train", "--root", str(tmp_path / "data"),
                              "--from", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert len(CachedPoints(tmp_path / "data" / "shapenet55-train")) == 1
