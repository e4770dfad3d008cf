"""``download_checkpoint`` through huggingface_hub against a real local Hub-compatible HTTP server.

Only public hooks are used: the ``endpoint`` / ``cache_dir`` arguments, and ``HF_HUB_OFFLINE`` set
in the environment of a fresh interpreter (huggingface_hub reads it at import).
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from tests._hub import COMMIT, running_hub
from vitlens_cli.errors import CheckpointError, ConfigError
from vitlens_cli.models import get_spec
from vitlens_cli.models.factory import download_checkpoint, load_official

pytest.importorskip("huggingface_hub")
REPO_ROOT = Path(__file__).resolve().parents[2]
REPO = "acme/lens"
WEIGHTS = b"released weights " * 300


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("VITLENS_CACHE", str(tmp_path / "vitlens_cache"))
    with running_hub(monkeypatch) as (server, endpoint):
        yield server, {"endpoint": endpoint, "cache_dir": tmp_path / "hub_cache"}


def _offline(filename: str, where: dict) -> dict:
    """``download_checkpoint`` in a fresh interpreter with ``HF_HUB_OFFLINE=1``: the path or the error."""
    code = (
        "import json, sys\n"
        "from dataclasses import replace\n"
        "from vitlens_cli.errors import VitlensError\n"
        "from vitlens_cli.models import get_spec\n"
        "from vitlens_cli.models.factory import download_checkpoint\n"
        "a = json.loads(sys.argv[1])\n"
        "cfg = get_spec('tiny'); cfg = replace(cfg, card=replace(cfg.card, hf_repo=a['repo'], hf_filename=a['file']))\n"
        "try:\n"
        "    print(json.dumps({'path': str(download_checkpoint(cfg, endpoint=a['endpoint'], cache_dir=a['cache']))}))\n"
        "except VitlensError as exc:\n"
        "    print(json.dumps({'error': str(exc)}))\n")
    args = json.dumps({"repo": REPO, "file": filename, "endpoint": where["endpoint"], "cache": str(where["cache_dir"])})
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO_ROOT))
    out = subprocess.run([sys.executable, "-c", code, args], env=env, capture_output=True, text=True, timeout=120,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _cfg(filename: str):
    return replace(get_spec("tiny"), card=replace(get_spec("tiny").card, hf_repo=REPO, hf_filename=filename))


def test_download_lands_in_cache_then_works_offline(hub):
    server, where = hub
    payload = b"checkpoint bytes " * 100
    server.files[f"{REPO}/model.pt"] = payload
    path = download_checkpoint(_cfg("model.pt"), **where)
    assert path.read_bytes() == payload
    assert where["cache_dir"] in path.parents
    assert any(r.method == "GET" for r in server.requests)

    # offline: the cached file is found without touching the network
    server.requests.clear()
    again = _offline("model.pt", where)
    assert Path(again["path"]).read_bytes() == payload
    assert server.requests == []

    # offline and not cached: the actionable message
    missing = _offline("other.pt", where)
    assert "not in the Hugging Face cache" in missing["error"] and "--checkpoint FILE" in missing["error"]
    assert server.requests == []


def test_missing_remote_file_is_a_checkpoint_error(hub):
    with pytest.raises(CheckpointError, match=f"{REPO}/absent.pt") as err:
        download_checkpoint(_cfg("absent.pt"), **hub[1])
    assert "\n" not in str(err.value), "one line for the CLI"


def test_no_download_location():
    with pytest.raises(ConfigError, match="no download location"):
        download_checkpoint(get_spec("tiny"))


def test_downloaded_official_file_loads(hub, parity: Path):
    """Download → official ULIP layout → parity embedding: the whole released-file path."""
    import torch
    from safetensors.torch import load_file

    from vitlens_cli.models import read_config

    server, where = hub
    case = parity / "pointbert_untied"
    server.files[f"{REPO}/Datacomp_fake.pt"] = (case / "checkpoint.pt").read_bytes()
    cfg = read_config(case / "config.json")
    cfg = replace(cfg, card=replace(cfg.card, hf_repo=REPO, hf_filename="Datacomp_fake.pt"))
    model = load_official(download_checkpoint(cfg, **where), cfg)
    io = load_file(str(case / "io.safetensors"))
    with torch.no_grad():
        torch.testing.assert_close(model.encode_points(io["points"]), io["embedding"], atol=1e-5, rtol=1e-4)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_hub_sha256_is_recorded_and_shown_without_hashing(hub):
    from vitlens_cli.models.factory import cached_checkpoint, hub_sha256

    server, where = hub
    payload = b"released weights " * 300
    server.files[f"{REPO}/model.pt"] = payload
    assert cached_checkpoint(_cfg("model.pt"), cache_dir=where["cache_dir"]) is None  # not downloaded yet
    path = download_checkpoint(_cfg("model.pt"), **where)
    assert hub_sha256(path) == _sha(payload)
    found = cached_checkpoint(_cfg("model.pt"), cache_dir=where["cache_dir"])
    assert found is not None and found.path == path and found.sha256 == _sha(payload)


def _cached_blob(server, where: dict) -> Path:
    """``model.pt`` (WEIGHTS) published and downloaded once: the cache's blob behind the snapshot link."""
    server.files[f"{REPO}/model.pt"] = WEIGHTS
    return Path(os.path.realpath(download_checkpoint(_cfg("model.pt"), **where)))


