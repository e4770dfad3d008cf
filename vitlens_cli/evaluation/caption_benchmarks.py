"""Clotho / AudioCaps retrieval from a prepared list: the same ranking and metrics as a captions CSV
(:mod:`.crossmodal`), with the official benchmarks' query set.

The official protocol (``ClothoDataset`` / ``AudioCapsDataset`` and ``metrics/recall.py`` of ViT-Lens):

* text→audio: one query per listed caption (``text_ids`` keeps every caption of the texts JSON, so an identical
  caption of two clips is two queries, each with its own clip); a hit at k when its clip ranks in the top k;
* audio→text: one query per clip over every caption; a hit at k when any of the clip's captions (5 for
  Clotho) ranks in the top k;
* R@k as the fraction of queries with a hit at k, for k = 1, 5, 10.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..data.listed import MANIFEST, Listed
from ..errors import VitlensError
from .captions import Captions
from .crossmodal import ITEM_TO_TEXT, PROTOCOL, TEXT_TO_ITEM

BENCHMARK_PROTOCOL = {
    **PROTOCOL,
    TEXT_TO_ITEM: "one query per listed caption (identical captions of two clips are two queries, as the official "
                  "text_ids) over the clips found; a hit at k when its clip ranks in the top k",
    ITEM_TO_TEXT: "one query per clip found over all their listed captions; a hit at k when any of the clip's "
                  "captions ranks in the top k",
    "official_difference": "audio→text is ranked here by cosine; the official test_audio_single_ret ranks by "
                           "normalised audio · un-normalised text embeddings, so its audio→text numbers can "
                           "differ; text→audio is the same either way",
    "missing": "clips not found at prepare time (missing.csv) are left out of both galleries with their captions",
}


def captions_of(listed: Listed, where: Path) -> Captions:
    """The prepared clips that were found and have captions, one caption text per listed caption; ``where``
    (the prepared folder) names the benchmark in errors."""
    if listed.task != "retrieval":
        raise VitlensError(f"{listed.benchmark} is a {listed.task} benchmark, not retrieval")
    items: list[str] = []
    texts: list[str] = []
    pairs: list[tuple[int, int]] = []
    for item in listed.present:
        if not item.captions:
            continue
        for caption in item.captions:
            pairs.append((len(texts), len(items)))
            texts.append(caption)
        items.append(item.path)
    if not items:
        raise VitlensError(f"{listed.benchmark}: no clip with captions was found when it was prepared")
    return Captions(Path(where) / MANIFEST, items, ["audio"] * len(items), texts,
                    np.array(pairs, dtype=np.int64))


def retrieval_meta(listed: Listed) -> dict[str, Any]:
    """The protocol record for metrics.json: the benchmark's own facts and the ranking rules."""
    return {"task": "retrieval", "benchmark": listed.benchmark, "variant": listed.split,
            "protocol": {**listed.protocol, **BENCHMARK_PROTOCOL}}


def open_caption_benchmark(name: str, data_root: Path | None = None,
                           variant: str | None = None) -> tuple[Captions, dict[str, Any]]:
    """A prepared Clotho / AudioCaps split as captions to rank, and the metrics.json fields that describe it."""
    from ..data.benchmarks import default_data_root
    from ..data.lists import get_listed, open_prepared

    bench = get_listed(name)
    root = Path(data_root or default_data_root())
    listed = open_prepared(name, root, variant)
    where = bench.dest(root, listed.split)
    return captions_of(listed, where), {**retrieval_meta(listed), "prepared": str(where),
                                        "missing_at_prepare": len(listed.missing)}
