"""Touch-and-Go tactile classification: the official test splits as ViT-Lens' ``TAGDataset`` reads them.

The lists are JSON arrays of ``{"gel_path", "image_path", "material_label", "material_name", "sr_label",
"sr_name", "hs_label", "hs_name"}`` with paths relative to the dataset folder
(``<video>/gelsight_frame/<frame>.jpg``):

* ``material`` (``test_material``): ``test.json``, ``material_label`` over the 20 classes below (``others``
  included, the official ``ruber`` spelling kept: it is what the prompts say);
* ``hard`` (``test_hard``): ``test.json``, ``hs_label`` over (hard, soft);
* ``rough`` (``test_rough``): ``test_rough.json``, ``sr_label`` over (smooth, rough).

The GelSight frame (``gel_path``) is the model input. Entries without a label for the split are left out and
counted (the official loader would fail on them). Frame names repeat across videos, so a frame is only found
under its own ``<video>/gelsight_frame/`` folder.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import VitlensError
from .listed import ListedItem, find_file, read_json_list

# TAGDataset.init_labels (modal_tactile/datasets.py of ViT-Lens, Apache-2.0)
MATERIALS = ["concrete", "plastic", "glass", "wood", "metal", "brick", "tile", "leather", "synthetic fabric",
             "natural fabric", "ruber", "paper", "tree", "grass", "soil", "rock", "gravel", "sand", "plants", "others"]
SPLITS = {
    "material": ("test.json", "material_label", "material_name", MATERIALS),
    "hard": ("test.json", "hs_label", "hs_name", ["hard", "soft"]),
    "rough": ("test_rough.json", "sr_label", "sr_name", ["smooth", "rough"]),
}
# The prompt sets of training/zero_shot.py test_tactle_cls_single, by their names in meta/templates.json
TEMPLATES = {"material": "tactile_material_2", "hard": "tactile_binary_2", "rough": "tactile_binary_2"}
PROTOCOL = ("Touch-and-Go test_{split} ({file}: {key} over {n} classes, the GelSight frame as input); "
            "top-1 as training/zero_shot.py test_tactle_cls_single")


def read_split(folder: Path, split: str) -> tuple[list[ListedItem], list[str], dict]:
    """``(items, classes, protocol facts)`` of a test split found under ``folder``."""
    name, key, name_key, classes = SPLITS[split]
    path = find_file(folder, (name,))
    if path is None:
        raise VitlensError(f"{folder}: no {name} found (the Touch-and-Go test list of the official ViT-Lens "
                           "src/open_clip/modal_tactile/data; put it in the dataset folder)")
    data = read_json_list(path, "frames")
    items, unlabelled = [], 0
    for n, entry in enumerate(data):
        if not isinstance(entry, dict) or not isinstance(entry.get("gel_path"), str) or not entry["gel_path"]:
            raise VitlensError(f"{path}: entry {n}: expected an object with a gel_path")
        label = entry.get(key)
        if label is None:
            unlabelled += 1
            continue
        if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < len(classes):
            raise VitlensError(f"{path}: entry {n}: {key} {label!r} is not a class index in [0, {len(classes)})")
        given = entry.get(name_key)
        if isinstance(given, str) and given != classes[label]:
            raise VitlensError(f"{path}: entry {n}: {name_key} {given!r} but {key} {label} is "
                               f"{classes[label]!r}: a list of another label order")
        items.append(ListedItem(str(n), entry["gel_path"], labels=[label]))
    if not items:
        raise VitlensError(f"{path}: no entry has a {key}")
    facts = {"source": PROTOCOL.format(split=split, file=name, key=key, n=len(classes)), "layout": path.name,
             "entries_without_label": unlabelled, "templates": TEMPLATES[split]}
    return items, list(classes), facts
