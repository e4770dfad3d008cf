"""A tiny version of every training format, generated here in its documented layout (synthetic data),
trains for a few steps; the image formats run through a nano open_clip CLIP (image tower + TriClip)."""
from __future__ import annotations

import io
import json
import pickle

import numpy as np
import open_clip
import pytest
from PIL import Image

from vitlens_cli.training.loop import train
from vitlens_cli.training.recipe import load_recipe

_NANO = {"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 3, "width": 64, "head_width": 16,
                                         "patch_size": 16},
         "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2}}


def _add_clip(tmp_path_factory, name: str, config: dict) -> str:
    path = tmp_path_factory.mktemp("clip") / f"{name}.json"
    path.write_text(json.dumps(config))
    open_clip.add_model_config(path)
    return name


@pytest.fixture(scope="module")
def nano_clip(tmp_path_factory):
    """The `tiny` spec's ViT and text tower as an open_clip architecture (random init, nothing downloaded)."""
    return _add_clip(tmp_path_factory, "vitlens-nano-test", _NANO)


@pytest.fixture(scope="module")
def nano_omni_clip(tmp_path_factory):
    """The same for the `tiny-omni` towers (2 ViT blocks)."""
    return _add_clip(tmp_path_factory, "vitlens-nano-omni-test",
                     {**_NANO, "vision_cfg": {**_NANO["vision_cfg"], "layers": 2}})


def _png(colour: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 40), (colour, 255 - colour, 90)).save(buf, format="PNG")
    return buf.getvalue()


def _run(tmp_path, overrides):
    recipe = load_recipe(None, ["model.spec=tiny", "model.lens={npoints: 256, num_group: 16, group_size: 8}",
                                "batch_size=2", "max_steps=2", "save_every=2", "log_every=1", "optim.warmup_steps=1",
                                f"output_dir={tmp_path / 'run'}", *overrides])
    result = train(recipe, device="cpu")
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and all(np.isfinite(r["loss"]) for r in rows)
    assert (tmp_path / "run" / "final" / "model.safetensors").is_file()
    return result


def test_ulip_shapenet_triplets_with_images(tmp_path, nano_clip):
    root = tmp_path / "ShapeNet-55"
    (root / "shapenet_pc").mkdir(parents=True)
    (root / "taxonomy.json").write_text(json.dumps([{"synsetId": "02691156", "name": "airplane,plane"},
                                                    {"synsetId": "03001627", "name": "chair"}]))
    names = [f"{syn}-m{i}" for i, syn in enumerate(["02691156", "03001627"] * 2)]
    (root / "train.txt").write_text("".join(f"{n}.npy\n" for n in names))
    rng = np.random.default_rng(0)
    for k, n in enumerate(names):
        np.save(root / "shapenet_pc" / f"{n}.npy", rng.normal(size=(600, 3)).astype(np.float32))
        views = root / "rendered_images" / n
        views.mkdir(parents=True)
        for deg in range(0, 360, 12):
            (views / f"{n}_r_{deg:03d}.png").write_bytes(_png(10 * k + deg % 200))
            (views / f"{n}_r_{deg:03d}_depth0001.png").write_bytes(_png(200 - 10 * k))
    result = _run(tmp_path, ["data.kind=ulip-shapenet", f"data.root={root}", f"model.clip_model={nano_clip}"])
    assert result.features_encoded > 0  # text and images went through the frozen towers


def test_ulip2_objaverse_lmdb(tmp_path, nano_clip):
    lmdb = pytest.importorskip("lmdb")
    rng = np.random.default_rng(1)
    (tmp_path / "ulip_batches" / "bucket_0").mkdir(parents=True)
    env = lmdb.open(str(tmp_path / "ulip_batches" / "bucket_0"), map_size=1 << 24)
    with env.begin(write=True) as txn:
        for i in range(4):
            rec = {"pc": rng.normal(size=(700, 3)).astype(np.float32), "images": [_png(30 * i), _png(30 * i + 5)],
                   "captions": [[f"object {i} view 0"], [f"object {i} view 1"]]}
            txn.put(f"uid{i}".encode(), pickle.dumps(rec, protocol=4))
    env.close()
    _run(tmp_path, ["data.kind=ulip2-objaverse", f"data.root={tmp_path / 'ulip_batches'}",
                    f"model.clip_model={nano_clip}"])


