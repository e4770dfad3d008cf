"""Class lists and prompt templates shipped with the package."""
from __future__ import annotations

import json
from functools import cache
from importlib import resources

from ..errors import ConfigError


@cache
def _load(name: str) -> dict:
    return json.loads(resources.files("vitlens_cli.data").joinpath("meta", name).read_text(encoding="utf-8"))


def classnames(key: str) -> list[str]:
    data = _load("classnames.json")
    if key not in data or key.startswith("_"):
        raise ConfigError(f"no class list named '{key}'")
    return list(data[key])


def templates(key: str = "ulip_64") -> list[str]:
    data = _load("templates.json")
    if key not in data or key.startswith("_"):
        raise ConfigError(f"no template set named '{key}'")
    return list(data[key])
