"""Frozen-tower features, computed once per distinct input and reused (text prompts repeat a lot).

Misses are encoded together, in chunks of one fixed size padded with a repeat of the last miss: a
feature must not depend on which other inputs shared its batch (BLAS picks kernels by shape, and a
batch of 1 and a batch of 8 round differently), or a resumed run, which meets the inputs in other
company, would drift from an uninterrupted one. Within one shape each row is computed alike whatever
its neighbours, so a fixed chunk gives the batch's speed with the per-sample result.
"""
from __future__ import annotations

import hashlib
import io
from collections import OrderedDict
from collections.abc import Callable, Sequence

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
            elif key not in todo:
                todo[key] = item
        if todo:
            feats = self._encode_fixed(list(todo.values()))
            for key, feat in zip(todo, feats):
                found[key] = feat
                self._put(key, feat)
            self.encoded += len(todo)
        return torch.stack([found[k] for k in keys])

    def _encode_fixed(self, items: list) -> torch.Tensor:
        out = []
        for i in range(0, len(items), self.chunk):
            part = items[i:i + self.chunk]
            padded = part + [part[-1]] * (self.chunk - len(part))
            out.append(_unit(self._encode(padded).float())[:len(part)].detach())
        return torch.cat(out)

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


def _unit(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x, dim=-1)


def image_key(image: str | bytes) -> str:
    return image if isinstance(image, str) else "sha256:" + hashlib.sha256(image).hexdigest()


def load_image(image: str | bytes):
    from PIL import Image

    src = io.BytesIO(image) if isinstance(image, bytes) else image
    with Image.open(src) as im:
        return im.convert("RGB")
