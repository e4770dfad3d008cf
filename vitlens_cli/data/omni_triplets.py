"""Training items of the released depth, tactile and audio lenses, read from the official annotation JSONs.

They follow the official datasets (TencentARC/ViT-Lens ``vitlens/src/open_clip``) field for field:

* **SUN RGB-D** (``modal_depth/datasets.py``, ``SUNRGBDDataset``): a JSON list of ``image_path``,
  ``disparity_path`` (the precomputed ``*_disparity.pt``) and ``cleaned_label``, paths relative to the
  data root; the caption is a random ``SCENE_CLS_TEMPLATE`` of the label, cleaned by the
  ``BlipCaptionProcessor`` (``pre_caption``, 70 words).
* **Touch-and-Go** (``modal_tactile/datasets.py``): a JSON list of ``gel_path`` (the GelSight frame),
  ``image_path`` (the video frame) and ``material_name``; the caption is ``"an image of <name>."``, or
  ``"an image showing a material."`` without a name, cleaned the same way.
* **AudioSet** (``modal_audio/datasets.py``, ``AudioSetDataset``): JSON lists of ``audio_path``,
  ``video_path``, ``captions`` (``captions[0]`` the class names, the rest extra captions) and
  ``is_good_video``, concatenated (``audioset_train_all``: the balanced and unbalanced lists); half the
  time an item with extra captions takes one of them, else a random ``SOUND_AS_IMAGE_TEMPLATE`` of its
  class names, cleaned the same way. With video pairing on, items whose ``is_good_video`` is not true
  are left out, as the official loader does.

Items are :class:`~vitlens_cli.data.signals.Sample` with the raw signal from the modality's reader and
the paired image's path (an AudioSet frame decoded from its video: PPM bytes); random choices come from
``(seed, epoch, index)``.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..caption_text import pre_caption
from ..errors import VitlensError
from .signals import Sample
from .video import read_frame, window_frame

#: ``modal_depth/data/scene_cls_template.py`` (Apache-2.0, TencentARC/ViT-Lens), as format strings.
SCENE_CLS_TEMPLATES = (
    "An image depicting a {} environment.", "This location is best described as {}.", "This location is {}.",
    "A visual scene of {} setting.", "This picture showcases a {} environment.", "This place is {}.",
    "An example of {} scene category.", "An example of a {} scene.", "This scene can be described as {}.",
    "A visual scene of a {} location.", "This photograph captures a {} scene.", "This is a {} setting.",
    "This image corresponds to a {} scene.", "This photograph shows {}.", "This is an image of {}.",
    "A good image of {}.", "A photo of the nice {}.", "A picture of {}.", "A bright image of {}.",
)


def _annotation(root: Path, annotation: str, keys: tuple[str, ...],
                check: Callable[[dict], str | None] = lambda item: None) -> list[dict]:
    path = Path(annotation) if Path(annotation).is_absolute() else root / annotation
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise VitlensError(path, "no such annotation file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise VitlensError(path, f"not a readable annotation JSON ({type(exc).__name__})") from None
    if not isinstance(items, list) or not items:
        raise VitlensError(path, "expected a non-empty JSON list of items")
    for n, item in enumerate(items):
        missing = [k for k in keys if not isinstance(item, dict) or k not in item]
        if missing:
            raise VitlensError(path, f"item {n} has no {', '.join(missing)}")
        reason = check(item)
        if reason:
            raise VitlensError(path, f"item {n} {reason}")
    return items


class _Annotated:
    """A subclass names its ``modality``, the item ``keys``, the ``signal_key`` and a ``caption(item, rng)``;
    ``annotation`` is one JSON list or several, read in order and concatenated."""

    def __init__(self, root: str | Path, annotation: str | list[str], seed: int = 0) -> None:
        from ..modalities import get_modality

        self.root = Path(root)
        names = [annotation] if isinstance(annotation, str) else list(annotation)
        if not names:
            raise VitlensError(self.root, "no annotation file named")
        self.items = [item for name in names for item in _annotation(self.root, name, self.keys, self.check)]
        self.plugin = get_modality(self.modality)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Sample:
        item = self.items[i]
        rng = np.random.default_rng([self.seed, self.epoch, int(i)])
        signal = self.plugin.read(self.root / item[self.signal_key])
        return Sample(signal, pre_caption(self.caption(item, rng)), self.image(item), None, None,
                      item[self.signal_key])

    def image(self, item: dict) -> str | None:
        return str(self.root / item["image_path"])

    def check(self, item: dict) -> str | None:
        """Why ``item`` (which has every key) cannot be read, or None."""
        return None


class SUNRGBDTriplets(_Annotated):
    """``SUN-RGBD_train.json`` items: disparity, RGB image, a scene-template caption of ``cleaned_label``."""

    modality = "depth"
    keys = ("image_path", "disparity_path", "cleaned_label")
    signal_key = "disparity_path"

    def caption(self, item: dict, rng: np.random.Generator) -> str:
        return SCENE_CLS_TEMPLATES[int(rng.integers(len(SCENE_CLS_TEMPLATES)))].format(item["cleaned_label"])


class TouchAndGoTriplets(_Annotated):
    """Touch-and-Go ``pretrain.json`` items: GelSight frame, video frame, ``"an image of <material>."``."""

    modality = "tactile"
    keys = ("gel_path", "image_path", "material_name")
    signal_key = "gel_path"

    def caption(self, item: dict, rng: np.random.Generator) -> str:
        name = item["material_name"]
        return f"an image of {name}." if name is not None else "an image showing a material."


class AudioSetTriplets(_Annotated):
    """AudioSet training lists (``audioset_balanced_train.json``, ``audioset_unbalanced_train.json``): audio,
    a caption, and with ``frames="video"`` or ``frame_dir`` the clip's video frame.

    The official loader decodes a frame of ``video_path`` (``--audio_load_vision --n_frames 1``): the first
    of the clip's window, ``int(start · fps)`` (:mod:`~vitlens_cli.data.video`). ``frames="video"`` does the
    same on the videos under the root and pairs the frame as PPM bytes (a feature cache keys them by their
    content, never by the video, whose frame depends on the window). ``frame_dir`` (relative to the root,
    or absolute) reads frames extracted beforehand instead, which is cheaper: without ``frame_rate`` one
    frame per video, ``<frame_dir>/<video_path with suffix .jpg>``, whatever the window; with it, the
    frames of ``ffmpeg -i <video> -vf fps=<frame_rate> <frame_dir>/<video_path without suffix>/%06d.jpg``,
    and :meth:`frame` picks the one at a window's start. Either way only the items marked ``is_good_video``
    are kept, as the official loader keeps them.
    """

    modality = "audio"
    keys = ("audio_path", "captions")
    signal_key = "audio_path"

    def __init__(self, root: str | Path, annotation: str | list[str], frame_dir: str | None = None,
                 seed: int = 0, frame_rate: float | None = None, frames: str | None = None) -> None:
        from .meta import templates

        if frames not in (None, "video"):
            raise VitlensError(Path(root), f"frames must be 'video' (decode each item's video_path) or None, "
                               f"not {frames!r}")
        if frames is not None and frame_dir is not None:
            raise VitlensError(Path(root), "frames come either from the videos (frames='video') or from "
                               "frame_dir, not both")
        # before the annotation is read: check() needs to know whether frames are paired
        self.frame_dir = None if frame_dir is None else (Path(frame_dir) if Path(frame_dir).is_absolute()
                                                         else Path(root) / frame_dir)
        self.frame_rate = frame_rate
        self.decode_video = frames == "video"
        self.pairing = ("data.options.frames video" if self.decode_video else
                        "data.options.frame_dir" if self.frame_dir is not None else None)
        super().__init__(root, annotation, seed)
        if self.pairing is not None:
            self.items = [item for item in self.items if item.get("is_good_video") is True]
            if not self.items:
                raise VitlensError(self.root, "no annotation item has is_good_video true (needed to pair frames: "
                                   f"{self.pairing})")
        self.templates = templates("sound_as_image_12")

    def check(self, item: dict) -> str | None:
        captions = item["captions"]
        if not isinstance(captions, list) or not captions or not all(isinstance(c, str) for c in captions):
            return "'captions' must be a non-empty list of texts (the class names first)"
        if self.pairing is not None and item.get("is_good_video") is True \
                and not isinstance(item.get("video_path"), str):
            return f"has is_good_video true but no video_path (needed to pair frames: {self.pairing})"
        return None

    def caption(self, item: dict, rng: np.random.Generator) -> str:
        captions = item["captions"]
        if len(captions) > 1 and rng.random() < 0.5:
            return captions[1 + int(rng.integers(len(captions) - 1))]
        return self.templates[int(rng.integers(len(self.templates)))].format(captions[0])

    def mixup_caption(self, i: int, rng: np.random.Generator) -> str:
        """What a mixup appends of item ``i``: any one of its captions, the class names included, raw (no
        template, no cleaning), as ``random.choice(second_ann["captions"])``."""
        captions = self.items[i]["captions"]
        return captions[int(rng.integers(len(captions)))]

    def image(self, item: dict) -> str | bytes | None:
        # A frame that depends on the clip's window is asked for by frame(i, start) once the window is drawn;
        # reading one here as well would decode (or look up) every item's frame twice.
        if self.decode_video or self.frame_rate is not None:
            return None
        return self._frame(item, 0.0)

    def frame(self, i: int, start: float) -> str | bytes | None:
        """The frame of item ``i`` paired with a clip whose window starts at ``start`` seconds."""
        return self._frame(self.items[i], start)

    def _frame(self, item: dict, start: float) -> str | bytes | None:
        if self.decode_video:
            return self._decoded(item, start)
        if self.frame_dir is None:
            return None
        video = Path(item["video_path"])
        if self.frame_rate is None:
            return str(self.frame_dir / video.with_suffix(".jpg"))
        folder = self.frame_dir / video.with_suffix("")
        try:
            frames = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        except OSError:
            frames = []
        if not frames:
            raise VitlensError(folder, "no extracted frames (data.options.frame_rate expects "
                               f"<frame_dir>/<video_path without suffix>/*.jpg, for {item['audio_path']})")
        return str(folder / frames[window_frame(start, self.frame_rate, len(frames))])

    def _decoded(self, item: dict, start: float) -> bytes:
        """The frame of ``video_path`` at the window ``start`` as PPM bytes (lossless, what ``load_image``
        opens, and nearly free to write and read, where PNG at its fastest takes ~20 ms a 360p frame); an
        unreadable video fails naming it and the item, as a missing audio file fails naming that file."""
        import io

        from PIL import Image

        path = self.root / item["video_path"]
        try:
            rgb = read_frame(path, start)
        except VitlensError as exc:
            raise VitlensError(path, f"{exc.reason} (the video of {item['audio_path']})") from None
        out = io.BytesIO()
        Image.fromarray(rgb).save(out, format="PPM")
        return out.getvalue()
