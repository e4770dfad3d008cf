"""Clotho and AudioCaps text↔audio retrieval: the clips and captions of the official eval splits.

Two layouts are read, in this order:

* the ViT-Lens / ONE-PEACE one (``clotho.zip`` / ``audiocaps.zip`` of the ONE-PEACE mirrors; the official
  ``modal_audio/data`` metadata): a clip table ``<split>_new.tsv`` (tab-separated ``uniq_id, audio, text,
  duration``; one row per clip, ``audio`` relative to the data root) and ``<split>_texts.json``
  (``{"<uniq_id>": [caption, …]}``; all captions of each clip), as ``ClothoDataset`` / ``AudioCapsDataset``
  read them;
* the datasets' own releases: Clotho's ``clotho_captions_<split>.csv`` (``file_name, caption_1 … caption_5``)
  with the audio files anywhere below, AudioCaps' ``<split>.csv`` (``audiocap_id, youtube_id, start_time,
  caption``; the captions of one clip share its ``youtube_id``) with files named ``<youtube_id>``,
  ``Y<youtube_id>`` or those followed by ``_…`` (``<youtube_id>_<start>``).

Captions are kept one per listed entry, as the official ``text_ids`` are (an identical caption of two clips is
two queries).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import VitlensError
from .listed import FileIndex, ListedItem, check_ids, find_file, read_json, read_table

AUDIO_SUFFIXES = (".flac", ".wav", ".mp3", ".ogg")


@dataclass(frozen=True)
class CaptionSplit:
    tsv: str
    texts: tuple[str, ...]
    original: str


SPLITS: dict[str, dict[str, CaptionSplit]] = {
    "clotho": {
        "test": CaptionSplit("clotho_evaluation_new.tsv", ("clotho_evaluation_texts.json", "evaluation_texts.json"),
                             "clotho_captions_evaluation.csv"),
        "val": CaptionSplit("clotho_validation_new.tsv", ("clotho_validation_texts.json", "validation_texts.json"),
                            "clotho_captions_validation.csv"),
    },
    "audiocaps": {
        "test": CaptionSplit("audiocaps_test_new.tsv", ("audiocaps_test_texts.json", "test_texts.json"), "test.csv"),
        "val": CaptionSplit("audiocaps_val_new.tsv", ("audiocaps_val_texts.json", "val_texts.json"), "val.csv"),
    },
}

PROTOCOL = {
    "clotho": "Clotho {split} split (ViT-Lens: clotho_evaluation_new.tsv + its texts JSON, 1,045 clips × 5 "
              "captions for test); every caption a text→audio query",
    "audiocaps": "AudioCaps {split} split as ViT-Lens lists it (audiocaps_test_new.tsv + its texts JSON, the "
                 "clips of the ONE-PEACE copy); every caption a text→audio query",
}

# A ViT-Lens tsv names "clotho/audio/evaluation/1.flac": the file name alone would also match
# validation/1.flac, so the folder above must match too.
MIN_PARTS = 2


@dataclass
class CaptionList:
    """What a release lists: clips with their captions (not located yet), the layout read, captions dropped
    because the clip table does not hold their clip, and how to find each clip's file."""

    items: list[ListedItem]
    layout: str
    dropped_captions: int
    locator: Callable[[FileIndex], Callable[[ListedItem], tuple[Path | None, str | None]]]


def _by_path(min_parts: int) -> Callable[[FileIndex], Callable[[ListedItem], tuple[Path | None, str | None]]]:
    return lambda index: (lambda item: index.find(item.expected, min_parts))


