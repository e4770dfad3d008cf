"""`vitlens index` and `vitlens search` end to end on the real fixtures: JSON, tables and an HTML page
that headless Chromium loads with every thumbnail decoded."""
from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from tests.conftest import missing_data
from vitlens_cli.cli.app import app

runner = CliRunner()
CHROMIUM = "/usr/bin/chromium"
# Scores are cosines of unit float32 vectors of dim 32, computed in two batches of different sizes.
TOL = 4 * 32 * float(np.finfo(np.float32).eps)


def _inputs(fixtures: Path) -> list[str]:
    return [str(fixtures / "modelnet40" / "normal_resampled" / "*" / "*.txt"), str(fixtures / "meshes"),
            str(fixtures / "clouds"), str(fixtures / "modelnet40" / "npy")]


@pytest.fixture(scope="module")
def index(fixtures, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli-index") / "idx"
    res = runner.invoke(app, ["index", "build", *_inputs(fixtures), "--model", "tiny", "--modality", "3d",
                              "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["rows"] == report["embedded_rows"] > 50 and report["failures"] == []
    return out


def test_info_summarises(index):
    res = runner.invoke(app, ["index", "info", str(index), "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    # 39 ModelNet40 txt + 7 mesh folder files + 3 cloud files + 5 npy; the h5 stack holds several clouds.
    assert info["files"] == 54 and info["rows"] > info["files"]
    assert info["model"] == "tiny" and info["modalities"] == {"3d": info["rows"]} and info["ann"]["kind"] == "flat"
    table = runner.invoke(app, ["index", "info", str(index)])
    assert table.exit_code == 0 and "3d: " in table.stdout


def test_search_by_file_finds_it_first_as_json(index, fixtures):
    query = fixtures / "modelnet40" / "normal_resampled" / "guitar" / "guitar_0165.txt"
    res = runner.invoke(app, ["search", str(index), "--file", str(query), "-k", "5", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    (answer,) = out["queries"]
    ranks = answer["results"]
    assert [r["rank"] for r in ranks] == [1, 2, 3, 4, 5]
    assert ranks[0]["path"] == str(query) and ranks[0]["score"] == pytest.approx(1.0, abs=TOL)
    assert all(a["score"] >= b["score"] for a, b in zip(ranks, ranks[1:]))
    assert out["model"] == "tiny" and out["skipped"] == []


def test_queries_file_and_text_queries_print_tables(index, fixtures, tmp_path):
    shape = fixtures / "meshes" / "chair_0002.off"
    (tmp_path / "q.txt").write_text(f"a wooden chair\nfile: {shape}\n", encoding="utf-8")
    res = runner.invoke(app, ["search", str(index), "--queries", str(tmp_path / "q.txt"), "--text", "a lamp",
                              "-k", "2"])
    assert res.exit_code == 0, res.output
    for title in ("a lamp", "a wooden chair", "chair_0002.off"):
        assert title in res.stdout
    ranks = re.findall(r"^│\s+(\d+) │", res.stdout, flags=re.M)
    assert ranks == ["1", "2"] * 3


def _data_uris(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)]


def _chromium(*args: str, tmp: Path) -> subprocess.CompletedProcess:
    if shutil.which(CHROMIUM) is None:
        missing_data(f"{CHROMIUM} not found (Debian package chromium; `make setup` installs it)")
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                           "--disable-component-update", "--disable-sync", "--no-first-run",
                           f"--user-data-dir={tmp / 'chromium-profile'}", *args],
                          capture_output=True, text=True, timeout=180)


def test_html_page_loads_in_chromium_with_every_thumbnail(index, fixtures, tmp_path):
    page = tmp_path / "results.html"
    queries = [fixtures / "clouds" / "owl_rgb.ply", fixtures / "meshes" / "airplane_0001.off"]
    res = runner.invoke(app, ["search", str(index), "--text", "a <b>bold</b> & odd query", "-k", "4",
                              *sum((["--file", str(q)] for q in queries), []), "--html", str(page)])
    assert res.exit_code == 0, res.output
    html = page.read_text(encoding="utf-8")
    assert "a &lt;b&gt;bold&lt;/b&gt; &amp; odd query" in html and "<b>bold" not in html
    assert "http://" not in html and "https://" not in html  # self-contained: nothing to fetch
    thumbs = _data_uris(html)
    assert len(thumbs) == 3 * 4 + 2  # 4 hits per query, plus a thumbnail of each file query
    for png in thumbs:
        pixels = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.float64)
        assert pixels.std() > 5, "a blank thumbnail"

    # Chromium decodes every image: a copy of the page reports each image's natural width in its title.
    probe = tmp_path / "probe.html"
    probe.write_text(html.replace("</body>", "<script>addEventListener('load', () => { document.title = "
                                             "JSON.stringify([...document.images].map(i => i.naturalWidth)); "
                                             "});</script></body>"), encoding="utf-8")
    dom = _chromium("--virtual-time-budget=20000", "--dump-dom", probe.as_uri(), tmp=tmp_path)
    assert dom.returncode == 0, dom.stderr[-2000:]
    widths = json.loads(re.search(r"<title>(.*?)</title>", dom.stdout).group(1))
    assert len(widths) == len(thumbs) and all(w > 0 for w in widths), widths

    shot = tmp_path / "shot.png"
    res = _chromium(f"--screenshot={shot}", "--window-size=1280,1500", page.as_uri(), tmp=tmp_path)
    assert res.returncode == 0 and shot.is_file(), res.stderr[-2000:]
    image = np.asarray(Image.open(shot).convert("RGB"), dtype=np.int64)
    # The page itself is white and grey: coloured pixels are the rendered clouds' colour maps.
    coloured = (image.max(axis=-1) - image.min(axis=-1)) > 40
    assert coloured.mean() > 0.01, coloured.mean()
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 500


def test_add_embeds_only_new_files(index, fixtures, tmp_path):
    extra = tmp_path / "extra.off"
    extra.write_bytes((fixtures / "meshes" / "toilet_0001.off").read_bytes())
    res = runner.invoke(app, ["index", "add", str(index), str(fixtures / "meshes"), str(extra), "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert (report["unchanged_files"], report["replaced_files"], report["embedded_rows"]) == (7, 0, 1)
    hit = json.loads(runner.invoke(app, ["search", str(index), "--file", str(extra), "-k", "2", "--json"]).stdout)
    # The copy and its original have the same content, so both score 1; the copy is indexed under its own path.
    paths = {r["path"] for r in hit["queries"][0]["results"]}
    assert paths == {str(extra), str(fixtures / "meshes" / "toilet_0001.off")}


def test_build_records_the_precision_and_add_keeps_it(fixtures, tmp_path):
    from vitlens_cli.retrieval import Index

    out = tmp_path / "idx"
    mesh = fixtures / "meshes" / "toilet_0001.off"
    res = runner.invoke(app, ["index", "build", str(mesh), "--model", "tiny", "--precision", "bf16", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert Index(out).record.settings["embed"]["precision"] == "bf16"
    extra = tmp_path / "extra.off"
    extra.write_bytes(mesh.read_bytes() + b"\n")
    assert runner.invoke(app, ["index", "add", str(out), str(extra)]).exit_code == 0
    index = Index(out)
    assert index.record.settings["embed"]["precision"] == "bf16"
    assert all(json.loads(p)["precision"] == "bf16" for p in index.frame()["preprocessing"])
