"""`vitlens prepare X --from <synthetic release>` then `vitlens eval X --model tiny-omni` for the list
benchmarks: the outputs (metrics.json with the protocol, predictions/per-query parquet) and metrics equal to a
recomputation from the parquet; a second run encodes no prompt."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from typer.testing import CliRunner

from tests.data.list_releases import touch_and_go
from tests.data.test_imagenet_eeg import write_release
from vitlens_cli.cli.app import app
from vitlens_cli.cli.errors import EXIT_FAILED_ITEMS
from vitlens_cli.evaluation.report import metrics_from_predictions

runner = CliRunner()


def _prepare(name, src, root, *extra):
    res = runner.invoke(app, ["prepare", name, "--from", str(src), "--root", str(root), *extra])
    assert res.exit_code in (0, EXIT_FAILED_ITEMS), res.output  # failed items: files missing from the copy
    return res


def _eval(name, root, out, cache, *extra):
    return runner.invoke(app, ["eval", name, "--model", "tiny-omni", "--data-root", str(root), "--out", str(out),
                               "--workers", "0", "--json", *extra], env={"VITLENS_CACHE": str(cache)})


def _metrics(name, root, out, cache, *extra) -> dict:
    """``metrics.json`` of an eval that must succeed."""
    res = _eval(name, root, out, cache, *extra)
    assert res.exit_code == 0, res.output
    return json.loads((out / "metrics.json").read_text())


def test_touch_and_go_hard_split_end_to_end(tmp_path):
    root, cache = tmp_path / "root", tmp_path / "cache"
    _prepare("touch-and-go", touch_and_go(tmp_path / "tag"), root, "--variant", "hard")
    doc = _metrics("touch-and-go", root, tmp_path / "out", cache, "--variant", "hard")
    assert (doc["benchmark"], doc["variant"], doc["modality"], doc["templates"]) == (
        "touch-and-go", "hard", "tactile", "tactile_binary_2")
    assert doc["prompts_encoded"] == 4 and "test_hard" in doc["protocol"]
    assert doc["n"] == 2  # the frame missing on disk was reported by prepare, the unlabelled one left out
    again = metrics_from_predictions(tmp_path / "out" / "predictions.parquet", ["hard", "soft"])
    assert again.top1 == doc["top1"]
    assert _metrics("touch-and-go", root, tmp_path / "out2", cache, "--variant", "hard")["prompts_encoded"] == 0


def test_imagenet_eeg_end_to_end(tmp_path):
    root = tmp_path / "root"
    _prepare("imagenet-eeg", write_release(tmp_path / "src"), root)
    doc = _metrics("imagenet-eeg", root, tmp_path / "out", tmp_path / "cache")
    assert (doc["benchmark"], doc["variant"], doc["templates"], doc["n"]) == ("imagenet-eeg", "test", "photo_3", 2)
    table = pq.read_table(tmp_path / "out" / "predictions.parquet").to_pydict()
    assert table["label_index"] == [1, 2]
    top1 = np.array([row[0] for row in table["top5_indices"]])
    assert doc["top1"] == float(np.mean(top1 == np.array(table["label_index"])))


def test_clotho_end_to_end_queries_per_listed_caption_and_recall_from_per_query(tmp_path):
    from tests.data.list_releases import clotho_vitlens, zip_folder

    root, cache = tmp_path / "root", tmp_path / "cache"
    _prepare("clotho", zip_folder(clotho_vitlens(tmp_path / "src"), tmp_path / "clotho.zip"), root)
    doc = _metrics("clotho", root, tmp_path / "out", cache)
    assert (doc["task"], doc["benchmark"], doc["variant"], doc["missing_at_prepare"]) == (
        "retrieval", "clotho", "test", 1)
    assert doc["text_to_item"]["n_queries"] == 15 and doc["item_to_text"]["n_queries"] == 3
    assert doc["captions_encoded"] == 15 and "official_difference" in doc["protocol"]
    assert doc["audio_contract"]["n_clips"] == 6
    table = pq.read_table(tmp_path / "out" / "per_query.parquet").to_pydict()
    for direction in ("text_to_item", "item_to_text"):
        first = np.array([r for d, r in zip(table["direction"], table["first_rank"]) if d == direction])
        for k in (1, 5, 10):
            assert doc[direction][f"R@{k}"] == float(np.mean(first <= k))
    assert _metrics("clotho", root, tmp_path / "out2", cache)["captions_encoded"] == 0


def test_audiocaps_release_csv_end_to_end(tmp_path):
    from tests.data.list_releases import audiocaps_release

    root = tmp_path / "root"
    _prepare("audiocaps", audiocaps_release(tmp_path / "a"), root)
    doc = _metrics("audiocaps", root, tmp_path / "out", tmp_path / "cache")
    assert doc["text_to_item"]["n_queries"] == 3 and doc["item_to_text"]["n_gallery"] == 3
    assert doc["protocol"]["layout"] == "audiocaps release: test.csv"


def test_audioset_end_to_end_map_from_predictions(tmp_path):
    from tests.data.list_releases import audioset_list
    from vitlens_cli.evaluation.multilabel import metrics_from_scores_parquet

    root = tmp_path / "root"
    _prepare("audioset", audioset_list(tmp_path / "s", [("aaa", [0, 137]), ("bbb", [72]), ("gone", [5])],
                                       present={"aaa", "bbb"}), root)
    # one prompt per class: 527 × 12 official ones take minutes on a CPU
    doc = _metrics("audioset", root, tmp_path / "out", tmp_path / "cache", "--template", "{}.")
    assert (doc["task"], doc["n"], doc["classes_scored"], doc["classes"], doc["templates"]) == (
        "multilabel", 2, 3, 527, 1)
    assert doc["mAP"] == metrics_from_scores_parquet(tmp_path / "out" / "predictions.parquet", 527).mean_ap
    assert doc["protocol"].endswith("; 2 of 3 listed files found")


def test_retrieval_benchmark_refuses_classification_options(tmp_path):
    res = runner.invoke(app, ["eval", "clotho", "--template", "{}", "--data-root", str(tmp_path)])
    assert res.exit_code != 0 and "--template" in res.output
    res = runner.invoke(app, ["eval", "clotho", "--data-root", str(tmp_path)])
    assert res.exit_code != 0 and "run `vitlens prepare clotho --from" in res.output


def test_a_file_gone_or_damaged_since_prepare_is_skipped_in_one_line(tmp_path):
    from vitlens_cli.data.lists import open_prepared

    root = tmp_path / "root"
    _prepare("touch-and-go", touch_and_go(tmp_path / "tag"), root)
    gone, damaged, _ = (item.path for item in open_prepared("touch-and-go", root).present)
    Path(gone).unlink()
    Path(damaged).write_bytes(b"not a jpeg")
    res = _eval("touch-and-go", root, tmp_path / "out", tmp_path / "cache")
    assert res.exit_code == EXIT_FAILED_ITEMS, res.output
    skipped = [line for line in res.output.splitlines() if line.startswith("skipped: ")]
    assert len(skipped) == 2 and any(gone in line for line in skipped) and any(damaged in line for line in skipped)
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["n"] == 1
