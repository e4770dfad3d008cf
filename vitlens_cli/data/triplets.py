"""Training triplets (point cloud, text, image) from the published 3D pre-training sets.

Every dataset here is indexable (``len(ds)``, ``ds[i]``) and deterministic: the random choices for
item ``i`` in epoch ``e`` (which synonym, template, view, caption or feature) come from
``np.random.default_rng([seed, e, i])``; call :meth:`set_epoch` between epochs. Points are returned
as stored (float32, not resampled, normalised or augmented); the training recipe does that with
:mod:`vitlens_cli.points` and :func:`vitlens_cli.data.augment.augment_points`.

Pickled data is never trusted: ``.npy`` dicts and LMDB values go through the restricted unpickler of
:mod:`vitlens_cli.data.safe_npy`, which rebuilds only numpy arrays, scalars and plain containers.
"""
from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import PointFileError, VitlensError
from ..points import read_points
from .meta import synsets, templates
from .safe_npy import UnsafePickleError, load_npy, safe_loads


@dataclass
class Triplet:
    """One training sample.

    ``points``: ``(N, 3)`` or ``(N, 6)`` float32 as stored. ``text``: a caption or prompt.
    ``image``: a path to an image file, or the encoded image bytes (PNG/JPEG) for formats that store
    them inline, to be encoded by the CLIP image tower. ``text_feat`` / ``image_feat``: precomputed
    CLIP features (1-D float32) where the format ships them instead of text or images.
    ``key``: a stable name of the shape.
    """

    points: np.ndarray
    text: str | None
    image: str | bytes | None
    text_feat: np.ndarray | None
    image_feat: np.ndarray | None
    key: str


