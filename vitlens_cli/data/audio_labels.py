"""AudioSet (multi-label, 527 classes) and VGGSound (309 classes) eval lists, as the official ViT-Lens code
reads them.

* AudioSet: ``audioset_val.json`` (the file the official metadata folder names for the ``val`` and ``test``
  splits; not shipped with the official code), a JSON list of ``{"audio_path", "class_labels", …}`` entries,
  ``class_labels`` the class indices of ``audioset_class_labels_indices.csv`` (an int or a list of ints).
* VGGSound: ``vggsound_audio-only_val.json`` (in the official metadata folder; shipped as
  ``meta/vggsound_val.json`` and used when the folder has no copy), a list of ``{"vid",
  "class_name", "captions", "audio_path", "class_labels"}``; ``class_labels`` indexes the rows of
  ``vggsound_stat.csv``; each entry's ``class_name`` is checked against the class its index names, so a list
  of another label order is refused rather than mis-scored.

Both class lists are shipped (``meta/benchmark_classes.json``, CC BY 4.0, sources recorded there).
``audio_path`` is relative to the authors' data root
(``vggsound/audio/test/<id>.flac``); files are found by name (ids are unique).
"""
from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path

from ..errors import VitlensError
from .listed import ListedItem, check_ids, find_file, read_json_list

LISTS = {"audioset": "audioset_val.json", "vggsound": "vggsound_audio-only_val.json"}
CLASSES = {"audioset": "audioset_527", "vggsound": "vggsound_309"}
# the official audio prompts (SOUND_AS_IMAGE_TEMPLATE), by their name in meta/templates.json
TEMPLATES = "sound_as_image_12"
PROTOCOL = {
    "audioset": "AudioSet val: the clips of ViT-Lens' audioset_val.json present in your copy, 527 classes "
                "(display names lower-cased, as the official eval); macro mAP over classes",
    "vggsound": "VGGSound val: the clips of ViT-Lens' vggsound_audio-only_val.json present in your copy, 309 "
                "classes in vggsound_stat.csv order; top-1",
}


@cache
def benchmark_meta() -> dict:
    """``meta/benchmark_classes.json``: the class lists of the list benchmarks, with their sources."""
    meta = resources.files("vitlens_cli.data").joinpath("meta", "benchmark_classes.json")
    return json.loads(meta.read_text(encoding="utf-8"))


def classes(benchmark: str) -> list[str]:
    """The class names the prompts are built from (AudioSet's lower-cased, as ``init_class_labels`` does)."""
    names = list(benchmark_meta()[CLASSES[benchmark]])
    return [n.lower() for n in names] if benchmark == "audioset" else names


def _clip_id(entry: dict, n: int, path: Path) -> str:
    for key in ("vid", "video_id", "youtube_id", "id"):
        if isinstance(entry.get(key), (str, int)) and str(entry[key]):
            return str(entry[key])
    if isinstance(entry.get("audio_path"), str) and entry["audio_path"]:
        return Path(entry["audio_path"]).stem
    raise VitlensError(f"{path}: entry {n}: no clip id (vid) and no audio_path")


def _labels(entry: dict, n: int, path: Path, names: list[str]) -> list[int]:
    raw = entry.get("class_labels")
    raw = raw if isinstance(raw, list) else [raw]
    labels = []
    for value in raw:
        if isinstance(value, bool) or not isinstance(value, int):
            raise VitlensError(f"{path}: entry {n}: class_labels must be class indices, found {value!r}")
        if not 0 <= value < len(names):
            raise VitlensError(f"{path}: entry {n}: class index {value} outside [0, {len(names)})")
        labels.append(value)
    if not labels:
        raise VitlensError(f"{path}: entry {n}: no class_labels")
    return sorted(set(labels))


def _check_names(entry: dict, n: int, path: Path, labels: list[int], names: list[str]) -> None:
    given = entry.get("class_name")
    given = given if isinstance(given, list) else [given] if isinstance(given, str) else []
    expected = {names[i].lower() for i in labels}
    for name in given:
        if name.lower() not in expected:
            raise VitlensError(f"{path}: entry {n}: class_name {name!r} is not the class its class_labels name "
                               f"({', '.join(sorted(expected))}): a list of another label order")


def shipped_vggsound() -> list[ListedItem]:
    """``vggsound_audio-only_val.json`` as shipped (``meta/vggsound_val.json``: vid and class of each clip)."""
    meta = resources.files("vitlens_cli.data").joinpath("meta", "vggsound_val.json")
    items = []
    for vid, label in json.loads(meta.read_text(encoding="utf-8"))["clips"]:
        ytid, start = vid[:11], vid[12:]
        items.append(ListedItem(vid, f"vggsound/audio/test/{ytid}_{int(start):06d}.flac", labels=[label]))
    return items


def read_list(folder: Path, benchmark: str) -> tuple[list[ListedItem], str]:
    """The entries of the benchmark's clip list (not located yet) and where it came from: the list found
    under ``folder``, else, for VGGSound, the shipped copy (the ONE-PEACE archive holds the audio only)."""
    name = LISTS[benchmark]
    path = find_file(folder, (name,))
    if path is None and benchmark == "vggsound":
        return shipped_vggsound(), f"{name} (the copy shipped with vitlens)"
    if path is None:
        raise VitlensError(f"{folder}: no {name} found (ViT-Lens' list of the AudioSet eval clips; put it in "
                           "the folder)")
    data = read_json_list(path, "clips")
    names = list(benchmark_meta()[CLASSES[benchmark]])
    items = []
    for n, entry in enumerate(data):
        if not isinstance(entry, dict):
            raise VitlensError(f"{path}: entry {n}: expected an object, found {type(entry).__name__}")
        audio = entry.get("audio_path")
        if not isinstance(audio, str) or not audio:
            raise VitlensError(f"{path}: entry {n}: no audio_path")
        labels = _labels(entry, n, path, names)
        if benchmark == "vggsound" and len(labels) != 1:
            raise VitlensError(f"{path}: entry {n}: VGGSound is single-label, found {len(labels)} labels")
        if benchmark == "vggsound":  # the AudioSet list's class_name form is not documented; VGGSound's is
            _check_names(entry, n, path, labels, names)
        items.append(ListedItem(_clip_id(entry, n, path), audio, labels=labels))
    if not items:
        raise VitlensError(f"{path}: lists no clips")
    check_ids(items, path)
    return items, path.name
