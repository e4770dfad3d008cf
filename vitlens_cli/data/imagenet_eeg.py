"""ImageNet-EEG (Spampinato et al.) val / test trials as ViT-Lens' ``EEGDataset`` selects them.

The release is two torch files (read with torch's weights-only unpickler: :mod:`vitlens_cli.safe_load`):

* ``eeg_5_95_std.pth``: ``{"dataset": [{"eeg": (128, T) tensor, "label": int, "image": int, "subject": int},
  …], "labels": [40 ImageNet synsets], "images": [image names]}``;
* ``block_splits_by_image_all.pth``: ``{"splits": [{"train": [...], "val": [...], "test": [...]}, …]}``.

The official selection: split 0, the indices of ``val`` or ``test`` whose trial has ``450 <= T <= 600``
samples (the trial-length filter); class ``label`` is named ``imagenet_cls_mapping[synset][0]`` of
``labels[label]``. Prepare stores the selected trials as they are (float32, zero-padded to 600 samples with
their lengths), so the model card's EEG contract (crop, resample) is applied at eval like for any EEG file.
"""
from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import write_atomic, write_text_atomic
from ..caption_text import pre_caption
from ..errors import VitlensError
from .cache import plan
from .listed import find_file

DATA_FILE, SPLIT_FILE = "eeg_5_95_std.pth", "block_splits_by_image_all.pth"
SPLIT_NUM = 0
MIN_SAMPLES, MAX_SAMPLES = 450, 600
VARIANTS = ("val", "test")
FORMAT = "vitlens-eeg/1"
MANIFEST, TRIALS, LENGTHS, LABELS = "benchmark.json", "trials.npy", "lengths.npy", "labels.npy"
TEMPLATES = "photo_3"  # meta/templates.json: the prompts of training/zero_shot.py test_eeg_cls_single
PROTOCOL = ("ImageNet-EEG {split}: split 0 of block_splits_by_image_all.pth, trials of 450-600 samples (the "
            "official filter), 40 classes named imagenet_cls_mapping[synset][0]; top-1 as "
            "training/zero_shot.py test_eeg_cls_single")


@dataclass
class EEGIndex:
    benchmark: str
    split: str
    classes: list[str]
    names: list[str]
    protocol: dict[str, Any]
    source_key: str
    channels: int
    format: str = FORMAT
    templates: str = TEMPLATES


def _load(path: Path) -> Any:
    from ..safe_load import load_tensors

    try:
        return load_tensors(path)
    except pickle.UnpicklingError as exc:
        raise VitlensError(f"{path}: {exc}") from None
    except (OSError, RuntimeError, EOFError) as exc:
        raise VitlensError(f"{path}: not a loadable torch file ({str(exc).splitlines()[0][:200]})") from None


def _find(folder: Path, name: str) -> Path:
    path = find_file(folder, (name,))
    if path is None:
        raise VitlensError(f"{folder}: no {name} found (ImageNet-EEG: https://github.com/perceivelab/"
                           "eeg_visual_classification)")
    return path


def _classes(synsets: Any, where: Path) -> list[str]:
    from .audio_labels import benchmark_meta

    names = benchmark_meta()["imagenet_first_names"]
    if not isinstance(synsets, list) or not all(isinstance(s, str) for s in synsets):
        raise VitlensError(f"{where}: 'labels' must be the list of ImageNet synsets")
    unknown = [s for s in synsets if s not in names]
    if unknown:
        raise VitlensError(f"{where}: 'labels' holds {unknown[0]!r}, not an ImageNet synset")
    return [names[s] for s in synsets]


def select(data: Any, splits: Any, split: str, data_path: Path, split_path: Path) -> tuple[list[int], int]:
    """The official selection: ``(dataset indices kept, indices dropped by the trial-length filter)``."""
    if not isinstance(data, dict) or not isinstance(data.get("dataset"), list):
        raise VitlensError(f"{data_path}: expected a dict with a 'dataset' list of trials")
    try:
        indices = splits["splits"][SPLIT_NUM][split]
    except (KeyError, IndexError, TypeError):
        raise VitlensError(f"{split_path}: no splits[{SPLIT_NUM}]['{split}'] list") from None
    trials = data["dataset"]
    kept, dropped = [], 0
    for i in indices:
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < len(trials):
            raise VitlensError(f"{split_path}: splits[{SPLIT_NUM}]['{split}'] holds {i!r}, not an index of the "
                               f"{len(trials)} trials")
        trial = trials[i]
        eeg = trial.get("eeg") if isinstance(trial, dict) else None
        if getattr(eeg, "ndim", None) != 2:
            raise VitlensError(f"{data_path}: trial {i} has no 2-D 'eeg' tensor")
        if MIN_SAMPLES <= eeg.shape[1] <= MAX_SAMPLES:
            kept.append(i)
        else:
            dropped += 1
    return kept, dropped


