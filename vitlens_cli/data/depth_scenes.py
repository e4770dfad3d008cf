"""SUN-D and NYU-D: depth-only scene classification on the official ViT-Lens test lists (top-1).

Both read SUN RGB-D (``SUNRGBD.zip`` of rgbd.cs.princeton.edu, or the processed copy of the HF dataset
``leiwx52/ViT-Lens-dev`` that adds ``depth_bfx/<frame>_disparity.pt``): each listed frame lives in
``<sensor>/<collection>/<scene>/`` with ``depth_bfx/<frame>.png`` and ``intrinsics.txt``. The lists, classes and
scoring are the official ones (shipped in ``meta/sunrgbd_depth.json`` and ``meta/nyu_depth.json``):

* **SUN-D**: ``SUN-RGBD_val.json``, 4,659 frames of all four sensors, 19 scene classes.
* **NYU-D**: ``NYU-Depth-v2_val.json`` (the 654 NYUv2 test frames, ``kv1/NYUdata``): 16 scene names are
  prompted; 7 of them (computer room, lobby, office kitchen, playroom, reception room, study, study space)
  count as "others" for the true label and the prediction alike, as the official ``cond_acc`` merges them,
  so 10 classes are scored.

A frame's input is its ``_disparity.pt`` where the copy has one (what the release evaluated on), else its
depth PNG turned into disparity by the depth plug-in with the frame's sensor baseline (Omnivore's table) and the
``fx`` of its ``intrinsics.txt``; the rest is the released depth contract (DepthNorm, resize, crop, normalise).
The protocol line of the result says how many frames came from each.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..errors import VitlensError, os_reason
from ..modalities import ModalityError, ModalityFileError, get_modality
from ..modalities.depth import SENSOR_BASELINES
from .cache import PER_ITEM, CacheIndex, Sample, SkipItem, build_cache
from .inputs import file_problem
from .meta import meta_file

TEMPLATES = "scene_19"
BENCHMARKS = {
    "sunrgbd-depth": ("sunrgbd_depth.json", "SUN-D (ViT-Lens SUN-RGBD_val.json): 4,659 test frames, 19 scene classes"),
    "nyu-depth": ("nyu_depth.json", "NYU-D (ViT-Lens NYU-Depth-v2_val.json): the 654 NYUv2 test frames, 16 scene "
                  "names prompted, 7 of them scored as 'others' (target and prediction), 10 classes"),
}
_COMMON = ("depth only; disparity from the frame's _disparity.pt, else from depth_bfx/<frame>.png (raw/1000 m, "
           "no bit rotation) with the sensor's baseline and the intrinsics fx; DepthNorm [0.01, 75], bicubic "
           "resize 224, centre crop 224, (x - 0.0418) / 0.0295; prompts: the 19 SCENE_CLS templates; top-1")


def find_root(src: Path) -> Path:
    """The SUN RGB-D folder: the one holding the sensor folders (``kv1``, ``kv2``, ``realsense``, ``xtion``)."""
    frontier = [Path(src)]
    for _ in range(4):
        for folder in frontier:
            if any((folder / s).is_dir() for s in SENSOR_BASELINES):
                return folder
        frontier = sorted(p for f in frontier for p in _subfolders(f))
    raise VitlensError(f"{src}: not SUN RGB-D (no folder holding {', '.join(SENSOR_BASELINES)}; expected the "
                       "SUNRGBD/ folder of SUNRGBD.zip)")


def _subfolders(folder: Path) -> list[Path]:
    try:
        return [p for p in folder.iterdir() if p.is_dir() and not p.is_symlink()]
    except OSError:
        return []


def focal_length(scene: Path) -> float:
    """``fx``: the first number of the frame's ``intrinsics.txt`` (a 3 × 3 matrix, row by row)."""
    path = scene / "intrinsics.txt"
    problem = file_problem(path)
    if problem is not None:
        raise SkipItem(f"intrinsics.txt: {problem} (its fx turns the depth PNG into disparity)")
    try:
        fx = float(path.read_text(encoding="utf-8").split()[0])
    except (OSError, UnicodeDecodeError, ValueError, IndexError) as exc:
        reason = os_reason(exc, path) if isinstance(exc, OSError) else "not a 3 x 3 matrix of numbers"
        raise SkipItem(f"intrinsics.txt: {reason}") from None
    if not fx > 0:
        raise SkipItem(f"intrinsics.txt: fx {fx} is not positive")
    return fx


def prepare(name: str, src: Path, dest: Path, *, on_item=None, source_key: str = "") -> CacheIndex:
    meta_name, what = BENCHMARKS[name]
    meta = meta_file(meta_name)
    root = find_root(src)
    items = [(str(scene), str(frame), int(label)) for scene, frame, label in meta["items"]]
    to_class = list(meta.get("prompt_to_class", []))
    depth = get_modality("depth")
    contract = depth.default_contract()
    record = {**depth.contract_to_dict(contract), "baseline": PER_ITEM, "focal_length": PER_ITEM}
    names = [f"{scene}/{frame}" for scene, frame, _ in items]

    def files(i: int) -> tuple[Path, Path]:
        folder = root / items[i][0] / "depth_bfx"
        return folder / f"{items[i][1]}_disparity.pt", folder / f"{items[i][1]}.png"

    # Which input each frame has decides the protocol line, so it is known before the first frame is prepared.
    kinds = ["disparity" if file_problem(d) is None else "png" if file_problem(p) is None else None
             for d, p in map(files, range(len(items)))]
    if not any(kinds):
        raise VitlensError(f"{root}: holds none of the {len(items)} listed frames ({names[0]}, ...)")
    counts = (f"inputs: {kinds.count('disparity')} disparity .pt, {kinds.count('png')} depth PNG, "
              f"{kinds.count(None)} missing")

    def make(i: int) -> Sample:
        scene, frame, label = items[i]
        disparity, png = files(i)
        if kinds[i] is None:
            raise SkipItem(f"not in this copy (neither depth_bfx/{frame}_disparity.pt nor depth_bfx/{frame}.png)")
        if kinds[i] == "disparity":
            path, frame_contract = disparity, contract
        else:
            path = png
            frame_contract = replace(contract, baseline=SENSOR_BASELINES[scene.split("/")[0]],
                                     focal_length=focal_length(root / scene))
        try:
            x = depth.prepare(path, frame_contract).numpy()
        except (ModalityFileError, ModalityError) as exc:
            raise SkipItem(exc.reason) from exc
        return Sample(x, to_class[label] if to_class else label, names[i])

    index = CacheIndex.for_tensors(name, None, list(meta["classes"]), "depth", (1, contract.crop, contract.crop),
                                   record, f"{what}; {_COMMON}; {counts}", source=str(root), source_key=source_key,
                                   prompts=list(meta.get("prompts", [])), prompt_to_class=to_class)
    return build_cache(dest, index, names, make, on_item=on_item)
