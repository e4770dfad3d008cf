"""AudioSet-style multi-label eval on a prepared list with tiny-omni: every class scored, mAP equal to sklearn's
macro mean over the written predictions.parquet, classes of the clips' multi-hot targets as listed, a second run
encodes no prompt."""
from __future__ import annotations

import csv
import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.data.list_releases import audioset_list
from vitlens_cli.data.lists import list_source, prepare_listed
from vitlens_cli.data.meta import templates
from vitlens_cli.evaluation.multilabel import evaluate_multilabel, metrics_from_scores_parquet, write_multilabel_report

LABELS = {"aaa": [0, 137], "bbb": [72], "ccc": [0], "ddd": [5, 72], "gone": [300]}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from vitlens_cli.models import load_model

    tmp = tmp_path_factory.mktemp("audioset")
    src = audioset_list(tmp / "src", list(LABELS.items()), present={"aaa", "bbb", "ccc", "ddd"})
    prepare_listed("audioset", tmp / "root", from_path=src)
    source = list_source("audioset", tmp / "root")
    model = load_model("tiny-omni")
    # one prompt per class: 527 × 12 official prompts would take minutes on a CPU for no more coverage
    first = evaluate_multilabel(model, source, ["{}."], batch_size=3, cache_dir=tmp / "cache")
    second = evaluate_multilabel(model, source, ["{}."], cache_dir=tmp / "cache")
    return tmp, source, first, second


def test_targets_are_the_listed_classes_and_every_class_is_scored(run):
    _, source, first, _ = run
    assert source.templates == "sound_as_image_12" and len(templates(source.templates)) == 12
    assert len(source.classes) == 527
    assert first.scores.shape == (4, 527)
    assert [np.flatnonzero(t).tolist() for t in first.targets] == [LABELS[k] for k in ("aaa", "bbb", "ccc", "ddd")]
    assert first.metrics.classes_scored == 4  # 0, 5, 72, 137: the absent clip's class 300 is not scored
    assert first.prompts_encoded == 527 and run[3].prompts_encoded == 0
    np.testing.assert_allclose(first.scores, run[3].scores, atol=1e-5)  # batches of 3 vs 32


def test_map_equals_sklearn_over_the_written_parquet(run, tmp_path):
    sk = pytest.importorskip("sklearn.metrics")
    _, _, first, _ = run
    files = write_multilabel_report(tmp_path, first, {"benchmark": "audioset"})
    table = pq.read_table(files["predictions"]).to_pydict()
    scores = np.asarray(table["scores"], np.float32)
    targets = np.zeros_like(scores, dtype=bool)
    for r, labels in enumerate(table["label_indices"]):
        targets[r, labels] = True
    scored = targets.any(axis=0)
    expected = float(np.mean(sk.average_precision_score(targets[:, scored], scores[:, scored], average=None)))
    written = json.loads(files["metrics"].read_text())
    assert written["mAP"] == pytest.approx(expected, abs=1e-12)
    assert metrics_from_scores_parquet(files["predictions"], 527).mean_ap == written["mAP"]
    with open(files["per_class"], newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 527 and rows[300]["ap"] == "" and rows[72]["positives"] == "2"
