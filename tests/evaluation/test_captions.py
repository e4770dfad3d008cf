"""The captions CSV reader: items and captions in first-appearance order, pairs, relevance, --limit, dispatch."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from vitlens_cli.errors import VitlensError
from vitlens_cli.evaluation.captions import is_captions_csv, read_captions


def _csv(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "data" / "caps.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_items_captions_pairs_and_relevance(tmp_path):
    csv = _csv(tmp_path, "# my clips\n"
                         "Caption,Path,id\n"  # any order, any case, extra columns ignored
                         '"a dog, barking",sounds/dog.flac,1\n'
                         "  a dog  ,sounds/dog.flac,2\n"
                         "\n"
                         "waves,./sounds/sea.flac,3\n"
                         "a dog,/abs/cloud.ply,4\n"
                         "a map,deep/x.npy,5\n")
    caps = read_captions(csv, ["depth"])
    root = os.path.abspath(tmp_path / "data")
    assert caps.items == [f"{root}/sounds/dog.flac", f"{root}/sounds/sea.flac", "/abs/cloud.ply", f"{root}/deep/x.npy"]
    assert caps.modalities == ["audio", "audio", "3d", "depth"]
    assert caps.texts == ["a dog, barking", "a dog", "waves", "a map"]
    assert caps.pairs.tolist() == [[0, 0], [1, 0], [2, 1], [1, 2], [3, 3]]
    np.testing.assert_array_equal(caps.relevance(), [[1, 0, 0, 0], [1, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 1]])


def test_head_keeps_the_first_files_and_their_captions(tmp_path):
    csv = _csv(tmp_path, "path,caption\na.flac,x\nb.flac,y\na.flac,z\nc.flac,x\nb.flac,w\n")
    caps = read_captions(csv).head(2)
    assert [Path(p).name for p in caps.items] == ["a.flac", "b.flac"]
    assert caps.texts == ["x", "y", "z", "w"]
    assert caps.pairs.tolist() == [[0, 0], [1, 1], [2, 0], [3, 1]]
    only = read_captions(csv).head(1)
    assert only.texts == ["x", "z"] and only.pairs.tolist() == [[0, 0], [1, 0]]
    whole = read_captions(csv)
    assert whole.head(3) is whole


def test_dispatch_by_header(tmp_path):
    assert is_captions_csv(_csv(tmp_path, "path,caption\na.flac,x\n")) is True
    assert is_captions_csv(_csv(tmp_path, "\n# labels\npath,label\na.ply,mug\n")) is False
    assert is_captions_csv("modelnet40") is False
    (tmp_path / "folder.csv").mkdir()
    assert is_captions_csv(tmp_path / "folder.csv") is False  # a folder: the classification reader decides
    with pytest.raises(VitlensError, match=r"caps.csv:1: .*'path,label' \(classification\) or 'path,caption'"):
        is_captions_csv(_csv(tmp_path, "file,text\n"))