def _label(trial: dict, i: int, n_classes: int, data_path: Path) -> int:
    label = trial.get("label")
    if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < n_classes:
        raise VitlensError(f"{data_path}: trial {i}: label {label!r} is not a class index in [0, {n_classes})")
    return label


def prepare(folder: Path, dest: Path, split: str, *, source_key: str = "",
            on_item: Callable[[int, bool], None] | None = None) -> EEGIndex:
    """Write the selected trials of ``split`` into ``dest`` (the manifest last: it is the commit point)."""
    if split not in VARIANTS:
        raise VitlensError(f"unknown imagenet-eeg variant '{split}' (known: {', '.join(VARIANTS)})")
    data_path, split_path = _find(folder, DATA_FILE), _find(folder, SPLIT_FILE)
    data, splits = _load(data_path), _load(split_path)
    kept, dropped = select(data, splits, split, data_path, split_path)
    if not kept:
        raise VitlensError(f"{split_path}: no {split} trial of {MIN_SAMPLES}-{MAX_SAMPLES} samples")
    classes = _classes(data.get("labels"), data_path)
    images = data.get("images") if isinstance(data.get("images"), list) else []
    first = data["dataset"][kept[0]]["eeg"]
    channels = int(first.shape[0])
    trials = np.zeros((len(kept), channels, MAX_SAMPLES), np.float32)
    lengths = np.zeros(len(kept), np.int64)
    labels = np.zeros(len(kept), np.int64)
    names = []
    plan(on_item, len(kept))
    for row, i in enumerate(kept):
        trial = data["dataset"][i]
        eeg = trial["eeg"].float().numpy()
        if eeg.shape[0] != channels:
            raise VitlensError(f"{data_path}: trial {i} has {eeg.shape[0]} channels, trial {kept[0]} {channels}")
        label = _label(trial, i, len(classes), data_path)
        trials[row, :, :eeg.shape[1]] = eeg
        lengths[row], labels[row] = eeg.shape[1], label
        image = trial.get("image")
        shown = images[image] if isinstance(image, int) and 0 <= image < len(images) else "?"
        names.append(f"trial-{i}:{shown}")
        if on_item is not None:
            on_item(row, False)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for name, array in ((TRIALS, trials), (LENGTHS, lengths), (LABELS, labels)):
        write_atomic(dest / name, lambda p, a=array: _save(p, a))
    protocol = {"source": PROTOCOL.format(split=split), "split": split, "split_number": SPLIT_NUM,
                "listed": len(kept) + dropped, "kept": len(kept), "dropped_by_length_filter": dropped}
    index = EEGIndex("imagenet-eeg", split, classes, names, protocol, source_key, channels)
    write_text_atomic(dest / MANIFEST, json.dumps(asdict(index), indent=1) + "\n")
    return index


def _save(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as fh:
        np.save(fh, array)


def read_index(dest: Path) -> EEGIndex | None:
    try:
        data = json.loads((Path(dest) / MANIFEST).read_text(encoding="utf-8"))
        return EEGIndex(**data) if data.get("format") == FORMAT else None
    except (OSError, ValueError, TypeError, AttributeError):
        return None


class EEGTrials:
    """``ds[i] -> ((channels, T) float32 tensor as recorded, label, name)`` from a prepared split."""

    def __init__(self, dest: Path) -> None:
        self.dest = Path(dest)
        index = read_index(self.dest)
        if index is None:
            raise VitlensError(f"{self.dest}: imagenet-eeg is not prepared; run `vitlens prepare imagenet-eeg "
                               "--from <folder with eeg_5_95_std.pth and block_splits_by_image_all.pth>`")
        self.index = index
        try:
            self.trials = np.load(self.dest / TRIALS, mmap_mode="r")
            self.lengths = np.load(self.dest / LENGTHS)
            self.labels = np.load(self.dest / LABELS)
        except (OSError, ValueError) as exc:
            raise VitlensError(f"{self.dest}: damaged ({exc}); re-run `vitlens prepare imagenet-eeg`") from None
        if not len(self.trials) == len(self.lengths) == len(self.labels) == len(index.names):
            raise VitlensError(f"{self.dest}: damaged (array lengths differ); re-run `vitlens prepare imagenet-eeg`")
        self.names = list(index.names)

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int) -> tuple[Any, int, str]:
        import torch

        return torch.from_numpy(np.array(self.trials[i, :, :self.lengths[i]])), int(self.labels[i]), self.names[i]


@dataclass
class EEGSummary:
    benchmark: str
    variant: str
    dest: Path
    listed: int
    kept: int
    already_done: bool
    protocol: str


