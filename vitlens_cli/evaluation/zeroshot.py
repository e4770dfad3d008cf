"""The text side of evaluation: the zero-shot classifier from class names and prompt templates (the official
averaging rule) and caption embeddings for retrieval, both cached on disk by the identity of the text-tower
weights (the checkpoint file they were read from) and the inputs."""
from __future__ import annotations

import hashlib
import json
import string
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..user_cache import cache_dir as user_cache_dir


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


def text_identity(model) -> str | None:
    """Names the text tower's weights without touching them: the checkpoint file they were read from (its
    sha256, the Hub's record when there is one, as the training feature cache keys its towers) and the
    text architecture. None when the weights come from no one file (a fresh init, or changed after loading).
    """
    path = getattr(model, "weights_file", None)
    if path is None:
        return None
    from ..models.factory import hub_sha256
    from ..models.identity import tower_identity

    card = model.cfg.card
    text = asdict(model.cfg.text) if model.cfg.text is not None else None
    weights = tower_identity(card.clip_model, str(path), card.name, 0, sha256=hub_sha256(path))
    # The card's open_clip tag fills a text tower that the file lacks.
    return json.dumps({"weights": weights, "clip_pretrained": card.clip_pretrained, "text": text},
                      sort_keys=True, default=str)


def _text_key(model, tag: bytes, payload: object) -> str:
    """Identifies text-side results by the text tower (:func:`text_identity`), a tag for the kind and the inputs.

    Weights that no file names (a fresh init) are hashed instead: slow for a large tower, exact for any.
    """
    h = hashlib.sha256(tag)
    identity = text_identity(model)
    if identity is not None:
        h.update(identity.encode())
    else:
        for name, tensor in sorted(model.text.state_dict().items()):
            t = tensor.detach().cpu().contiguous()
            h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.dtype != torch.bool else t.numpy().tobytes())
    h.update(json.dumps(payload).encode())
    return h.hexdigest()


def classifier_key(model, classnames: Sequence[str], templates: Sequence[str]) -> str:
    """Identifies a classifier by the text tower (:func:`text_identity`), the class names and the templates."""
    return _text_key(model, b"vitlens-classifier/1", [list(classnames), list(templates)])


def _cached_rows(path: Path, name: str, rows: int, compute: Callable[[], torch.Tensor],
                 metadata: dict[str, str]) -> tuple[torch.Tensor, bool]:
    """``(rows, E)`` tensor ``name`` of the safetensors file ``path``, else ``compute()`` stored there; and
    whether it was read.

    The cache only saves time: an unreadable or damaged entry is computed again and replaced, and a cache
    folder that cannot be written is skipped.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file, save_file

    from ..atomic import write_atomic

    if path.is_file():
        try:
            found = load_file(str(path))[name]
        except (OSError, SafetensorError, KeyError):
            found = None
        if found is not None and found.ndim == 2 and found.shape[0] == rows:
            return found, True
    value = compute().float().cpu().contiguous()
    try:
        write_atomic(path, lambda p: save_file({name: value}, str(p), metadata=metadata))
    except OSError:
        pass  # a read-only or full cache folder costs the next run an encode, nothing more
    return value, False


def cached_classifier(model, classnames: Sequence[str], templates: Sequence[str],
                      cache_dir: Path | None = None) -> tuple[torch.Tensor, int]:
    """The classifier and how many prompts were encoded for it (0 when it came from the cache)."""
    key = classifier_key(model, classnames, templates)
    path = Path(cache_dir or user_cache_dir("classifiers")) / f"{key}.safetensors"
    clf, cached = _cached_rows(path, "classifier", len(classnames),
                               lambda: zeroshot_classifier(model, classnames, templates),
                               {"classes": str(len(classnames)), "templates": str(len(templates))})
    return clf, 0 if cached else len(classnames) * len(templates)


@torch.no_grad()
def caption_embeddings(model, captions: Sequence[str], batch_size: int = 64) -> torch.Tensor:
    """``(T, E)`` L2-normalised text embeddings of ``captions``, encoded ``batch_size`` at a time."""
    chunks = [model.encode_text(list(captions[i:i + batch_size]), normalize=True).float().cpu()
              for i in range(0, len(captions), batch_size)]
    return torch.cat(chunks)


def cached_caption_embeddings(model, captions: Sequence[str], cache_dir: Path | None = None,
                              batch_size: int = 64) -> tuple[torch.Tensor, int]:
    """Caption embeddings and how many captions were encoded (0 when they came from the cache).

    Cached like the classifier, keyed by the text tower and the captions in order.
    """
    key = _text_key(model, b"vitlens-captions/1", list(captions))
    path = Path(cache_dir or user_cache_dir("captions")) / f"{key}.safetensors"
    emb, cached = _cached_rows(path, "captions", len(captions),
                               lambda: caption_embeddings(model, captions, batch_size),
                               {"captions": str(len(captions))})
    return emb, 0 if cached else len(captions)
