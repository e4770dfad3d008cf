"""ImageNet-EEG: the official split-0 selection with the 450-600 sample filter, read from .pth files of plain
containers through the weights-only loader (new and legacy torch formats), stored raw and served back."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from vitlens_cli.data.imagenet_eeg import EEGTrials, ImageNetEEGTrain, prepare_imagenet_eeg
from vitlens_cli.errors import VitlensError

SYNSETS = ["n02106662", "n02124075", "n02281787"]  # German shepherd, Egyptian cat, lycaenid
# (time samples, label, image) per trial; split 0: val = [0, 1, 2], test = [3, 4, 5, 1]
TRIALS = [(500, 0, 0), (449, 1, 1), (600, 2, 2), (450, 1, 0), (601, 0, 1), (512, 2, 2)]


def write_release(folder: Path, legacy: bool = False, train: tuple[int, ...] = ()) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    dataset = [{"eeg": torch.randn(128, t, generator=g, dtype=torch.float64), "label": label, "image": image,
                "subject": 1} for t, label, image in TRIALS]
    data = {"dataset": dataset, "labels": SYNSETS, "images": ["n02106662_1", "n02124075_7", "n02281787_3"]}
    splits = {"splits": [{"train": list(train), "val": [0, 1, 2], "test": [3, 4, 5, 1]},
                         {"train": [], "val": [5], "test": [0]}]}
    kw = {"_use_new_zipfile_serialization": False} if legacy else {}
    torch.save(data, folder / "eeg_5_95_std.pth", **kw)
    torch.save(splits, folder / "block_splits_by_image_all.pth", **kw)
    return folder


@pytest.mark.parametrize("legacy", [False, True])
def test_test_split_keeps_the_official_selection_and_serves_trials_as_recorded(tmp_path, legacy):
    src = write_release(tmp_path / "src", legacy)
    summary = prepare_imagenet_eeg(tmp_path / "root", from_path=src)
    assert (summary.variant, summary.listed, summary.kept) == ("test", 4, 2)  # 601 and 449 samples dropped
    ds = EEGTrials(summary.dest)
    assert ds.index.classes == ["German shepherd", "Egyptian cat", "lycaenid"]
    assert [ds[i][1] for i in range(len(ds))] == [1, 2]
    assert ds.names == ["trial-3:n02106662_1", "trial-5:n02281787_3"]
    original = torch.load(src / "eeg_5_95_std.pth", weights_only=True)["dataset"]
    for i, trial in zip(range(len(ds)), (3, 5)):
        eeg = ds[i][0]
        assert eeg.dtype == torch.float32 and eeg.shape == original[trial]["eeg"].shape
        torch.testing.assert_close(eeg, original[trial]["eeg"].float(), rtol=0, atol=0)
    manifest = json.loads((summary.dest / "benchmark.json").read_text())
    assert manifest["protocol"]["dropped_by_length_filter"] == 2
    again = prepare_imagenet_eeg(tmp_path / "root", from_path=src)
    assert again.already_done


def test_val_split(tmp_path):
    seen = []
    summary = prepare_imagenet_eeg(tmp_path / "root", from_path=write_release(tmp_path / "src"), variant="val",
                                   progress=lambda stage, done, total: seen.append((stage, done, total)))
    assert (summary.listed, summary.kept) == (3, 2)
    assert [s for s in seen if s[0] == "convert"][-1] == ("convert", 2, 2)  # the bar has a total: an ETA
    assert [label for _, label, _ in EEGTrials(summary.dest)] == [0, 2]


class NotPlain:
    pass


def test_a_file_with_python_objects_is_refused_naming_it(tmp_path):
    src = write_release(tmp_path / "src")
    torch.save({"dataset": [NotPlain()], "labels": SYNSETS}, src / "eeg_5_95_std.pth")
    with pytest.raises(VitlensError, match="eeg_5_95_std.pth: refused: it holds Python objects"):
        prepare_imagenet_eeg(tmp_path / "root", from_path=src)


@pytest.mark.parametrize("change, needle", [
    (lambda d, s: s["splits"].clear(), "no splits\\[0\\]\\['test'\\]"),
    (lambda d, s: s["splits"][0].update(test=[99]), "holds 99, not an index of the 6 trials"),
    (lambda d, s: d.update(labels=["n0000000x"] * 3), "'n0000000x', not an ImageNet synset"),
    (lambda d, s: d["dataset"][3].update(label=7), "trial 3: label 7 is not a class index"),
])
def test_damaged_release_is_one_error_naming_the_file(tmp_path, change, needle):
    src = write_release(tmp_path / "src")
    data = torch.load(src / "eeg_5_95_std.pth", weights_only=True)
    splits = torch.load(src / "block_splits_by_image_all.pth", weights_only=True)
    change(data, splits)
    torch.save(data, src / "eeg_5_95_std.pth")
    torch.save(splits, src / "block_splits_by_image_all.pth")
    with pytest.raises(VitlensError, match=needle):
        prepare_imagenet_eeg(tmp_path / "root", from_path=src)


def test_unprepared_and_missing_release(tmp_path):
    with pytest.raises(VitlensError, match="imagenet-eeg is not prepared"):
        EEGTrials(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(VitlensError, match="no eeg_5_95_std.pth found"):
        prepare_imagenet_eeg(tmp_path / "root", from_path=tmp_path / "empty")
    with pytest.raises(VitlensError, match="cannot be downloaded automatically"):
        prepare_imagenet_eeg(tmp_path / "root")


def test_train_items_as_eeg_dataset_reads_them(tmp_path):
    """split 0's train indices, the length filter, a random name of the class per epoch, the shown image."""
    src = write_release(tmp_path / "src", train=(5, 4, 0, 1, 3))
    ds = ImageNetEEGTrain(src, image_dir="imageNet_images")
    assert len(ds) == 3 and ds.dropped == 2  # trials 4 (601 samples) and 1 (449) left out; 5, 0, 3 kept
    original = torch.load(src / "eeg_5_95_std.pth", weights_only=True)["dataset"]
    item = ds[1]  # trial 0: label 0 (German shepherd), image 0
    assert item.key == "trial-0" and item.signal.dtype == torch.float32
    torch.testing.assert_close(item.signal, original[0]["eeg"].float(), rtol=0, atol=0)
    assert item.image == str(src / "imageNet_images" / "n02106662" / "n02106662_1.JPEG")
    # WordNet's names of n02106662, lower-cased and without the '.' (BlipCaptionProcessor)
    names = {"german shepherd", "german shepherd dog", "german police dog", "alsatian"}
    seen = set()
    for epoch in range(16):
        ds.set_epoch(epoch)
        seen.add(ds[1].text)
    assert seen <= {f"an image of {n}" for n in names} and len(seen) > 1
    ds.set_epoch(0)
    assert ds[1].text == item.text
    assert ds[0].text in ("an image of lycaenid", "an image of lycaenid butterfly")  # trial 5, label 2
    assert ds[2].text == "an image of egyptian cat"  # trial 3: a class of one name
    val = ImageNetEEGTrain(src, split="val")
    assert [t.text for t in (val[0], val[1])] == ["an image of german shepherd", "an image of lycaenid"]
    assert val[0].image is None


def test_train_reader_names_missing_files_and_bad_images(tmp_path):
    src = write_release(tmp_path / "src", train=(0, 2))
    with pytest.raises(VitlensError, match=r"nope\.pth: no such file"):
        ImageNetEEGTrain(src, data_file="nope.pth")
    data = torch.load(src / "eeg_5_95_std.pth", weights_only=True)
    data["dataset"][2]["image"] = 9
    torch.save(data, src / "eeg_5_95_std.pth")
    ImageNetEEGTrain(src)  # images are only looked up when they are paired
    with pytest.raises(VitlensError, match=r"eeg_5_95_std\.pth: trial 2: 'image' 9 is not an index"):
        ImageNetEEGTrain(src, image_dir="images")
