"""Cross-modal retrieval over a captions CSV: embed the files and the captions, rank both ways, score.

Files go through the one embedding path (:func:`vitlens_cli.embedding.embed_sources`: the modality plug-ins and
the model card's contracts, as ``vitlens embed`` and ``vitlens index build``); captions through the text tower,
cached on disk.
Unreadable files are skipped and reported; they leave both galleries, and a caption whose files were all
skipped is dropped, so every query keeps at least one relevant entry.
"""
from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data.inputs import file_problem
from ..errors import ConfigError, VitlensError
from .captions import Captions
from .retrieval import DEFAULT_KS, RetrievalMetrics, retrieval_metrics

TEXT_TO_ITEM, ITEM_TO_TEXT = "text_to_item", "item_to_text"

PROTOCOL = {
    "similarity": "cosine of L2-normalised embeddings",
    TEXT_TO_ITEM: "one query per distinct caption over the evaluated files; a hit at k when a file the caption is "
                  "listed with (any of them, if several) ranks in the top k; AP over all of its files",
    ITEM_TO_TEXT: "one query per evaluated file over the distinct captions; a hit at k when any of the file's "
                  "captions ranks in the top k; AP over all of its captions",
    "mAP": "unweighted mean over queries of average precision (mean over relevant entries of the precision at "
           "their rank)",
    "ranks": "1-based; median_rank and mean_rank are of each query's best-ranked relevant entry; R@k is 1 "
             "when k is at least the gallery size",
    "ties": "equal scores rank in CSV order (first appearance); NaN last",
    "skipped": "files that cannot be read leave both galleries; captions whose files were all skipped are dropped",
}


@dataclass
class RetrievalResult:
    """What was evaluated (after skips) and the metrics of both directions."""

    items: list[str]
    modalities: list[str]
    texts: list[str]
    relevance: np.ndarray  # (texts, items) bool
    scores: np.ndarray  # (texts, items) float32 cosine
    text_to_item: RetrievalMetrics
    item_to_text: RetrievalMetrics
    captions_encoded: int
    dropped_captions: int
    failures: list[tuple[str, str]] = field(default_factory=list)
    seconds_total: float = 0.0
    precision: str = "fp32"

    @property
    def items_per_second(self) -> float:
        return len(self.items) / self.seconds_total if self.seconds_total else 0.0


def check_towers(model, captions: Captions) -> None:
    """A model without a tower for one of the CSV's modalities (or without text) is refused before any work."""
    if model.text is None:
        raise ConfigError(model.cfg.card.name, "this model has no text tower for retrieval evaluation")
    for modality, count in Counter(captions.modalities).items():
        if modality not in model.modalities:
            raise ConfigError(captions.csv, f"lists {count} {modality} file(s) but model '{model.cfg.card.name}' "
                                            f"has no {modality} tower (it has: {', '.join(model.modalities)})")


def evaluate_retrieval(model, captions: Captions, *, batch_size: int = 8, seed: int = 0, ks=DEFAULT_KS,
                       cache_dir: Path | None = None, precision: str = "fp32",
                       on_file: Callable[[str], None] | None = None) -> RetrievalResult:
    """Text→file and file→text retrieval over ``captions``; ``on_file(path)`` reports progress.

    ``precision`` is the autocast of the file towers' forward; captions are encoded in float32.
    """
    import torch

    from ..embedding import EmbedOptions, Source, embed_sources
    from ..precision import resolve_precision
    from .zeroshot import cached_caption_embeddings

    check_towers(model, captions)
    start = time.perf_counter()
    # Every caption of the CSV is encoded (not only those whose files read), so the cache key stays the same
    # from one run to the next whatever fails.
    text_emb, encoded = cached_caption_embeddings(model, captions.texts, cache_dir)
    # Only regular files go to the readers: a folder would be expanded into other files, a FIFO would block.
    problems = {path: file_problem(path) for path in captions.items}
    failures = [(path, why) for path, why in problems.items() if why is not None]
    sources = [Source(Path(path), modality) for path, modality in zip(captions.items, captions.modalities)
               if problems[path] is None]
    precision = resolve_precision(precision, model.logit_scale.device).name
    embedded, emb, failed = embed_sources(model, sources, EmbedOptions(batch_size=batch_size, seed=seed,
                                                                       precision=precision), on_item=on_file)
    failures += [(f.path, f.reason) for f in failed]
    by_path: dict[str, list[int]] = {}
    for r, item in enumerate(embedded):
        by_path.setdefault(item.path, []).append(r)
    reported = {path for path, _ in failures}
    keep: list[int] = []
    for i, path in enumerate(captions.items):
        found = by_path.get(path, [])
        if len(found) == 1:
            keep.append(i)
        elif len(found) > 1:  # an .h5 stack: which of its clouds the captions describe is not said
            failures.append((path, f"holds {len(found)} items; a captions row names a file of one item"))
        elif path not in reported:
            failures.append((path, "nothing to embed in the file"))
    order = {path: i for i, path in enumerate(captions.items)}
    failures.sort(key=lambda f: order.get(f[0], len(order)))
    if not keep:
        first = f"; first: {failures[0][0]}: {failures[0][1]}" if failures else ""
        raise VitlensError(f"{captions.csv}: no file could be evaluated ({len(failures)} skipped{first})")
    item_emb = emb[[by_path[captions.items[i]][0] for i in keep]]
    relevance = captions.relevance()[:, keep]
    kept_texts = np.flatnonzero(relevance.any(axis=1))
    relevance = relevance[kept_texts]
    with torch.inference_mode():
        scores = (text_emb[torch.as_tensor(kept_texts)].float() @ torch.from_numpy(item_emb).float().T).numpy()
    return RetrievalResult(
        items=[captions.items[i] for i in keep], modalities=[captions.modalities[i] for i in keep],
        texts=[captions.texts[t] for t in kept_texts], relevance=relevance, scores=scores,
        text_to_item=retrieval_metrics(scores, relevance, ks),
        item_to_text=retrieval_metrics(scores.T, relevance.T, ks),
        captions_encoded=encoded, dropped_captions=len(captions.texts) - len(kept_texts), failures=failures,
        seconds_total=time.perf_counter() - start, precision=precision)
