"""Caption cleaning shared by the model's tokenizer and the training datasets (below both layers)."""
from __future__ import annotations

import re


def pre_caption(caption: str, max_words: int = 70) -> str:
    """The one-stop ``TextProcessor`` cleaning: lower-case, ``.!"()*#:;~`` → space, runs → one space, ≤ max_words."""
    caption = re.sub(r"\s{2,}", " ", re.sub(r"([.!\"()*#:;~])", " ", caption.lower()))
    caption = caption.rstrip("\n").strip(" ")
    words = caption.split(" ")
    return " ".join(words[:max_words]) if len(words) > max_words else caption
