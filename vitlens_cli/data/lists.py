"""The list-defined benchmarks by name and their ``prepare``: Clotho and AudioCaps (retrieval), AudioSet
(multi-label), VGGSound and Touch-and-Go (single-label).

``prepare`` takes the release (``--from`` an archive or a folder, or the ONE-PEACE mirror where one exists),
extracts it safely through the same pipeline as every benchmark, reads the official list and finds every listed
file (:mod:`vitlens_cli.data.listed`). Re-running with the same release does nothing.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import VitlensError
from . import audio_captions, audio_labels, touch_and_go
from .listed import PRESENCE_CSV, FileIndex, Listed, locate, open_listed, read_listed, write_listed

RETRIEVAL, MULTILABEL, CLASSIFICATION = "retrieval", "multilabel", "classification"

# The official eval averages the embeddings of n_clip clips per file (DURATION2CLIP["5"] of modal_audio/datasets.py);
# here every file gets the model card's audio contract.
_OFFICIAL_CLIPS = {"clotho": 6, "audiocaps": 3, "audioset": 3, "vggsound": 3}
# Touch-and-Go frame names repeat across videos: the whole <video>/gelsight_frame/<frame> must match.
_WHOLE_PATH = 99


@dataclass(frozen=True)
class ListedBenchmark:
    name: str
    task: str
    description: str
    splits: tuple[str, ...]
    default_split: str
    modality: str = "audio"

    def resolve_split(self, split: str | None) -> str:
        split = split or self.default_split
        if split not in self.splits:
            raise VitlensError(f"unknown {self.name} variant '{split}' (known: {', '.join(self.splits)})")
        return split

    def dest(self, root: Path, split: str) -> Path:
        return Path(root) / f"{self.name}-{split}"


LISTED: dict[str, ListedBenchmark] = {
    "clotho": ListedBenchmark("clotho", RETRIEVAL, "Clotho text↔audio retrieval (evaluation split, 5 captions "
                              "per clip)", ("test", "val"), "test"),
    "audiocaps": ListedBenchmark("audiocaps", RETRIEVAL, "AudioCaps text↔audio retrieval (test split)",
                                 ("test", "val"), "test"),
    "audioset": ListedBenchmark("audioset", MULTILABEL, "AudioSet val clips of audioset_val.json, 527 labels, mAP",
                                ("val",), "val"),
    "vggsound": ListedBenchmark("vggsound", CLASSIFICATION, "VGGSound val clips of vggsound_audio-only_val.json, "
                                "309 classes, top-1", ("val",), "val"),
    "touch-and-go": ListedBenchmark("touch-and-go", CLASSIFICATION, "Touch-and-Go test-material (20 classes), "
                                    "test-hard/soft, test-rough/smooth", tuple(touch_and_go.SPLITS), "material",
                                    modality="tactile"),
}


# Single-label benchmarks that eval classifies from raw files through the classification runner (AudioSet is
# multi-label and Clotho / AudioCaps retrieval: eval runs those its own way).
CLASSIFIED = ("vggsound", "touch-and-go", "imagenet-eeg")


def get_listed(name: str) -> ListedBenchmark:
    try:
        return LISTED[name]
    except KeyError:
        raise VitlensError(f"unknown list benchmark '{name}' (known: {', '.join(LISTED)})") from None


def build_listed(name: str, folder: Path, split: str, key: str = "",
                 on_item=None) -> Listed:
    """Read ``name``'s list from the release in ``folder`` and find each listed file there."""
    bench = get_listed(name)
    folder = Path(folder)
    index = FileIndex(folder)
    protocol: dict[str, Any] = {"split": split}
    classes: list[str] = []
    templates = ""
    if bench.modality == "audio":
        protocol["audio_clips"] = (f"the model card's audio contract per file; the official eval averages "
                                   f"{_OFFICIAL_CLIPS[name]} clips of 5 s")
    if bench.task == RETRIEVAL:
        found = audio_captions.read_split(folder, name, split)
        items = found.items
        locate(items, found.locator(index), on_item)
        protocol.update(source=audio_captions.PROTOCOL[name].format(split=split), layout=found.layout,
                        captions_dropped_without_clip=found.dropped_captions)
    elif name == "touch-and-go":
        items, classes, facts = touch_and_go.read_split(folder, split)
        templates = touch_and_go.TEMPLATES[split]
        locate(items, lambda item: index.find(item.expected, _WHOLE_PATH), on_item)
        protocol.update(facts)
    else:
        items, layout = audio_labels.read_list(folder, name)
        locate(items, lambda item: index.find(item.expected, 1), on_item)
        classes = audio_labels.classes(name)
        templates = audio_labels.TEMPLATES
        protocol.update(source=audio_labels.PROTOCOL[name], layout=layout)
    present = sum(item.path is not None for item in items)
    protocol.update(listed=len(items), present=present, missing=len(items) - present)
    return Listed(name, split, bench.task, protocol, str(folder), key, items, classes, bench.modality, templates)


