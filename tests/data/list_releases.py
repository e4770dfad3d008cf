"""Small synthetic releases laid out as the official code reads them: the ONE-PEACE ``clotho.zip`` /
``audiocaps.zip`` (``<split>_new.tsv`` + ``<split>_texts.json``, audio under ``clotho/audio/evaluation/``), the
Clotho and AudioCaps releases' own CSVs, the ViT-Lens AudioSet / VGGSound clip lists and Touch-and-Go's
test.json / test_rough.json with GelSight frames under ``<video>/gelsight_frame/``."""
from __future__ import annotations

import csv
import json
import zipfile
from pathlib import Path

import numpy as np

SR = 16000


def write_tone(path: Path, freq: float, seconds: float = 6.0) -> Path:
    import soundfile

    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(SR * seconds)) / SR
    soundfile.write(str(path), (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), SR)
    return path


# uniq_id → captions; clip 4 is listed but its audio is not in the archive
CLOTHO = {
    "1": ["a machine whines", "a machine squeals", "punching and stamping", "a pump whirs", "a machine whines"],
    "2": ["a radio dispatcher talks", "officers on the radio", "radio chatter", "static and voices",
          "a machine whines"],
    "3": ["static between stations", "a radio tuner", "horrific static", "a dial turning", "white noise"],
    "4": ["birds sing", "a bird chirps", "crickets", "locusts chirp", "morning outdoors"],
}


def clotho_vitlens(root: Path, *, with_missing: bool = True) -> Path:
    """``root/clotho/`` as the ONE-PEACE clotho.zip extracts: the tsv, the texts JSON, the audio folders.

    ``validation/1.flac`` is the trap: the same name as ``evaluation/1.flac``, in another split.
    """
    base = root / "clotho"
    ids = list(CLOTHO) if with_missing else list(CLOTHO)[:3]
    rows = [("uniq_id", "audio", "text", "duration")]
    for i, uid in enumerate(ids):
        rows.append((uid, f"clotho/audio/evaluation/{uid}.flac", CLOTHO[uid][0], "6.0"))
        if uid != "4":
            write_tone(base / "audio" / "evaluation" / f"{uid}.flac", 220.0 * (i + 1))
    write_tone(base / "audio" / "validation" / "1.flac", 3000.0)
    base.mkdir(parents=True, exist_ok=True)
    (base / "clotho_evaluation_new.tsv").write_text("\n".join("\t".join(r) for r in rows) + "\n")
    (base / "evaluation_texts.json").write_text(json.dumps({uid: CLOTHO[uid] for uid in ids}))
    return base


def zip_folder(folder: Path, archive: Path) -> Path:
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(folder.parent))
    return archive


def clotho_release(root: Path) -> Path:
    """The Clotho release: clotho_captions_evaluation.csv (file_name, caption_1..5) and evaluation/*.wav."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "clotho_captions_evaluation.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file_name", *(f"caption_{i}" for i in range(1, 6))])
        w.writerow(["Santa Motor.wav", "a motor runs", "an engine, idling", "a motor", "humming", "a car"])
        w.writerow(["Gone.wav", *(f"caption {i}" for i in range(5))])
    write_tone(root / "evaluation" / "Santa Motor.wav", 300.0)
    return root


def audiocaps_release(root: Path) -> Path:
    """AudioCaps' test.csv (audiocap_id, youtube_id, start_time, caption): two clips, 2 + 1 captions."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "test.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["audiocap_id", "youtube_id", "start_time", "caption"])
        w.writerow(["103549", "7fmOlUlwoNg", "20", "Constant rattling noise"])
        w.writerow(["103548", "7fmOlUlwoNg", "20", "Vibrations and rattling"])
        w.writerow(["97151", "6BJ455B1aAs", "0", "A rocket flies by"])
        w.writerow(["97152", "missingclip", "0", "nobody has this one"])
    write_tone(root / "audio" / "Y7fmOlUlwoNg_20.000_30.000.flac", 500.0)
    write_tone(root / "audio" / "6BJ455B1aAs.flac", 700.0)
    return root


def vggsound_list(root: Path, entries: list[tuple[str, int, str]], present: set[str]) -> Path:
    """``vggsound_audio-only_val.json`` entries ``(vid, class index, class name)``, audio for ``present``."""
    root.mkdir(parents=True, exist_ok=True)
    data = []
    for i, (vid, label, name) in enumerate(entries):
        audio = f"vggsound/audio/test/{vid}.flac"
        data.append({"vid": vid, "class_name": name, "captions": [name], "audio_path": audio, "class_labels": label})
        if vid in present:
            write_tone(root / "test" / f"{vid}.flac", 200.0 + 50 * i)
    (root / "vggsound_audio-only_val.json").write_text(json.dumps(data, indent=2))
    return root


def audioset_list(root: Path, entries: list[tuple[str, list[int]]], present: set[str]) -> Path:
    """``audioset_val.json`` entries ``(vid, class indices)``, audio for ``present``."""
    root.mkdir(parents=True, exist_ok=True)
    data = []
    for i, (vid, labels) in enumerate(entries):
        data.append({"vid": vid, "audio_path": f"audioset/audio/eval/{vid}.flac",
                     "video_path": f"audioset/video/eval/{vid}.mp4", "captions": ["x"], "class_name": ["x"],
                     "class_labels": labels})
        if vid in present:
            write_tone(root / "eval" / f"{vid}.flac", 200.0 + 40 * i)
    (root / "audioset_val.json").write_text(json.dumps(data))
    return root


def _frame(path: Path, shade: int) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(shade)
    Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(path)


# (video, frame, material_label, hs_label, sr_label); frame 0000000001.jpg of the second video is not on disk
TAG_FRAMES = [("20220520_171121", "0000000430.jpg", 4, 0, 1), ("20220520_171121", "0000000958.jpg", 13, 1, None),
              ("20220601_182052", "0000000430.jpg", 19, None, 0), ("20220601_182052", "0000000001.jpg", 3, 0, 1)]


def touch_and_go(root: Path) -> Path:
    """Touch-and-Go: test.json (material + hard/soft labels), test_rough.json, frames of two videos."""
    from vitlens_cli.data.touch_and_go import MATERIALS

    names = {"hs": ["hard", "soft"], "sr": ["smooth", "rough"]}
    test, rough = [], []
    for i, (video, frame, material, hs, sr) in enumerate(TAG_FRAMES):
        entry = {"gel_path": f"{video}/gelsight_frame/{frame}", "image_path": f"{video}/video_frame/{frame}",
                 "material_label": material, "material_name": MATERIALS[material],
                 "hs_label": hs, "hs_name": None if hs is None else names["hs"][hs],
                 "sr_label": sr, "sr_name": None if sr is None else names["sr"][sr]}
        test.append(entry)
        if sr is not None:
            rough.append(entry)
        if frame != "0000000001.jpg":
            _frame(root / video / "gelsight_frame" / frame, i)
    (root / "test.json").write_text(json.dumps(test, indent=2))
    (root / "test_rough.json").write_text(json.dumps(rough, indent=2))
    return root
