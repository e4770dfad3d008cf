"""Zero-shot classifier from class names and prompt templates (the official averaging rule)."""
from __future__ import annotations

import hashlib
import json
import os
import string
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import ConfigError


def check_templates(templates: Sequence[str]) -> list[str]:
    """Templates that each hold ``{}`` exactly once (``{{``/``}}`` for literal braces); a :class:`ConfigError`
    naming the first that does not.

    ``str.format`` would raise on ``{name}`` or a stray ``{``, and silently drop the class name from a
    template without ``{}`` or repeat it where there are several.
    """
    templates = list(templates)
    if not templates:
        raise ConfigError("no prompt templates given")
    for template in templates:
        try:
            fields = [(name, spec, conv) for _, name, spec, conv in string.Formatter().parse(template)
                      if name is not None]
        except ValueError as exc:
            raise ConfigError(f"template {template!r}: {exc}; use {{{{ and }}}} for literal braces") from None
        if len(fields) != 1:
            raise ConfigError(f"template {template!r}: needs the placeholder {{}} exactly once, found "
                              f"{len(fields)} placeholders")
        name, spec, conv = fields[0]
        if name or spec or conv:
            raise ConfigError(f"template {template!r}: the only placeholder allowed is {{}}, found "
                              f"{{{name}{'!' + conv if conv else ''}{':' + spec if spec else ''}}}")
    return templates


def class_prompts(classnames: Sequence[str], templates: Sequence[str]) -> list[list[str]]:
    return [[t.format(c) for t in templates] for c in classnames]


@torch.no_grad()
def zeroshot_classifier(model, classnames: Sequence[str], templates: Sequence[str]) -> torch.Tensor:
    """``(C, E)``: per class, normalise every prompt embedding, average, normalise again."""
    rows = []
    for prompts in class_prompts(classnames, templates):
        emb = F.normalize(model.encode_text(prompts), dim=-1)
        rows.append(F.normalize(emb.mean(dim=0), dim=-1))
    return torch.stack(rows)


def zeroshot_logits(point_embeddings: torch.Tensor, classifier: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of each (normalised) point embedding with each class."""
    return F.normalize(point_embeddings, dim=-1) @ classifier.T


def default_cache_dir() -> Path:
    return Path(os.environ.get("VITLENS_CACHE", Path.home() / ".cache" / "vitlens")) / "classifiers"


def classifier_key(model, classnames: Sequence[str], templates: Sequence[str]) -> str:
    """Identifies a classifier by the text-tower weights, the class names and the templates."""
    h = hashlib.sha256(b"vitlens-classifier/1")
    for name, tensor in sorted(model.text.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.dtype != torch.bool else t.numpy().tobytes())
    h.update(json.dumps([list(classnames), list(templates)]).encode())
    return h.hexdigest()


def cached_classifier(model, classnames: Sequence[str], templates: Sequence[str],
                      cache_dir: Path | None = None) -> tuple[torch.Tensor, int]:
    """The classifier and how many prompts were encoded for it (0 when it came from the cache).

    The cache only saves time: an unreadable or damaged entry is encoded again and replaced, and a cache
    folder that cannot be written is skipped.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file, save_file

    from ..atomic import write_atomic

    path = Path(cache_dir or default_cache_dir()) / f"{classifier_key(model, classnames, templates)}.safetensors"
    if path.is_file():
        try:
            clf = load_file(str(path))["classifier"]
        except (OSError, SafetensorError, KeyError):
            clf = None
        if clf is not None and clf.ndim == 2 and clf.shape[0] == len(classnames):
            return clf, 0
    clf = zeroshot_classifier(model, classnames, templates).float().cpu().contiguous()
    try:
        write_atomic(path, lambda p: save_file({"classifier": clf}, str(p),
                                               metadata={"classes": str(len(classnames)),
                                                         "templates": str(len(templates))}))
    except OSError:
        pass  # a read-only or full cache folder costs the next run an encode, nothing more
    return clf, len(classnames) * len(templates)