def test_openshape_precomputed_features(tmp_path):
    root = tmp_path / "merged_for_training_final"
    rng = np.random.default_rng(2)
    split = []
    for i in range(4):
        d = root / "Objaverse" / "000-001"
        d.mkdir(parents=True, exist_ok=True)
        f = lambda: rng.normal(size=(1, 32)).astype(np.float32)  # noqa: E731 - features of the tiny model's width
        np.save(d / f"u{i}.npy", {
            "dataset": "Objaverse", "group": "000-001", "id": f"u{i}",
            "xyz": rng.uniform(-1, 1, (900, 3)).astype(np.float32), "rgb": rng.uniform(0, 1, (900, 3)).astype(np.float32),
            "image_feat": rng.normal(size=(12, 32)).astype(np.float32), "thumbnail_feat": f()[0],
            "text": [f"thing {i}"], "text_feat": [{"original": f(), "prompt_avg": f()}],
            "blip_caption": "a thing", "blip_caption_feat": {"original": f(), "prompt_avg": f()},
            "msft_caption": "", "msft_caption_feat": {"original": f(), "prompt_avg": f()},
            "retrieval_text": ["x"], "retrieval_text_feat": [{"original": f(), "prompt_avg": f()}]}, allow_pickle=True)
        split.append({"id": f"u{i}", "dataset": "Objaverse", "group": "000-001",
                      "data_path": f"/mnt/data/objaverse-processed/merged_for_training_final/Objaverse/000-001/u{i}.npy"})
    (tmp_path / "train.json").write_text(json.dumps(split))
    result = _run(tmp_path, ["model.spec=tiny-rgb", "model.lens={npoints: 512, num_group: 16, group_size: 8}",
                             "data.kind=openshape", f"data.root={root}",
                             f"data.options={{split_json: {tmp_path / 'train.json'}}}"])
    assert result.features_encoded == 0  # OpenShape ships its features: no tower runs


def test_captioned_folder(tmp_path):
    rng = np.random.default_rng(3)
    rows = ["path,caption"]
    for i in range(4):
        np.save(tmp_path / f"s{i}.npy", rng.normal(size=(500, 3)).astype(np.float32))
        rows.append(f"s{i}.npy,a shape number {i}|shape {i}")
    (tmp_path / "captions.csv").write_text("\n".join(rows) + "\n")
    _run(tmp_path, ["data.kind=captions", f"data.root={tmp_path / 'captions.csv'}"])


def _omni_run(tmp_path, tiny: str, data: dict, overrides: list[str]):
    """The shipped ``tiny`` recipe on ``data`` (the official layout of its modality) for two steps."""
    from omegaconf import OmegaConf

    from vitlens_cli.training.recipe import shipped_recipe_files

    own = OmegaConf.to_container(OmegaConf.create(shipped_recipe_files()[tiny].read_text()))
    own["data"] = {**data, "workers": 0}
    own["validation"] = {}
    (tmp_path / "own.yaml").write_text(OmegaConf.to_yaml(own))
    recipe = load_recipe(tmp_path / "own.yaml", ["batch_size=2", "max_steps=2", "log_every=1",
                                                 f"output_dir={tmp_path / 'run'}", *overrides])
    result = train(recipe, device="cpu")
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and all(np.isfinite(r["loss"]) for r in rows)
    return recipe, result


def test_imagenet_eeg_release_with_its_images(tmp_path, nano_omni_clip):
    from tests.data.test_imagenet_eeg import write_release
    from vitlens_cli.training.data import make_source

    src = write_release(tmp_path / "eeg", train=(0, 2, 3, 5))
    for name in ("n02106662_1", "n02124075_7", "n02281787_3"):
        (src / "images" / name.split("_")[0]).mkdir(parents=True)
        (src / "images" / name.split("_")[0] / f"{name}.JPEG").write_bytes(_png(int(name[-1]) * 30))
    data = {"kind": "imagenet-eeg", "root": str(src), "options": {"image_dir": "images"}}
    recipe, result = _omni_run(tmp_path, "tiny-eeg-cpu", data, [f"model.clip_model={nano_omni_clip}"])
    source = make_source(recipe.data, recipe.seed, "eeg")
    assert len(source) == 4 and {source[i].image for i in range(4)} <= {
        str(src / "images" / n.split("_")[0] / f"{n}.JPEG") for n in ("n02106662_1", "n02124075_7", "n02281787_3")}
    # 2 steps x 2 items, one epoch: each distinct caption and image went through the frozen towers once
    texts, images = {source[i].text for i in range(4)}, {source[i].image for i in range(4)}
    assert len(images) == 2 and result.features_encoded == len(texts) + len(images)


