"""Clotho / AudioCaps retrieval from a prepared list: the same ranking and metrics as a captions CSV
(:mod:`.crossmodal`), with the official benchmarks' query set.

The official protocol (``ClothoDataset`` / ``AudioCapsDataset`` and ``metrics/recall.py`` of ViT-Lens):

* text→audio: one query per listed caption (``text_ids`` keeps every caption of the texts JSON, so an identical
  caption of two clips is two queries, each with its own clip); a hit at k when its clip ranks in the top k;
* audio→text: one query per clip over every caption; a hit at k when any of the clip's captions (5 for
  Clotho) ranks in the top k;
* R@k as the fraction of queries with a hit at k, for k = 1, 5, 10;
* each clip's embedding averages ``n_clip`` clips, the number ``DURATION2CLIP`` of ``modal_audio/datasets.py``
  gives for the benchmark and the model's clip duration (Clotho: 6 clips of 5 s, AudioCaps: 3), with the model
  card's audio contract otherwise.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..data.listed import MANIFEST, Listed
from ..errors import VitlensError
from .captions import Captions
from .crossmodal import ITEM_TO_TEXT, PROTOCOL, TEXT_TO_ITEM, RetrievalResult
from .retrieval import DEFAULT_KS, retrieval_metrics

# DURATION2CLIP of the official modal_audio/datasets.py: clips averaged per file, by clip duration (s)
OFFICIAL_CLIPS = {2: {"clotho": 10, "audiocaps": 6}, 5: {"clotho": 6, "audiocaps": 3},
                  8: {"clotho": 6, "audiocaps": 2}, 10: {"clotho": 5, "audiocaps": 2}}

BENCHMARK_PROTOCOL = {
    **PROTOCOL,
    TEXT_TO_ITEM: "one query per listed caption (identical captions of two clips are two queries, as the official "
                  "text_ids) over the clips found; a hit at k when its clip ranks in the top k",
    ITEM_TO_TEXT: "one query per clip found over all their listed captions; a hit at k when any of the clip's "
                  "captions ranks in the top k",
    "official_difference": "audio→text is ranked here by cosine; the official test_audio_single_ret ranks by "
                           "normalised audio · un-normalised text embeddings, so its audio→text numbers can "
                           "differ; text→audio is the same either way",
    "missing": "clips not found at prepare time (present=0 in presence.csv) are left out of both galleries with their captions",
    "audio_clips": "the embeddings of n_clip clips of each file averaged, n_clip as DURATION2CLIP of the official "
                   "datasets.py for the benchmark and the model's clip duration (recorded as audio_contract)",
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
    facts = {k: v for k, v in listed.protocol.items() if k != "audio_clips"}  # prepare's note; eval's rule below
    return {"task": "retrieval", "benchmark": listed.benchmark, "variant": listed.split,
            "protocol": {**facts, **BENCHMARK_PROTOCOL}}


def official_contract(model, benchmark: str):
    """The model card's audio contract with the official eval's number of clips for ``benchmark``."""
    from dataclasses import replace

    from .runner import model_contract

    contract = model_contract(model, "audio")
    clips = OFFICIAL_CLIPS.get(int(contract.clip_duration), {}).get(benchmark)
    return contract if clips is None else replace(contract, n_clips=clips)


class _Clips:
    """``ds[i] -> (decoded audio, i, path)`` for the runner's DataLoader."""

    def __init__(self, paths: list[str]) -> None:
        self.names = list(paths)

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int):
        from ..modalities import get_modality

        return get_modality("audio").read(Path(self.names[i])), i, self.names[i]


def evaluate_caption_benchmark(model, captions: Captions, benchmark: str, *, batch_size: int = 8, seed: int = 0,
                               workers: int = 0, ks=DEFAULT_KS, cache_dir: Path | None = None,
                               precision: str = "fp32", on_file=None) -> tuple[RetrievalResult, dict[str, Any]]:
    """Text→audio and audio→text over a prepared caption benchmark, each clip prepared with
    :func:`official_contract`; the result and the contract used (for metrics.json)."""
    import time
    from dataclasses import asdict

    import torch
    from torch.utils.data import DataLoader

    from ..precision import autocast, low_precision_weights, resolve_precision
    from .crossmodal import check_towers
    from .runner import PreparedDataset, collate_items
    from .zeroshot import cached_caption_embeddings

    check_towers(model, captions)
    start = time.perf_counter()
    device = model.logit_scale.device
    chosen = resolve_precision(precision, device)
    contract = official_contract(model, benchmark)
    text_emb, encoded = cached_caption_embeddings(model, captions.texts, cache_dir)
    data = PreparedDataset(_Clips(captions.items), None, None, seed, None, "audio", contract, False)
    loader = DataLoader(data, batch_size=batch_size, num_workers=workers, collate_fn=collate_items)
    keep: list[int] = []
    rows, failures = [], []
    with low_precision_weights(model.tower("audio"), chosen), torch.inference_mode():
        for x, index, names, bad in loader:
            failures.extend(bad)
            if x is not None:
                with autocast(chosen, device):
                    emb = model.encode("audio", x.to(device))
                rows.append(torch.nn.functional.normalize(emb.float(), dim=-1).cpu())
                keep.extend(index)
            if on_file is not None:
                for name in [*names, *(path for path, _ in bad)]:
                    on_file(name)
    if not keep:
        first = f"; first: {failures[0][0]}: {failures[0][1]}" if failures else ""
        raise VitlensError(f"{captions.csv}: no clip could be evaluated ({len(failures)} skipped{first})")
    relevance = captions.relevance()[:, keep]
    kept_texts = np.flatnonzero(relevance.any(axis=1))
    relevance = relevance[kept_texts]
    scores = (text_emb[torch.as_tensor(kept_texts)].float() @ torch.cat(rows).T).numpy()
    result = RetrievalResult(
        items=[captions.items[i] for i in keep], modalities=["audio"] * len(keep),
        texts=[captions.texts[t] for t in kept_texts], relevance=relevance, scores=scores,
        text_to_item=retrieval_metrics(scores, relevance, ks),
        item_to_text=retrieval_metrics(scores.T, relevance.T, ks),
        captions_encoded=encoded, dropped_captions=len(captions.texts) - len(kept_texts), failures=failures,
        seconds_total=time.perf_counter() - start, precision=chosen.name)
    return result, {"audio_contract": asdict(contract)}


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
