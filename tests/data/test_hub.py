"""Releases on the Hugging Face Hub through huggingface_hub, against a Hub-compatible server on 127.0.0.1.

The server is tests/_hub.py's (HEAD/GET ``resolve/`` with ``X-Repo-Commit`` and a sha256 ``ETag``), here
serving dataset repos. Only public hooks are used: the ``hub_endpoint`` / ``hub_cache_dir``
arguments in-process, and ``HF_ENDPOINT`` / ``HF_HUB_CACHE`` / ``HF_HUB_OFFLINE`` / ``HF_TOKEN`` in the
environment of a fresh ``vitlens prepare`` process (huggingface_hub reads them at import).
"""
from __future__ import annotations

import hashlib
import io
import os
import pickle
import subprocess
import sys
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tests._hub import COMMIT, running_hub
from vitlens_cli.data import modelnet40
from vitlens_cli.data.cache import CachedPoints
from vitlens_cli.data.meta import classnames
from vitlens_cli.data.prepare import pipeline
from vitlens_cli.data.prepare.hub import HubError
from vitlens_cli.data.prepare.pipeline import RELEASES, prepare_dataset
from vitlens_cli.points import PointCloud, normalize

pytest.importorskip("huggingface_hub")
REPO_ROOT = Path(__file__).resolve().parents[2]
ULIP = "SFXX/ulip"
MN = "ULIP-1/modelnet40_normal_resampled"
SYNTH_IDS = ["airplane_0627", "chair_0890", "flower_pot_0150", "night_stand_0201"]


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    with running_hub(monkeypatch, datasets=True) as (server, endpoint):
        yield server, {"hub_endpoint": endpoint, "hub_cache_dir": tmp_path / "hf_cache"}


def _ulip_modelnet(seed: int = 3) -> tuple[dict[str, bytes], list[np.ndarray]]:
    """ULIP's processed ModelNet40 folder: shape names, test list and the pickled ``[points, labels]`` file."""
    rng = np.random.default_rng(seed)
    shapes = sorted({i.rsplit("_", 1)[0] for i in SYNTH_IDS})
    clouds = [(rng.normal(size=(modelnet40.NUM_POINTS, 6)) * 2 + 1).astype(np.float32) for _ in SYNTH_IDS]
    labels = [np.array([shapes.index(i.rsplit("_", 1)[0])], dtype=np.int32) for i in SYNTH_IDS]
    return {f"{ULIP}/{MN}/modelnet40_shape_names.txt": ("\n".join(shapes) + "\n").encode(),
            f"{ULIP}/{MN}/modelnet40_test.txt": ("\n".join(SYNTH_IDS) + "\n").encode(),
            f"{ULIP}/{MN}/{modelnet40.PROCESSED}": pickle.dumps([clouds, labels], protocol=4)}, clouds


def _gets(server) -> list[str]:
    return [path for method, path, _ in server.requests if method == "GET"]


def test_modelnet40_comes_from_ulips_hub_files(hub, tmp_path: Path) -> None:
    server, where = hub
    files, clouds = _ulip_modelnet()
    server.files.update(files)
    summary = prepare_dataset("modelnet40", tmp_path / "data", **where)
    assert summary.count == len(SYNTH_IDS) and summary.converted == len(SYNTH_IDS)
    assert "ULIP's own FPS" in summary.protocol
    assert sorted(p.rsplit("/", 1)[-1] for p in _gets(server)) == sorted(Path(k).name for k in files)
    assert all(f"/datasets/{ULIP}/resolve/" in p for p in _gets(server))
    ds = CachedPoints(summary.dest)
    lookup = {c: i for i, c in enumerate(classnames("modelnet40"))}
    assert list(ds.labels) == [lookup[i.rsplit("_", 1)[0].replace("_", " ")] for i in SYNTH_IDS]
    for i, cloud in enumerate(clouds):
        np.testing.assert_array_equal(ds[i][0], normalize(PointCloud(cloud[:, :3])).xyz)
    # the files stay in huggingface_hub's cache, not in the data folder
    assert any(where["hub_cache_dir"].rglob(modelnet40.PROCESSED))
    assert not any((tmp_path / "data").rglob(modelnet40.PROCESSED))


