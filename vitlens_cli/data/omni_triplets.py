"""Training items of the released depth and tactile lenses, read from the official annotation JSONs.

Both follow the official datasets (TencentARC/ViT-Lens ``vitlens/src/open_clip``) field for field:

* **SUN RGB-D** (``modal_depth/datasets.py``, ``SUNRGBDDataset``): a JSON list of ``image_path``,
  ``disparity_path`` (the precomputed ``*_disparity.pt``) and ``cleaned_label``, paths relative to the
  data root; the caption is a random ``SCENE_CLS_TEMPLATE`` of the label, cleaned by the
  ``BlipCaptionProcessor`` (``pre_caption``, 70 words).
* **Touch-and-Go** (``modal_tactile/datasets.py``): a JSON list of ``gel_path`` (the GelSight frame),
  ``image_path`` (the video frame) and ``material_name``; the caption is ``"an image of <name>."``, or
  ``"an image showing a material."`` without a name, cleaned the same way.

Items are :class:`~vitlens_cli.data.signals.Sample` with the raw signal from the modality's reader and
the paired image's path; random choices come from ``(seed, epoch, index)``.
"""
from __future__ import annotations

import json
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


def _annotation(root: Path, annotation: str, keys: tuple[str, ...]) -> list[dict]:
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
    return items


def _clean(caption: str) -> str:
    from ..models.vitlens import pre_caption

    return pre_caption(caption, 70)


class _Annotated:
    """A subclass names its ``modality``, the item ``keys``, the ``signal_key`` and a ``caption(item, rng)``."""

    def __init__(self, root: str | Path, annotation: str, seed: int = 0) -> None:
        from ..modalities import get_modality

        self.root = Path(root)
        self.items = _annotation(self.root, annotation, self.keys)
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
        return Sample(signal, _clean(self.caption(item, rng)), str(self.root / item["image_path"]), None, None,
                      item[self.signal_key])


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