def prepare_imagenet_eeg(root: Path, *, from_path: Path | None = None, variant: str | None = None,
                         progress=None) -> EEGSummary:
    """``vitlens prepare imagenet-eeg --from FOLDER``: nothing to download (the release needs its own request)."""
    from .prepare.pipeline import check_from, count_items, locked_data_root, source_key

    split = variant or "test"
    if split not in VARIANTS:
        raise VitlensError(f"unknown imagenet-eeg variant '{split}' (known: {', '.join(VARIANTS)})")
    if from_path is None:
        raise VitlensError("imagenet-eeg cannot be downloaded automatically: get eeg_5_95_std.pth and "
                           "block_splits_by_image_all.pth (https://github.com/perceivelab/eeg_visual_classification)"
                           ", then pass their folder with --from")
    from_path, root = Path(from_path), Path(root)
    if check_from(from_path) != "dir":
        raise VitlensError(f"{from_path}: give the folder that holds {DATA_FILE} and {SPLIT_FILE}")
    dest = root / f"imagenet-eeg-{split}"
    with locked_data_root(root):
        key = source_key(from_path)
        current = read_index(dest)
        if current is not None and current.source_key == key:
            return EEGSummary(current.benchmark, split, dest, current.protocol["listed"], current.protocol["kept"],
                              True, current.protocol["source"])
        on_item, _ = count_items(progress, "convert")
        index = prepare(from_path, dest, split, source_key=key, on_item=on_item)
    return EEGSummary(index.benchmark, split, dest, index.protocol["listed"], index.protocol["kept"], False,
                      index.protocol["source"])


TRAIN_SPLITS = ("train", "pretrain")  # the splits EEGDataset captions with a random name of the class


class ImageNetEEGTrain:
    """Training items of ImageNet-EEG as ViT-Lens' ``EEGDataset`` reads them (``modal_eeg/datasets.py``).

    ``data_file`` and ``split_file`` (paths relative to ``root``, or absolute) are loaded once; the items are
    the :func:`select`-ed indices of ``splits[0][split]`` (the 450-600 sample filter). A trial is served as
    recorded, ``(channels, T)`` float32: the EEG contract's crop and resample are the model card's. Its
    caption is ``"an image of <name>."`` cleaned as ``BlipCaptionProcessor``, the name drawn from
    ``imagenet_cls_mapping[synset]`` for a train split (the first name otherwise), from ``(seed, epoch,
    index)``. With ``image_dir``, the shown image ``<image_dir>/<synset>/<image name>.JPEG`` is paired (the
    official layout). The official ``n_repeat_train=50`` is the recipe's ``epochs``, not a repeat here.
    """

    def __init__(self, root: str | Path, data_file: str = DATA_FILE, split_file: str = SPLIT_FILE,
                 split: str = "train", image_dir: str | None = None, seed: int = 0) -> None:
        from .meta import meta_file

        root = Path(root)
        data_path, split_path = (Path(f) if Path(f).is_absolute() else root / f for f in (data_file, split_file))
        for path in (data_path, split_path):
            if not path.is_file():
                raise VitlensError(f"{path}: no such file (ImageNet-EEG: https://github.com/perceivelab/"
                                   "eeg_visual_classification)")
        data, splits = _load(data_path), _load(split_path)
        self.indices, self.dropped = select(data, splits, split, data_path, split_path)
        if not self.indices:
            raise VitlensError(f"{split_path}: no {split} trial of {MIN_SAMPLES}-{MAX_SAMPLES} samples")
        _classes(data.get("labels"), data_path)
        self.synsets = list(data["labels"])
        self.names = meta_file("imagenet_synonyms.json")["synonyms"]
        self.trials = data["dataset"]
        self.labels = [_label(self.trials[i], i, len(self.synsets), data_path) for i in self.indices]
        self.random_name = split in TRAIN_SPLITS
        self.image_dir = None if image_dir is None else (Path(image_dir) if Path(image_dir).is_absolute()
                                                         else root / image_dir)
        self.images = data.get("images")
        if self.image_dir is not None:
            for i in self.indices:
                image = self.trials[i].get("image")
                if not isinstance(self.images, list) or isinstance(image, bool) or not isinstance(image, int) \
                        or not 0 <= image < len(self.images):
                    raise VitlensError(f"{data_path}: trial {i}: 'image' {image!r} is not an index of its 'images' "
                                       "list (needed to pair images: data.options.image_dir)")
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, n: int):
        from .signals import Sample

        i = self.indices[n]
        trial = self.trials[i]
        names = self.names[self.synsets[self.labels[n]]]
        rng = np.random.default_rng([self.seed, self.epoch, int(n)])
        name = names[int(rng.integers(len(names)))] if self.random_name else names[0]
        image = None
        if self.image_dir is not None:
            shown = self.images[trial["image"]]
            image = str(self.image_dir / shown.split("_")[0] / f"{shown}.JPEG")
        return Sample(trial["eeg"].float(), pre_caption(f"an image of {name}."), image, None, None, f"trial-{i}")
