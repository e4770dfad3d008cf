"""Frozen-tower features, computed once per distinct input and reused (text prompts repeat a lot).

Misses are encoded together, in chunks of one fixed size padded with a repeat of the last miss: a
feature must not depend on which other inputs shared its batch (BLAS picks kernels by shape, and a
batch of 1 and a batch of 8 round differently), or a resumed run, which meets the inputs in other
company, would drift from an uninterrupted one. Within one shape each row is computed alike whatever
its neighbours, so a fixed chunk gives the batch's speed with the per-sample result.

Paired images that the released code augments per item arrive as pixels (a view); :class:`ImageFeatures`
encodes those in the same fixed chunks every time and never caches them: no two views are alike, and a
feature cached by the image's path is of the un-augmented image.
"""
from __future__ import annotations

import hashlib
import io
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch


class FeatureCache:
    """Maps an input key to its L2-normalised feature; ``encode`` runs only on keys not held.

    ``identity`` names the frozen tower's weights (see :func:`tower_identity`): entries are keyed by it,
    so features of one checkpoint are never served for another. ``max_bytes`` bounds the features held;
    the least recently used go first (``None``: unbounded). ``chunk`` is the fixed encode batch.
    """

    def __init__(self, encode: Callable[[list], torch.Tensor], enabled: bool = True, *, identity: str = "",
                 max_bytes: int | None = None, chunk: int = 32) -> None:
        if chunk < 1:
            raise ValueError(f"chunk must be at least 1, got {chunk}")
        self._encode = encode
        self.enabled = enabled
        self.identity = identity
        self.max_bytes = max_bytes
        self.chunk = chunk
        self._store: OrderedDict[tuple[str, str], torch.Tensor] = OrderedDict()
        self.nbytes = 0
        self.encoded = 0
        self.hits = 0
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._store)

    def __call__(self, keys: Sequence[str], inputs: Sequence) -> torch.Tensor:
        if not self.enabled:
            self.encoded += len(inputs)
            return _unit(self._encode(list(inputs)).float())
        found: dict[str, torch.Tensor] = {}
        todo: dict[str, object] = {}
        for key, item in zip(keys, inputs):
            entry = self._store.get((self.identity, key))
            if entry is not None:
                self._store.move_to_end((self.identity, key))
                found[key] = entry
                self.hits += 1
            elif key not in todo:
                todo[key] = item
        if todo:
            feats = encode_fixed(self._encode, list(todo.values()), self.chunk)
            for key, feat in zip(todo, feats):
                found[key] = feat
                self._put(key, feat)
            self.encoded += len(todo)
        return torch.stack([found[k] for k in keys])

    def _put(self, key: str, feat: torch.Tensor) -> None:
        # A row of the chunk's output: clone so the stored feature does not keep the whole chunk alive.
        feat = feat.clone()
        size = feat.numel() * feat.element_size()
        if self.max_bytes is not None and size > self.max_bytes:
            return
        self._store[(self.identity, key)] = feat
        self.nbytes += size
        while self.max_bytes is not None and self.nbytes > self.max_bytes:
            _, old = self._store.popitem(last=False)
            self.nbytes -= old.numel() * old.element_size()
            self.evicted += 1


def encode_fixed(encode: Callable[[list], torch.Tensor], items: list, chunk: int) -> torch.Tensor:
    """L2-normalised ``encode`` of ``items`` in chunks of exactly ``chunk``, the last padded with its last item."""
    out = []
    for i in range(0, len(items), chunk):
        part = items[i:i + chunk]
        padded = part + [part[-1]] * (chunk - len(part))
        out.append(_unit(encode(padded).float())[:len(part)].detach())
    return torch.cat(out)


class ImageFeatures:
    """The paired images' features for a batch: an image given by path (or bytes) through ``cache``, a view
    (a ``(3, S, S)`` tensor, already the tower's input) by ``encode_views`` in the cache's fixed chunks, never
    cached."""

    def __init__(self, cache: FeatureCache, encode_views: Callable[[list[torch.Tensor]], torch.Tensor]) -> None:
        self.cache = cache
        self.encode_views = encode_views
        self.views_encoded = 0

    @property
    def encoded(self) -> int:
        return self.cache.encoded + self.views_encoded

    def __call__(self, images: Sequence, views: Sequence[torch.Tensor | None]) -> torch.Tensor | None:
        """One feature per row, or None when a row has neither an image nor a view (no image loss then)."""
        if any(image is None and view is None for image, view in zip(images, views)):
            return None
        rows: list[torch.Tensor | None] = [None] * len(images)
        by_path = [k for k, view in enumerate(views) if view is None]
        if by_path:
            feats = self.cache([image_key(images[k]) for k in by_path], [images[k] for k in by_path])
            for k, feat in zip(by_path, feats):
                rows[k] = feat
        by_pixels = [k for k, view in enumerate(views) if view is not None]
        if by_pixels:
            feats = encode_fixed(self.encode_views, [views[k] for k in by_pixels], self.cache.chunk)
            self.views_encoded += len(by_pixels)
            for k, feat in zip(by_pixels, feats):
                rows[k] = feat
        return torch.stack(rows)


@dataclass(frozen=True)
class ImageView:
    """What the frozen CLIP image tower takes: a ``size`` square normalised by ``mean`` / ``std``, and its eval
    ``transform`` (PIL image → that tensor) for an un-augmented image that must still travel as pixels."""

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    transform: Callable | None = None


def image_view(transform) -> ImageView:
    """The :class:`ImageView` of an open_clip eval transform (a torchvision ``Compose`` with a ``CenterCrop``
    and a ``Normalize``)."""
    from torchvision import transforms as T

    from ..errors import ConfigError

    steps = getattr(transform, "transforms", [])
    norm = next((t for t in steps if isinstance(t, T.Normalize)), None)
    crop = next((t for t in steps if isinstance(t, T.CenterCrop)), None)
    if norm is None or crop is None:
        raise ConfigError(f"model.clip_model: its image transform has no CenterCrop and Normalize ({transform})")
    size = crop.size if isinstance(crop.size, int) else crop.size[0]
    return ImageView(int(size), tuple(float(v) for v in norm.mean), tuple(float(v) for v in norm.std), transform)


def _unit(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x, dim=-1)


def image_key(image: str | bytes) -> str:
    return image if isinstance(image, str) else "sha256:" + hashlib.sha256(image).hexdigest()


def load_image(image: str | bytes):
    from PIL import Image

    src = io.BytesIO(image) if isinstance(image, bytes) else image
    with Image.open(src) as im:
        return im.convert("RGB")