class _Seeded:
    """Shared ``seed`` / ``set_epoch`` / indexing behaviour."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def rng(self, i: int) -> np.random.Generator:
        """The generator for item ``i`` in the current epoch."""
        return np.random.default_rng([self.seed, self.epoch, int(i)])

    def __len__(self) -> int:  # pragma: no cover - overridden
        raise NotImplementedError

    def _index(self, i: int) -> int:
        n = len(self)
        i = int(i)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"index {i} out of range for {type(self).__name__} of {n} items")
        return i

    def __getitem__(self, i: int) -> Triplet:
        i = self._index(i)
        return self._get(i, self.rng(i))

    def _get(self, i: int, rng: np.random.Generator) -> Triplet:  # pragma: no cover - overridden
        raise NotImplementedError


def _pick(rng: np.random.Generator, items):
    return items[int(rng.integers(len(items)))]


def _as_points(path: object, xyz, rgb=None) -> np.ndarray:
    """``(N, 3|6)`` float32 from stored xyz (and optional rgb); a PointFileError if malformed."""
    try:
        arr = np.asarray(xyz, dtype=np.float32)
        if arr.ndim != 2 or arr.shape[1] not in (3, 6):
            raise ValueError(f"points have shape {arr.shape}, expected (N, 3) or (N, 6)")
        if rgb is not None and arr.shape[1] == 3:
            col = np.asarray(rgb, dtype=np.float32)
            if col.shape != arr.shape:
                raise ValueError(f"rgb has shape {col.shape}, expected {arr.shape}")
            arr = np.concatenate([arr, col], axis=1)
    except (TypeError, ValueError) as exc:
        raise PointFileError(path, str(exc)) from exc
    if len(arr) == 0:
        raise PointFileError(path, "holds no points")
    return np.ascontiguousarray(arr)


# ---------------------------------------------------------------------------------------------
# ULIP ShapeNet-55 triplets
# ---------------------------------------------------------------------------------------------

VIEW_DEGREES = tuple(range(0, 360, 12))  # 30 views, 12 degrees apart
IMAGE_TYPES = ("", "_depth0001")         # RGB render, depth render
_IMAGE_DIRS = ("rendered_images", "only_rgb_depth_images")


class ULIPShapeNetTriplets(_Seeded):
    """ULIP's ShapeNet-55 triplets, laid out as ULIP's ``data/ShapeNet-55.yaml`` / ``dataset_3d.py`` read them.

    ::

        <root>/taxonomy.json            list of {"synsetId": "02691156", "name": "airplane,aeroplane,plane", ...}
        <root>/train.txt, test.txt      one "<synset>-<model>.npy" per line
        <root>/shapenet_pc/<synset>-<model>.npy           (8192, 3) float xyz, y-up
        <image_dir>/<synset>-<model>/<synset>-<model>_r_<deg>[_depth0001].png
                                        deg = 000, 012, ..., 348 (30 views); "" = RGB, "_depth0001" = depth

    ``image_dir`` defaults to ``<root>/rendered_images`` (ULIP's IMAGE_PATH), else
    ``<root>/only_rgb_depth_images`` (the smaller release with the same images). Per item: the text
    is one random synonym of the synset's comma-separated taxonomy name (falling back to the
    package's synset table when taxonomy.json is absent) put into a random ULIP template
    (``use_templates=False`` gives the bare synonym, ULIP-1's own default); the image is a random
    view and render type. If that file is missing, a random existing one of the 60 is used, else
    ``image`` is None. ``whole=True`` prepends test.txt to the list as ULIP's pre-training does.
    """

    def __init__(self, root: str | Path, split: str = "train", seed: int = 0, *,
                 image_dir: str | Path | None = None, whole: bool = False,
                 use_templates: bool = True) -> None:
        super().__init__(seed)
        self.root = Path(root)
        listing = self.root / f"{split}.txt"
        if not listing.is_file():
            raise VitlensError(f"{listing}: split list missing (ULIP ShapeNet-55 layout: "
                               f"taxonomy.json, train.txt, test.txt, shapenet_pc/)")
        lines = listing.read_text().splitlines()
        if whole and split != "test":
            test = self.root / "test.txt"
            if not test.is_file():
                raise VitlensError(f"{test}: missing (needed for whole=True)")
            lines = test.read_text().splitlines() + lines
        self.files = [ln.strip() for ln in lines if ln.strip()]
        self.names = self._names()
        for f in self.files:
            if f.split("-", 1)[0] not in self.names:
                raise VitlensError(f"{listing}: '{f}' names synset {f.split('-', 1)[0]}, "
                                   "which is in neither taxonomy.json nor the ShapeNet-55 table")
        if image_dir is None:
            image_dir = next((self.root / d for d in _IMAGE_DIRS if (self.root / d).is_dir()),
                             self.root / _IMAGE_DIRS[0])
        self.image_dir = Path(image_dir)
        self.templates = templates("ulip_64") if use_templates else ["{}"]

    def _names(self) -> dict[str, list[str]]:
        table = {k: [v] for k, v in synsets("shapenet55").items()}
        taxonomy = self.root / "taxonomy.json"
        if taxonomy.is_file():
            try:
                entries = json.loads(taxonomy.read_text())
                for entry in entries:
                    names = [n.strip() for n in str(entry["name"]).split(",") if n.strip()]
                    if names:
                        table[str(entry["synsetId"])] = names
            except (ValueError, TypeError, KeyError) as exc:
                raise VitlensError(f"{taxonomy}: not a ShapeNet taxonomy list ({exc})") from exc
        return table

    def __len__(self) -> int:
        return len(self.files)

    def _get(self, i: int, rng: np.random.Generator) -> Triplet:
        name = self.files[i]
        stem = name[:-4] if name.endswith(".npy") else name
        synset = stem.split("-", 1)[0]
        path = self.root / "shapenet_pc" / name
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise PointFileError(path, f"not a readable point array ({exc})") from exc
        points = _as_points(path, arr)
        text = _pick(rng, self.templates).format(_pick(rng, self.names[synset]))
        views = [f"{stem}_r_{deg:03d}{kind}.png" for deg in VIEW_DEGREES for kind in IMAGE_TYPES]
        folder = self.image_dir / stem
        image: str | None = str(folder / _pick(rng, views))
        if not os.path.isfile(image):
            present = [v for v in views if (folder / v).is_file()] if folder.is_dir() else []
            image = str(folder / _pick(rng, present)) if present else None
        return Triplet(points, text, image, None, None, stem)


# ---------------------------------------------------------------------------------------------
# ULIP-2 Objaverse LMDB triplets
# ---------------------------------------------------------------------------------------------

_PC_KEYS = ("pc", "point_cloud", "points", "xyz")
_IMAGE_KEYS = ("images", "image", "imgs", "img")
_CAPTION_KEYS = ("captions", "caption", "texts", "text")


def _first(d: dict, keys: tuple[str, ...]):
    for k in keys:
        if k in d:
            return d[k]
    return None


def _image_bytes(img) -> bytes:
    if isinstance(img, (bytes, bytearray)):
        return bytes(img)
    arr = np.asarray(img)
    if arr.dtype == np.uint8 and arr.ndim in (2, 3):
        from PIL import Image  # only for raw pixel arrays; PIL ships with torchvision
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="PNG")
        return buf.getvalue()
    raise TypeError(f"image of type {type(img).__name__} is neither encoded bytes nor uint8 pixels")


_LMDB_ENVS: dict[tuple[int, str], object] = {}


def _lmdb_env(path: Path):
    """A read-only environment, opened once per process (py-lmdb refuses a second open of one path;
    forked DataLoader workers get their own handles)."""
    import lmdb
    key = (os.getpid(), str(Path(path).resolve()))
    env = _LMDB_ENVS.get(key)
    if env is None:
        try:
            env = lmdb.open(key[1], readonly=True, lock=False, readahead=False, meminit=False,
                            subdir=True, max_readers=256)
        except lmdb.Error as exc:
            raise VitlensError(f"{path}: not a readable LMDB environment ({exc})") from exc
        _LMDB_ENVS[key] = env
    return env


class ULIP2ObjaverseTriplets(_Seeded):
    """ULIP-2 Objaverse triplets stored in LMDB (ViT-Lens's ``Objverse.yaml`` DATA_PATH ``ulip_batches``).

    The official reader of this LMDB is not in the public ULIP or ViT-Lens sources (ViT-Lens imports
    ``lmdb`` and points ``Objverse.yaml`` at ``/path/to/ulip_batches`` but ships no loader), so the
    record layout below is this project's reading of the released data, made tolerant:

    * ``root`` is one LMDB environment (a folder with ``data.mdb``) or a folder holding several
      (any depth, sorted by path) — the "batches"/buckets;
    * every key not starting with ``__`` (``__len__``, ``__keys__`` are bookkeeping) is one shape;
    * each value is a pickled dict: points under ``pc`` / ``point_cloud`` / ``points`` / ``xyz``
      (``(N, 3)`` or ``(N, 6)``, with an optional separate ``rgb``); encoded image bytes (or uint8
      pixel arrays, re-encoded as PNG) under ``images`` / ``image``; captions under ``captions`` /
      ``caption`` / ``texts`` / ``text`` as a string, a list of strings, or a list of lists with one
      list per image (ULIP-2 captions each rendered view).

    Per item: a random image, then a random caption of that view when captions are per view (else a
    random caption of the shape), as ViT-Lens pairs them. Values are unpickled with an allowlist
    (numpy arrays and plain containers only); anything else is refused with a VitlensError.
    """

    def __init__(self, root: str | Path, seed: int = 0) -> None:
        super().__init__(seed)
        try:
            import lmdb  # noqa: F401
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise VitlensError("reading ULIP-2 LMDB triplets needs the 'lmdb' package "
                               "(pip install lmdb)") from exc
        self.root = Path(root)
        if not self.root.is_dir():
            raise VitlensError(f"{self.root}: no such folder (ULIP-2 Objaverse LMDB buckets)")
        if (self.root / "data.mdb").is_file():
            self.envs = [self.root]
        else:
            self.envs = sorted({p.parent for p in self.root.rglob("data.mdb")})
        if not self.envs:
            raise VitlensError(f"{self.root}: no LMDB environment (data.mdb) found")
        self.items: list[tuple[int, bytes]] = []
        for e, path in enumerate(self.envs):
            with _lmdb_env(path).begin(write=False) as txn:
                self.items.extend((e, bytes(k)) for k in txn.cursor().iternext(keys=True, values=False)
                                  if not bytes(k).startswith(b"__"))

    def __len__(self) -> int:
        return len(self.items)

    def _get(self, i: int, rng: np.random.Generator) -> Triplet:
        e, key = self.items[i]
        where = f"{self.envs[e]}[{key.decode('utf-8', 'replace')}]"
        with _lmdb_env(self.envs[e]).begin(write=False) as txn:
            raw = txn.get(key)
        if raw is None:
            raise VitlensError(f"{where}: key vanished from the LMDB")
        try:
            record = safe_loads(bytes(raw))
        except UnsafePickleError as exc:
            raise VitlensError(f"{where}: {exc}; only arrays and plain containers are loaded") from exc
        except Exception as exc:  # malformed pickles raise many types
            raise VitlensError(f"{where}: not a readable pickled record ({exc})") from exc
        if not isinstance(record, dict):
            raise VitlensError(f"{where}: record is a {type(record).__name__}, expected a dict")
        pc = _first(record, _PC_KEYS)
        if pc is None:
            raise PointFileError(where, f"no point cloud (keys: {sorted(map(str, record))})")
        points = _as_points(where, pc, record.get("rgb"))

        images = _first(record, _IMAGE_KEYS)
        if images is None:
            images = []
        elif isinstance(images, (bytes, bytearray)) or (
                isinstance(images, np.ndarray) and images.dtype == np.uint8 and images.ndim in (2, 3)):
            images = [images]  # one image, not a list of views
        captions = _first(record, _CAPTION_KEYS)
        if captions is None:
            captions = []
        elif isinstance(captions, str):
            captions = [captions]
        captions = list(captions)

        image: bytes | None = None
        view = None
        if len(images):
            view = int(rng.integers(len(images)))
            try:
                image = _image_bytes(images[view])
            except TypeError as exc:
                raise VitlensError(f"{where}: {exc}") from exc
        per_view = bool(captions) and all(isinstance(c, (list, tuple)) for c in captions)
        if per_view:
            pool = list(captions[view]) if view is not None and len(captions) == len(images) \
                else [c for group in captions for c in group]
        else:
            pool = captions
        pool = [str(c) for c in pool if str(c).strip()]
        text = _pick(rng, pool) if pool else None
        return Triplet(points, text, image, None, None, key.decode("utf-8", "replace"))


# ---------------------------------------------------------------------------------------------
# OpenShape processed shapes
# ---------------------------------------------------------------------------------------------

TEXT_SOURCES = ("text", "caption", "retrieval_text")


def _feat(value, where: str) -> np.ndarray:
    try:
        return np.asarray(value, dtype=np.float32).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise VitlensError(f"{where}: feature is not numeric ({exc})") from exc


class OpenShapeTriplets(_Seeded):
    """OpenShape's training shapes: one pickled-dict ``.npy`` per shape, listed by a split json.

    ``split_json`` (e.g. ``meta_data/split/train_all.json``) is a list of
    ``{"id", "dataset", "group", "data_path"}``; ``data_path`` is absolute on the authors' machine
    (``/mnt/data/objaverse-processed/merged_for_training_final/<dataset>/<group>/<id>.npy``), so only
    its tail ``<dataset>/<group>/<id>.npy`` is kept and joined to ``root`` (built from the entry's
    fields when ``data_path`` is absent). Each file holds ``xyz`` (N, 3), ``rgb`` (N, 3) in [0, 1],
    ``image_feat`` (12, D), ``thumbnail_feat``, ``text`` / ``text_feat`` (list of
    {"original", "prompt_avg"}), ``blip_caption[_feat]``, ``msft_caption[_feat]``,
    ``retrieval_text[_feat]`` [Colin97/OpenShape_code README and src/data.py].

    Choices follow OpenShape's ``Four`` dataset: candidates are one name text (Objaverse: the first,
    dropped when ``gpt4_filtering`` flags the uid "N"; others: a random one), one caption (BLIP or
    MSFT with even odds, if non-empty) and one random retrieval text (always its "original"
    feature); one candidate is then taken uniformly. ``prompt_avg`` features are used for names and
    captions when ``use_prompt_engineering`` (OpenShape's default). The image feature is, for
    Objaverse, the thumbnail with probability 0.5, else a random view; for other sets a random view.
    Points are xyz+rgb (6 channels) as stored (y-up).
    """

    def __init__(self, root: str | Path, split_json: str | Path, seed: int = 0, *,
                 text_source: tuple[str, ...] = TEXT_SOURCES, use_prompt_engineering: bool = True,
                 gpt4_filtering: str | Path | None = None) -> None:
        super().__init__(seed)
        self.root = Path(root)
        split_json = Path(split_json)
        try:
            entries = json.loads(split_json.read_text())
        except (OSError, ValueError) as exc:
            raise VitlensError(f"{split_json}: not a readable split json ({exc})") from exc
        if not isinstance(entries, list):
            raise VitlensError(f"{split_json}: expected a list of {{id, dataset, group, data_path}}")
        unknown = set(text_source) - set(TEXT_SOURCES)
        if unknown:
            raise VitlensError(f"unknown OpenShape text source(s) {sorted(unknown)}; choose from {TEXT_SOURCES}")
        self.text_source = tuple(text_source)
        self.version = "prompt_avg" if use_prompt_engineering else "original"
        self.entries: list[dict] = []
        for n, entry in enumerate(entries):
            try:
                uid, dataset, group = str(entry["id"]), str(entry["dataset"]), str(entry["group"])
            except (KeyError, TypeError) as exc:
                raise VitlensError(f"{split_json}: entry {n} lacks id/dataset/group ({exc})") from exc
            tail = Path(dataset, group, f"{uid}.npy")
            if entry.get("data_path"):
                parts = Path(str(entry["data_path"]).replace("\\", "/")).parts
                tail = Path(*parts[-3:]) if len(parts) >= 3 else Path(*parts)
            self.entries.append({"id": uid, "dataset": dataset, "group": group, "path": self.root / tail})
        self.filtering: dict = {}
        if gpt4_filtering is not None:
            try:
                self.filtering = json.loads(Path(gpt4_filtering).read_text())
            except (OSError, ValueError) as exc:
                raise VitlensError(f"{gpt4_filtering}: not a readable filtering json ({exc})") from exc

    def __len__(self) -> int:
        return len(self.entries)

    def _get(self, i: int, rng: np.random.Generator) -> Triplet:
        meta = self.entries[i]
        path = meta["path"]
        if not path.is_file():
            raise PointFileError(path, "no such file")
        data = load_npy(path)
        if not isinstance(data, dict) or "xyz" not in data:
            raise PointFileError(path, "not an OpenShape shape dict (no 'xyz')")
        points = _as_points(path, data["xyz"], data.get("rgb"))
        where = str(path)
        objaverse = meta["dataset"] == "Objaverse"
        try:
            texts: list[str] = []
            feats: list[np.ndarray] = []
            if "text" in self.text_source and len(data.get("text", [])) > 0:
                keep = not (objaverse and str(self.filtering.get(meta["id"], {}).get("flag", "")) == "N")
                if keep:
                    j = 0 if objaverse else int(rng.integers(len(data["text"])))
                    texts.append(str(data["text"][j]))
                    feats.append(_feat(data["text_feat"][j][self.version], where))
            if "caption" in self.text_source:
                which = "blip" if rng.random() < 0.5 else "msft"
                caption = data.get(f"{which}_caption", "")
                if caption is not None and len(caption) > 0:
                    texts.append(str(caption))
                    feats.append(_feat(data[f"{which}_caption_feat"][self.version], where))
            if "retrieval_text" in self.text_source and len(data.get("retrieval_text", [])) > 0:
                j = int(rng.integers(len(data["retrieval_text"])))
                texts.append(str(data["retrieval_text"][j]))
                feats.append(_feat(data["retrieval_text_feat"][j]["original"], where))
            text, text_feat = None, None
            if feats:
                j = int(rng.integers(len(feats)))
                text, text_feat = texts[j], feats[j]
            views = np.asarray(data["image_feat"])
            if objaverse and "thumbnail_feat" in data and rng.random() < 0.5:
                image_feat = _feat(data["thumbnail_feat"], where)
            else:
                image_feat = _feat(views[int(rng.integers(views.shape[0]))], where)
        except (KeyError, IndexError, TypeError) as exc:
            raise VitlensError(f"{path}: OpenShape record is missing a field ({exc!r})") from exc
        key = f"{meta['dataset']}/{meta['group']}/{meta['id']}"
        return Triplet(points, text, None, text_feat, image_feat, key)


# ---------------------------------------------------------------------------------------------
# Your own captioned shapes
# ---------------------------------------------------------------------------------------------

class CaptionedShapes(_Seeded):
    """Shapes with captions listed in a CSV: ``path,caption[,image]``.

    A header row (first cell ``path``) is optional. Relative paths (shape and image) are resolved
    against the CSV's folder. Several captions of one shape may be given as separate rows or joined
    with ``|`` in one cell; images likewise. Shapes keep the order of their first row. Per item a
    random caption and a random image (or None) are drawn; points are read with
    :func:`vitlens_cli.points.read_points` (xyz, plus rgb when the file has colour).
    """

    def __init__(self, csv_path: str | Path, seed: int = 0) -> None:
        super().__init__(seed)
        self.csv_path = Path(csv_path)
        base = self.csv_path.parent
        try:
            with open(self.csv_path, newline="", encoding="utf-8") as fh:
                rows = [r for r in csv.reader(fh) if r and any(c.strip() for c in r)]
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise VitlensError(f"{self.csv_path}: not a readable CSV ({exc})") from exc
        if rows and rows[0][0].strip().lower() == "path":
            rows = rows[1:]
        shapes: dict[str, dict[str, list[str]]] = {}
        for n, row in enumerate(rows, start=1):
            if len(row) < 2 or not row[0].strip():
                raise VitlensError(f"{self.csv_path}: row {n} needs at least 'path,caption'")
            path = row[0].strip()
            entry = shapes.setdefault(path, {"captions": [], "images": []})
            entry["captions"] += [c.strip() for c in row[1].split("|") if c.strip()]
            if len(row) > 2:
                entry["images"] += [str(base / p.strip()) for p in row[2].split("|") if p.strip()]
        self.items = []
        for path, entry in shapes.items():
            if not entry["captions"]:
                raise VitlensError(f"{self.csv_path}: '{path}' has no caption")
            self.items.append((path, base / path, entry["captions"], entry["images"]))

    def __len__(self) -> int:
        return len(self.items)

    def _get(self, i: int, rng: np.random.Generator) -> Triplet:
        key, path, captions, images = self.items[i]
        cloud = read_points(path)
        points = cloud.features(6 if cloud.has_rgb else 3).astype(np.float32, copy=False)
        text = _pick(rng, captions)
        image = _pick(rng, images) if images else None
        return Triplet(np.ascontiguousarray(points), text, image, None, None, key)


__all__ = ["CaptionedShapes", "OpenShapeTriplets", "Triplet", "ULIP2ObjaverseTriplets",
           "ULIPShapeNetTriplets", "safe_loads"]