def read_split(folder: Path, benchmark: str, split: str) -> CaptionList:
    """The clips and captions of ``benchmark``'s ``split`` under ``folder`` (either layout)."""
    spec = SPLITS[benchmark][split]
    tsv = find_file(folder, (spec.tsv,))
    if tsv is not None:
        items, layout, dropped = _read_vitlens(tsv, spec, benchmark)
        return CaptionList(items, layout, dropped, _by_path(MIN_PARTS))
    original = find_file(folder, (spec.original,))
    if original is not None:
        if benchmark == "clotho":
            items, locator = _read_clotho_csv(original), _by_path(1)
        else:
            items, locator = _read_audiocaps_csv(original), audiocaps_locator
        check_ids(items, original)
        return CaptionList(items, f"{benchmark} release: {original.name}", 0, locator)
    raise VitlensError(f"{folder}: no {benchmark} {split} split found: expected {spec.tsv} + {spec.texts[0]} "
                       f"(the ONE-PEACE {benchmark}.zip / ViT-Lens metadata) or {spec.original} (the "
                       f"{benchmark} release)")


def _read_vitlens(tsv: Path, spec: CaptionSplit, benchmark: str) -> tuple[list[ListedItem], str, int]:
    texts_path = find_file(tsv.parent, spec.texts) or find_file(_top(tsv), spec.texts)
    if texts_path is None:
        raise VitlensError(f"{tsv}: found, but not its captions {' or '.join(spec.texts)} (the ONE-PEACE "
                           f"{benchmark}.zip holds both)")
    items = [ListedItem(row["uniq_id"], row["audio"]) for _, row in read_table(tsv, "\t", ("uniq_id", "audio"))]
    check_ids(items, tsv)
    texts = read_json(texts_path)
    if not isinstance(texts, dict):
        raise VitlensError(f"{texts_path}: expected an object {{clip id: [captions]}}, found "
                           f"{type(texts).__name__}")
    by_id = {item.id: item for item in items}
    dropped = 0
    for key, captions in texts.items():
        if not isinstance(captions, list) or not all(isinstance(c, str) for c in captions):
            raise VitlensError(f"{texts_path}: clip '{key}': expected a list of caption strings")
        item = by_id.get(str(key))
        if item is None:
            dropped += len(captions)
            continue
        item.captions.extend(c.strip() for c in captions if c.strip())
    return items, f"ViT-Lens/ONE-PEACE: {tsv.name} + {texts_path.name}", dropped


def _top(path: Path) -> Path:
    return path.parent.parent if path.parent.parent != path.parent else path.parent


def _read_clotho_csv(path: Path) -> list[ListedItem]:
    columns = ("file_name", *(f"caption_{i}" for i in range(1, 6)))
    items = []
    for n, row in read_table(path, ",", columns):
        if not row["file_name"]:
            raise VitlensError(f"{path}:{n}: empty file_name")
        name = row["file_name"]
        items.append(ListedItem(name, name, captions=[row[c] for c in columns[1:] if row[c]]))
    return items


def _read_audiocaps_csv(path: Path) -> list[ListedItem]:
    by_clip: dict[str, ListedItem] = {}
    for n, row in read_table(path, ",", ("audiocap_id", "youtube_id", "start_time", "caption")):
        ytid = row["youtube_id"]
        if not ytid:
            raise VitlensError(f"{path}:{n}: empty youtube_id")
        item = by_clip.setdefault(ytid, ListedItem(ytid, ytid))
        if row["caption"]:
            item.captions.append(row["caption"])
    return list(by_clip.values())


def audiocaps_locator(index: FileIndex) -> Callable[[ListedItem], tuple[Path | None, str | None]]:
    """AudioCaps release files are named by YouTube id (``<id>``, ``Y<id>``, optionally followed by ``_…``)."""
    by_clip: dict[str, str] = {}
    for name, found in index.by_name.items():
        stem, suffix = Path(name).stem, Path(name).suffix.lower()
        if suffix not in AUDIO_SUFFIXES:
            continue
        for key in {stem, stem[1:] if stem.startswith("Y") else stem}:
            by_clip.setdefault(key, "/".join(found[0]))
            if len(key) > 11 and key[11] == "_":  # YouTube ids are 11 characters
                by_clip.setdefault(key[:11], "/".join(found[0]))

    def locate(item: ListedItem) -> tuple[Path | None, str | None]:
        rel = by_clip.get(item.id)
        return (None, "no audio file named by this YouTube id") if rel is None else index.find(rel, 99)

    return locate