def test_damaged_cached_file_is_fetched_again(hub):
    server, where = hub
    blob = _cached_blob(server, where)
    blob.write_bytes(WEIGHTS[:-7] + b"garbage")  # same size, other bytes: only a hash notices
    gets = sum(r.method == "GET" for r in server.requests)
    again = download_checkpoint(_cfg("model.pt"), **where)
    assert again.read_bytes() == WEIGHTS
    assert sum(r.method == "GET" for r in server.requests) == gets + 1


def test_damaged_cached_file_offline_names_the_file(hub):
    server, where = hub
    blob = _cached_blob(server, where)
    blob.write_bytes(b"x" * len(WEIGHTS))
    error = _offline("model.pt", where)["error"]
    assert "damaged" in error and str(blob) in error and _sha(WEIGHTS) in error and "\n" not in error


def test_file_that_never_matches_the_hub_sha256_is_an_error(hub):
    server, where = hub
    payload = b"released weights " * 300
    server.files[f"{REPO}/model.pt"] = payload
    server.etags = {f"{REPO}/model.pt": _sha(b"what the Hub says it is")}
    with pytest.raises(CheckpointError, match="so is a fresh download"):
        download_checkpoint(_cfg("model.pt"), **where)


def test_models_json_shows_the_cached_files_sha256(tmp_path):
    # the cache layout huggingface_hub writes: refs/main -> commit, snapshot symlink -> blobs/<sha256>
    card = get_spec("vitlens-l14-objaverse").card
    payload = b"a cached release"
    repo_dir = tmp_path / f"models--{card.hf_repo.replace('/', '--')}"
    (repo_dir / "blobs").mkdir(parents=True)
    (repo_dir / "blobs" / _sha(payload)).write_bytes(payload)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(COMMIT)
    link = repo_dir / "snapshots" / COMMIT / card.hf_filename
    link.parent.mkdir(parents=True)
    link.symlink_to(os.path.relpath(repo_dir / "blobs" / _sha(payload), link.parent))
    env = dict(os.environ, HF_HUB_CACHE=str(tmp_path), HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO_ROOT))
    out = subprocess.run([sys.executable, "-m", "vitlens_cli", "models", "--json"], env=env, capture_output=True,
                         text=True, timeout=120, check=True)
    rows = {m["name"]: m["downloaded"] for m in json.loads(out.stdout)}
    assert rows["vitlens-l14-objaverse"] == {"path": str(link), "sha256": _sha(payload)}
    assert rows["tiny"] is None  # random init: nothing to download


def _hashes(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every file the checkpoint verification hashes, from now on."""
    from vitlens_cli.models import factory

    hashed: list[Path] = []
    real = factory.file_digest

    def counting(path):
        hashed.append(Path(path))
        return real(path)

    monkeypatch.setattr(factory, "file_digest", counting)
    return hashed


def _settled(blob: Path) -> int:
    """The blob's mtime an hour back (a verification is recorded only for a file not just written)."""
    old = time.time_ns() - 3600 * 10**9
    os.utime(blob, ns=(old, old))
    return old


def test_a_verified_checkpoint_is_not_hashed_again_until_it_changes(hub, monkeypatch):
    server, where = hub
    blob = _cached_blob(server, where)
    _settled(blob)
    hashed = _hashes(monkeypatch)
    download_checkpoint(_cfg("model.pt"), **where)
    assert hashed == [blob]
    assert download_checkpoint(_cfg("model.pt"), **where).read_bytes() == WEIGHTS
    assert hashed == [blob], "the second load takes the recorded verification"
    os.utime(blob)  # touched: another version of the file as far as the record can tell
    download_checkpoint(_cfg("model.pt"), **where)
    assert hashed == [blob, blob]


def test_a_file_corrupted_after_its_verification_is_refused(hub, monkeypatch):
    server, where = hub
    blob = _cached_blob(server, where)
    old = _settled(blob)
    download_checkpoint(_cfg("model.pt"), **where)  # verified and recorded
    blob.write_bytes(WEIGHTS[:-7] + b"garbage")
    os.utime(blob, ns=(old, old))  # same path, size, mtime and inode: only its ctime moved
    hashed = _hashes(monkeypatch)
    error = _offline("model.pt", where)["error"]
    assert "damaged" in error and str(blob) in error
    assert download_checkpoint(_cfg("model.pt"), **where).read_bytes() == WEIGHTS  # fetched again
    assert hashed, "the changed file was hashed, not taken from the record"
