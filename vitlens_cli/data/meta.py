"""Class lists and prompt templates shipped with the package."""
from __future__ import annotations

import json
from functools import cache
from importlib import resources

from ..errors import ConfigError


@cache
def _load(name: str) -> dict:
    return json.loads(resources.files("vitlens_cli.data").joinpath("meta", name).read_text(encoding="utf-8"))


def meta_file(name: str) -> dict:
    """One benchmark's shipped metadata file (``meta/<name>``: class lists, test lists, their source)."""
    try:
        return _load(name)
    except FileNotFoundError:
        raise ConfigError(f"no shipped metadata file '{name}'") from None


def classnames(key: str) -> list[str]:
    """A class list; for a synset table (``shapenet55``) the names in synset order."""
    data = _load("classnames.json")
    table = data.get(f"{key}_synsets")
    if table is not None:
        return list(table.values())
    if key not in data or key.startswith("_"):
        raise ConfigError(f"no class list named '{key}'")
    return list(data[key])


def synsets(key: str = "shapenet55") -> dict[str, str]:
    """Synset id → class name."""
    data = _load("classnames.json")
    if f"{key}_synsets" not in data:
        raise ConfigError(f"no synset table named '{key}'")
    return dict(data[f"{key}_synsets"])


#: The prompt set each modality's own data is classified with unless a benchmark names another: the sets the
#: official zero-shot code uses for that modality (``training/zero_shot.py``; sources in templates.json).
MODALITY_TEMPLATES = {"3d": "ulip_64", "audio": "sound_as_image_12", "depth": "scene_19",
                      "tactile": "tactile_material_2", "eeg": "photo_3", "image": "photo_3"}


def default_templates(modality: str) -> str:
    """The name of the default prompt set for ``modality`` (``ulip_64`` for one without its own)."""
    return MODALITY_TEMPLATES.get(modality, "ulip_64")


def templates(key: str = "ulip_64") -> list[str]:
    data = _load("templates.json")
    if key not in data or key.startswith("_"):
        raise ConfigError(f"no template set named '{key}'")
    return list(data[key])