def test_token_is_sent(hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server, where = hub
    server.files.update(_ulip_modelnet()[0])
    monkeypatch.setenv("HF_TOKEN", "hf_testtoken123")
    prepare_dataset("modelnet40", tmp_path / "data", **where)
    assert server.requests and all(auth == "Bearer hf_testtoken123" for _, _, auth in server.requests)


def test_shapenet55_fetches_only_the_listed_split(hub, tmp_path: Path) -> None:
    server, where = hub
    rng = np.random.default_rng(0)
    test_files = ["02691156-aaaa.npy", "03001627-bbbb.npy"]
    train_files = ["02691156-cccc.npy", "03001627-dddd.npy", "04379243-eeee.npy"]
    base = f"{ULIP}/ULIP_Shapenet_Triplets"
    server.files[f"{base}/test.txt"] = ("\n".join(test_files) + "\n").encode()
    server.files[f"{base}/train.txt"] = ("\n".join(train_files) + "\n").encode()
    for name in test_files + train_files:
        buf = io.BytesIO()
        np.save(buf, rng.normal(size=(300, 3)).astype(np.float32))
        server.files[f"{base}/shapenet_pc/{name}"] = buf.getvalue()
    summary = prepare_dataset("shapenet55", tmp_path / "data", variant="test", **where)
    assert summary.count == len(test_files)
    fetched = {p.rsplit("/", 1)[-1] for p in _gets(server)}
    assert fetched == {"test.txt", "train.txt", *test_files}
    # every file after the first is asked for at the commit the first one came from: one revision
    assert all(f"/resolve/{COMMIT}/" in p for p in _gets(server)[1:])


def test_archive_on_the_hub_is_extracted(hub, tmp_path: Path) -> None:
    server, where = hub
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("meta_data/modelnet40/test_split.json", "[]")
    server.files["OpenShape/openshape-training-data/meta_data.zip"] = buf.getvalue()
    summary = prepare_dataset("openshape-meta", tmp_path / "data", **where)
    assert (summary.dest / "meta_data" / "modelnet40" / "test_split.json").read_text() == "[]"


def test_missing_file_is_one_line_naming_it_and_from(hub, tmp_path: Path) -> None:
    with pytest.raises(HubError) as err:
        prepare_dataset("modelnet40", tmp_path / "data", **hub[1])
    message = str(err.value)
    assert f"{ULIP}/{MN}/modelnet40_shape_names.txt" in message and "--from" in message
    assert "\n" not in message


def test_damaged_cached_file_is_fetched_again(hub, tmp_path: Path) -> None:
    server, where = hub
    files, _ = _ulip_modelnet()
    server.files.update(files)
    prepare_dataset("modelnet40", tmp_path / "a", **where)
    blob = Path(os.path.realpath(next(where["hub_cache_dir"].rglob(modelnet40.PROCESSED))))
    blob.write_bytes(b"\0" * blob.stat().st_size)
    before = len(_gets(server))
    summary = prepare_dataset("modelnet40", tmp_path / "b", **where)
    assert summary.count == len(SYNTH_IDS)
    assert [p for p in _gets(server)[before:] if p.endswith(modelnet40.PROCESSED)]
    assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    full = dict(os.environ, PYTHONPATH=str(REPO_ROOT), **env)
    return subprocess.run([sys.executable, "-m", "vitlens_cli", *args], env=full, capture_output=True, text=True,
                          timeout=300)


def test_offline_mode_warm_cache_works_cold_cache_is_one_line(hub, tmp_path: Path) -> None:
    server, where = hub
    server.files.update(_ulip_modelnet()[0])
    env = {"HF_ENDPOINT": where["hub_endpoint"], "HF_HUB_CACHE": str(where["hub_cache_dir"])}
    warm = _cli(["prepare", "modelnet40", "--root", str(tmp_path / "online")], env)
    assert warm.returncode == 0, warm.stderr
    assert _gets(server), "the first run downloads"

    server.requests.clear()
    offline = {**env, "HF_HUB_OFFLINE": "1"}
    again = _cli(["prepare", "modelnet40", "--root", str(tmp_path / "offline")], offline)
    assert again.returncode == 0, again.stderr
    assert f"{len(SYNTH_IDS)} shapes" in again.stdout
    assert server.requests == []

    cold = _cli(["prepare", "modelnet40", "--root", str(tmp_path / "cold")],
                {**offline, "HF_HUB_CACHE": str(tmp_path / "empty_cache")})
    assert cold.returncode == 2
    lines = cold.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "HF_HUB_OFFLINE=1" in lines[0]
    assert "--from" in lines[0]
    assert server.requests == []


def test_release_without_a_source_says_so_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args, **kwargs):
        raise AssertionError("no network attempt expected")

    monkeypatch.setattr(pipeline, "download", no_network)
    monkeypatch.setattr(pipeline, "fetch_hub", no_network)
    monkeypatch.setitem(RELEASES, "modelnet40", replace(RELEASES["modelnet40"], hub=None))
    for name in ("scanobjectnn", "objaverse-lvis", "modelnet40"):
        with pytest.raises(pipeline.VitlensError, match="--from") as err:
            prepare_dataset(name, tmp_path / "data")
        assert "cannot be downloaded automatically" in str(err.value) and "\n" not in str(err.value)


def test_every_release_has_a_source_or_says_where_to_get_one() -> None:
    for name, release in RELEASES.items():
        assert release.where, name
        if release.hub is not None:
            assert release.hub.confirmed, f"{name}: record where the Hub layout was confirmed"
        assert release.url is None or "shapenet.cs.stanford.edu" not in release.url, name
