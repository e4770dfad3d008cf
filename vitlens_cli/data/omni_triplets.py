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
the paired image's path; random choices come from ``(seed, epoch, index)``.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import VitlensError
from .signals import Sample

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


def clean_caption(caption: str) -> str:
    """``BlipCaptionProcessor`` of the official datasets: ``pre_caption`` with at most 70 words."""
    from ..caption_text import pre_caption

    return pre_caption(caption, 70)


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
        return Sample(signal, clean_caption(self.caption(item, rng)), self.image(item), None, None,
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
    a caption, and with ``frame_dir`` the clip's video frame.

    The official loader decodes a frame of ``video_path`` (``--audio_load_vision --n_frames 1``); this one
    reads frames extracted beforehand, ``<frame_dir>/<video_path with suffix .jpg>`` (``frame_dir`` relative
    to the root, or absolute), and then keeps only the items marked ``is_good_video``.
    """

    modality = "audio"
    keys = ("audio_path", "captions")
    signal_key = "audio_path"

    def __init__(self, root: str | Path, annotation: str | list[str], frame_dir: str | None = None,
                 seed: int = 0) -> None:
        from .meta import templates

        super().__init__(root, annotation, seed)
        self.frame_dir = None if frame_dir is None else (Path(frame_dir) if Path(frame_dir).is_absolute()
                                                         else self.root / frame_dir)
        if self.frame_dir is not None:
            self.items = [item for item in self.items if item.get("is_good_video") is True]
            missing = next((item for item in self.items if not isinstance(item.get("video_path"), str)), None)
            if missing is not None:
                raise VitlensError(missing["audio_path"], "its annotation item has no video_path (needed to pair "
                                   "frames: data.options.frame_dir)")
            if not self.items:
                raise VitlensError(self.root, "no annotation item has is_good_video true (needed to pair frames: "
                                   "data.options.frame_dir)")
        self.templates = templates("sound_as_image_12")

    def check(self, item: dict) -> str | None:
        captions = item["captions"]
        if not isinstance(captions, list) or not captions or not all(isinstance(c, str) for c in captions):
            return "'captions' must be a non-empty list of texts (the class names first)"
        return None

    def caption(self, item: dict, rng: np.random.Generator) -> str:
        captions = item["captions"]
        if len(captions) > 1 and rng.random() < 0.5:
            return captions[1 + int(rng.integers(len(captions) - 1))]
        return self.templates[int(rng.integers(len(self.templates)))].format(captions[0])

    def image(self, item: dict) -> str | None:
        if self.frame_dir is None:
            return None
        return str(self.frame_dir / Path(item["video_path"]).with_suffix(".jpg"))
