"""Raw Objaverse objects through the ``objaverse`` package: LVIS-annotated ``.glb`` files, surface-sampled.

The package downloads into its own cache (``~/.objaverse``); every object is sampled with colour to
10,000 points and stored like OpenShape's processed objects (xyz+rgb, centred, max radius 1, y-up as
glTF is).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import PointFileError, VitlensError
from ..points import normalize, read_points, resample
from .cache import CacheIndex, Sample, SkipItem, build_cache

NUM_POINTS = 10_000
PROTOCOL = ("Objaverse (raw .glb via the objaverse package), LVIS categories {what}: 10,000 surface samples with "
            "colour (grey 0.4 where none), centred, max radius 1, y-up")


def _objaverse():
    try:
        import objaverse
    except ImportError as exc:
        raise VitlensError("preparing raw Objaverse needs the objaverse package: pip install objaverse") from exc
    return objaverse


def select(annotations: dict[str, list[str]], categories: Sequence[str] | None,
           per_category: int | None) -> list[tuple[str, str]]:
    """``(uid, category)`` pairs, categories sorted, uids in annotation order, optionally capped."""
    wanted = sorted(annotations) if not categories else list(categories)
    missing = [c for c in wanted if c not in annotations]
    if missing:
        raise VitlensError(f"not LVIS categories: {', '.join(missing[:5])}")
    return [(uid, cat) for cat in sorted(wanted) for uid in annotations[cat][:per_category]]


def prepare(dest: Path, *, categories: Sequence[str] | None = None, per_category: int | None = None,
            download_processes: int = 1, seed: int = 0, on_item=None) -> CacheIndex:
    api = _objaverse()
    pairs = select(api.load_lvis_annotations(), categories, per_category)
    if not pairs:
        raise VitlensError("no objects selected")
    paths = api.load_objects([uid for uid, _ in pairs], download_processes=download_processes)
    kept = [(uid, cat) for uid, cat in pairs if uid in paths]
    if not kept:
        raise VitlensError("the objaverse package returned none of the selected objects")
    classes = sorted({cat for _, cat in kept})
    lookup = {c: i for i, c in enumerate(classes)}

    def make(i: int) -> Sample:
        uid, cat = kept[i]
        try:
            cloud = read_points(paths[uid], mesh_points=NUM_POINTS, seed=seed)
        except PointFileError as exc:
            raise SkipItem(str(exc)) from exc
        cloud = normalize(resample(cloud, NUM_POINTS, "random", seed))
        rgb = cloud.rgb if cloud.rgb is not None else np.full_like(cloud.xyz, 0.4)
        return Sample(np.concatenate([cloud.xyz, rgb], axis=1), lookup[cat], uid)

    what = "all" if not categories else ", ".join(sorted(categories)[:5]) + ("…" if len(categories) > 5 else "")
    index = CacheIndex("objaverse", None, [c.replace("_", " ") for c in classes], NUM_POINTS, 6, "y",
                       PROTOCOL.format(what=what), source="objaverse package")
    return build_cache(dest, index, [uid for uid, _ in kept], make, on_item=on_item)
