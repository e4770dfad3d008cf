"""ESC-50 zero-shot, as ViT-Lens evaluates it: all 2,000 clips of the release, 50 classes, top-1 (also per fold).

The release (``ESC-50-master.zip`` of github.com/karolpiczak/ESC-50) holds ``audio/*.wav`` (5 s, 44.1 kHz) and
``meta/esc50.csv`` with the columns ``filename,fold,target,category,esc10,src_file,take``. A copy without the
CSV (ONE-PEACE's ``esc50.zip`` mirror that the ViT-Lens docs name: ``audio/*.flac``) is listed by the
dataset's file names, ``{fold}-{clip id}-{take}-{target}.<ext>``. Every listed clip is
decoded and prepared through the audio plug-in under its released contract (16 kHz, the official clip sampling,
128-bin Kaldi fbank, 3 × 512 frames) and stored prepared; eval averages the clip embeddings as the release does.
Class names are the official ``esc50_label.json`` (by ``target``); prompts the official
``SOUND_AS_IMAGE_TEMPLATE`` (``sound_as_image_12``).
"""
from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from ..errors import VitlensError, os_reason
from ..modalities import ModalityFileError, get_modality
from .cache import CacheIndex, Sample, SkipItem, build_cache
from .inputs import file_problem
from .meta import meta_file

CSV_NAME = "esc50.csv"
COLUMNS = ("filename", "fold", "target", "category")
TEMPLATES = "sound_as_image_12"
_CLIP_NAME = re.compile(r"([1-5])-\d+-[A-Z]-(\d+)\.(wav|flac|ogg)", re.IGNORECASE)
PROTOCOL = ("ESC-50 (ViT-Lens protocol, esc50_fold-all): every clip listed in meta/esc50.csv (2,000 in the "
            "release), 50 classes in target order; audio at 16 kHz, official clip sampling (a 5 s clip used for "
            "all 3 views), 128-bin Kaldi fbank, 512 frames, AudioSet normalisation; the 3 view embeddings "
            "averaged; prompts: the 12 SOUND_AS_IMAGE templates; top-1 over all clips and per fold (1-5)")


def classes() -> list[str]:
    return list(meta_file("esc50.json")["classes"])


def find_root(src: Path) -> Path:
    """The release folder: the one holding ``meta/esc50.csv`` (the archive's ``ESC-50-master/`` or ``src`` itself),
    else the one whose ``audio/`` holds ESC-50 clips by name."""
    for found in sorted(Path(src).rglob(CSV_NAME)):
        if found.parent.name == "meta":
            return found.parent.parent
    for audio in sorted(p for p in Path(src).rglob("audio") if p.is_dir()):
        if any(_CLIP_NAME.fullmatch(f.name) for f in audio.iterdir()):
            return audio.parent
    raise VitlensError(f"{src}: not the ESC-50 release (no meta/{CSV_NAME} and no audio/ of ESC-50 clips; "
                       "expected ESC-50-master/ with audio/ and meta/)")


def listing_from_names(root: Path) -> list[tuple[str, int, int]]:
    """``(filename, fold, target)`` of every clip in ``audio/`` named as ESC-50 names them, sorted by name."""
    rows = []
    for f in sorted((root / "audio").iterdir()):
        match = _CLIP_NAME.fullmatch(f.name)
        if match is not None:
            target = int(match.group(2))
            if target >= len(classes()):
                raise VitlensError(f"{f}: target {target} outside 0..{len(classes()) - 1}")
            rows.append((f.name, int(match.group(1)), target))
    return rows


def read_listing(root: Path) -> list[tuple[str, int, int]]:
    """``(filename, fold, target)`` per row of ``meta/esc50.csv``, in file order; a bad row is one error line."""
    path = root / "meta" / CSV_NAME
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        reason = os_reason(exc, path) if isinstance(exc, OSError) else "not UTF-8 text"
        raise VitlensError(f"{path}: {reason}") from None
    names = classes()
    reader = csv.DictReader(io.StringIO(text, newline=""))
    missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise VitlensError(f"{path}: missing column(s) {', '.join(missing)} (expected {','.join(COLUMNS)},...)")
    rows = []
    try:
        for row in reader:
            line = reader.line_num
            try:
                fold, target = int(row["fold"]), int(row["target"])
            except (TypeError, ValueError):
                raise VitlensError(f"{path}:{line}: fold and target must be integers") from None
            if not 0 <= target < len(names):
                raise VitlensError(f"{path}:{line}: target {target} outside 0..{len(names) - 1}")
            category = (row["category"] or "").replace("_", " ")
            if category != names[target]:
                raise VitlensError(f"{path}:{line}: category {row['category']!r} is not class {target} "
                                   f"({names[target]!r}) of ESC-50")
            if not row["filename"] or "/" in row["filename"] or "\\" in row["filename"]:
                raise VitlensError(f"{path}:{line}: filename must be a file name in audio/")
            rows.append((row["filename"], fold, target))
    except csv.Error as exc:
        raise VitlensError(f"{path}: not a readable CSV ({exc})") from None
    if not rows:
        raise VitlensError(f"{path}: lists no clips")
    return rows


def prepare(src: Path, dest: Path, *, on_item=None, source_key: str = "") -> CacheIndex:
    root = find_root(src)
    by_csv = (root / "meta" / CSV_NAME).is_file()
    rows = read_listing(root) if by_csv else listing_from_names(root)
    listed = f"listed by meta/{CSV_NAME}" if by_csv else "listed by the clip file names in audio/ (no esc50.csv)"
    audio = get_modality("audio")
    contract = audio.default_contract()
    names = [name for name, _, _ in rows]
    shape = (contract.n_clips, contract.target_length, contract.mel_bins)
    index = CacheIndex.for_tensors("esc50", None, classes(), "audio", shape, audio.contract_to_dict(contract),
                                   f"{PROTOCOL}; {len(rows)} clips {listed}", source=str(root),
                                   source_key=source_key,
                                   groups={"fold": {name: str(fold) for name, fold, _ in rows}})

    def make(i: int) -> Sample:
        path = root / "audio" / rows[i][0]
        problem = file_problem(path)
        if problem is not None:
            raise SkipItem(problem)
        try:
            return Sample(audio.prepare(path, contract).numpy(), rows[i][2], names[i])
        except ModalityFileError as exc:
            raise SkipItem(exc.reason) from exc

    return build_cache(dest, index, names, make, on_item=on_item)