def _audioset_all_good(root):
    """The AudioSet lists (tests/data/test_omni_triplets.audioset) with all three clips marked good videos,
    and their items."""
    from tests.data.test_omni_triplets import audioset

    root = audioset(root, seconds=(7.0, 3.0, 5.0))
    items = json.loads((root / "audioset_unbalanced_train.json").read_text())
    items[0]["is_good_video"] = True
    (root / "audioset_unbalanced_train.json").write_text(json.dumps(items))
    return root, items + json.loads((root / "audioset_balanced_train.json").read_text())


def _drawn_audio(recipe):
    """The audio source of ``recipe`` and the ``(index, item)`` its 2 steps of 2 drew (3 items: 1 step per
    epoch), each item read at the epoch that drew it."""
    from vitlens_cli.training.data import Schedule, make_source

    source = make_source(recipe.data, recipe.seed, "audio")
    drawn = []
    for step in range(2):
        for epoch, i in Schedule(len(source), 2, 1, 1, recipe.seed).indices(step, 0, 0):
            source.set_epoch(epoch)
            drawn.append((i, source[i]))
    return source, drawn


def test_audioset_lists_with_frames(tmp_path, nano_omni_clip):
    root, items = _audioset_all_good(tmp_path / "as")
    for item in items:
        frame = (root / "frames" / item["video_path"]).with_suffix(".jpg")
        frame.parent.mkdir(parents=True, exist_ok=True)
        frame.write_bytes(_png(len(item["vid"]) * 9))
    data = {"kind": "audioset", "root": str(root), "options": {"frame_dir": "frames"}}
    recipe, result = _omni_run(tmp_path, "tiny-audio-cpu", data, [f"model.clip_model={nano_omni_clip}"])
    # each distinct caption and frame the 2 steps drew went through the frozen towers once
    source, drawn = _drawn_audio(recipe)
    texts, frames = {t.text for _, t in drawn}, {t.image for _, t in drawn}
    assert len(source) == 3 and None not in frames and len(frames) >= 2
    assert result.features_encoded == len(texts) + len(frames)


def _audioset_with_videos(root):
    """The AudioSet lists with all three clips good, each video one lossless colour for 7 s."""
    from tests.data.test_video import write_video

    root, items = _audioset_all_good(root)
    for k, item in enumerate(items):
        write_video(root / item["video_path"], 7, codec="libx264", colours=[(40 + 80 * k, 200 - 60 * k, 90)] * 7,
                    numbered=False)
    return root


def test_audioset_official_layout_with_frames_decoded_from_its_videos(tmp_path, nano_omni_clip):
    """data.options.frames video on the lists and mp4s as released: whatever window a step draws, the
    frames it encodes are its videos', once each."""
    data = {"kind": "audioset", "root": str(_audioset_with_videos(tmp_path / "as")), "options": {"frames": "video"}}
    recipe, result = _omni_run(tmp_path, "tiny-audio-cpu", data, [f"model.clip_model={nano_omni_clip}"])
    source, drawn = _drawn_audio(recipe)
    texts, videos = {t.text for _, t in drawn}, {i for i, _ in drawn}
    assert len(source) == 3 and all(isinstance(source.frame(i, 0.0), bytes) for i in range(3))
    assert result.features_encoded == len(texts) + len(videos)


def test_audioset_decoded_frames_take_the_released_frame_augment_and_mixup(tmp_path, nano_omni_clip):
    """As the published recipe trains: every item mixed with another, both decoded frames augmented and mixed;
    the 4 views (2 items x 2 steps) are encoded as they come, and 1 to 4 distinct mixed captions once each
    (without frames at most 4 encodes in all)."""
    data = {"kind": "audioset", "root": str(_audioset_with_videos(tmp_path / "as")), "options": {"frames": "video"},
            "audio_augment": {"mixup": 1.0, "random_window": True},
            "image_augment": {"video_rand_augment": [2, 9, 0.3], "short_side": [256, 340], "hflip": 0.5}}
    _, result = _omni_run(tmp_path, "tiny-audio-cpu", data, [f"model.clip_model={nano_omni_clip}"])
    assert result.steps == 2 and 4 + 1 <= result.features_encoded <= 4 + 4