# The ONE-PEACE mirrors the official DATASETS.md names; no checksums are published for them.
_MIRROR = "https://one-peace-shanghai.oss-accelerate.aliyuncs.com/one_peace_datasets/"
URLS = {"clotho": _MIRROR + "clotho.zip", "audiocaps": _MIRROR + "audiocaps.zip", "vggsound": _MIRROR + "vggsound.zip"}
WHERE = {"audioset": "the AudioSet eval clips (your own download; the videos come from YouTube) with ViT-Lens' "
                     "audioset_val.json in the folder",
         "touch-and-go": "the Touch-and-Go dataset (https://touch-and-go.github.io/) with ViT-Lens' test.json and "
                         "test_rough.json in its folder"}


@dataclass
class ListedSummary:
    """What ``prepare`` did: how many listed files were found; ``presence.csv`` has one row per listed file."""

    benchmark: str
    variant: str
    dest: Path
    listed: int
    present: int
    missing: int
    already_done: bool
    protocol: str
    presence_csv: Path


def _summary(dest: Path, listed: Listed, already_done: bool) -> ListedSummary:
    return ListedSummary(listed.benchmark, listed.split, dest, len(listed.items), len(listed.present),
                         len(listed.missing), already_done, listed.protocol["source"], dest / PRESENCE_CSV)


def _release_folder(name: str, root: Path, from_path: Path | None, kind: str | None, progress) -> tuple[Path, str]:
    """The folder to read (``--from`` itself, or its safe extraction) and the release's identity.

    Unlike a converted benchmark's, an earlier extraction stays: the prepared lists point into it."""
    from .prepare.download import download
    from .prepare.pipeline import extract_release, source_key, stage_progress

    if from_path is not None and kind == "dir":
        return from_path, source_key(from_path)
    if from_path is not None:
        return extract_release(from_path, root, downloaded=False, progress=progress)
    if name not in URLS:
        raise VitlensError(f"{name} cannot be downloaded automatically: get {WHERE[name]}, then pass it with --from")
    url = URLS[name]
    archive = download(url, root / "_downloads" / url.rsplit("/", 1)[1], progress=stage_progress(progress, "download"))
    return extract_release(archive, root, downloaded=True, progress=progress)


def prepare_listed(name: str, root: Path, *, from_path: Path | None = None, variant: str | None = None,
                   progress=None) -> ListedSummary:
    """``vitlens prepare`` for a list benchmark: every listed file looked for; ``presence.csv`` says
    which were found."""
    from .prepare.pipeline import check_from, count_items, locked_data_root, source_key

    bench = get_listed(name)
    split = bench.resolve_split(variant)
    root = Path(root)
    from_path = None if from_path is None else Path(from_path)
    kind = check_from(from_path)
    with locked_data_root(root):
        dest = bench.dest(root, split)
        current = read_listed(dest)
        if current is not None and (from_path is None or current.source_key == source_key(from_path)):
            return _summary(dest, current, True)
        folder, key = _release_folder(name, root, from_path, kind, progress)
        on_item, _ = count_items(progress, "find files")
        listed = build_listed(name, folder, split, key, on_item)
        write_listed(dest, listed)
    return _summary(dest, listed, False)


def open_prepared(name: str, data_root: Path, variant: str | None = None) -> Listed:
    """The prepared list of ``name`` for eval."""
    bench = get_listed(name)
    return open_listed(bench.dest(data_root, bench.resolve_split(variant)), name)


def list_source(name: str, data_root: Path | None = None, variant: str | None = None):
    """The ``EvalSource`` of a prepared classification list (VGGSound, Touch-and-Go, AudioSet) or of
    ImageNet-EEG: raw files (trials) of one modality, classified by eval through the modality's plug-in."""
    from .benchmarks import EvalSource, default_data_root
    from .imagenet_eeg import VARIANTS, EEGTrials
    from .listed import ListedFiles

    root = Path(data_root or default_data_root())
    if name == "imagenet-eeg":
        split = variant or "test"
        if split not in VARIANTS:
            raise VitlensError(f"unknown imagenet-eeg variant '{split}' (known: {', '.join(VARIANTS)})")
        trials = EEGTrials(root / f"imagenet-eeg-{split}")
        index = trials.index
        return EvalSource(trials, index.classes, None, name, split, index.protocol["source"], modality="eeg",
                          templates=index.templates)
    listed = open_prepared(name, root, variant)
    files = ListedFiles(listed)
    protocol = "; ".join([listed.protocol["source"], *([listed.protocol["audio_clips"]] if "audio_clips" in
                                                       listed.protocol else []),
                          f"{len(listed.present)} of {len(listed.items)} listed files found"])
    return EvalSource(files, listed.classes, None, name, listed.split, protocol, modality=listed.modality,
                      templates=listed.templates)
