"""The official SUN RGB-D and Touch-and-Go annotation JSONs, on small archives laid out like the real ones."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from vitlens_cli.data.omni_triplets import SCENE_CLS_TEMPLATES, AudioSetTriplets, SUNRGBDTriplets, TouchAndGoTriplets
from vitlens_cli.errors import VitlensError

from ..training.test_formats import nano_omni_clip  # noqa: F401 - the nano CLIP fixture

_SUN_ITEM = "kv2/kinect2data/000065_rgbf000121-resize"


def _sunrgbd(root):
    items = []
    for k, label in enumerate(["dining room", "bedroom"]):
        folder = root / f"{_SUN_ITEM}{k}"
        (folder / "depth_bfx").mkdir(parents=True)
        (folder / "image").mkdir()
        torch.save(torch.full((1, 53, 70), 10.0 + k), folder / "depth_bfx" / "0000121_disparity.pt")
        Image.new("RGB", (70, 53), (k * 100, 0, 0)).save(folder / "image" / "0000121.jpg")
        items.append({"image_path": f"{_SUN_ITEM}{k}/image/0000121.jpg",
                      "depth_path": f"{_SUN_ITEM}{k}/depth_bfx/0000121.png",
                      "disparity_path": f"{_SUN_ITEM}{k}/depth_bfx/0000121_disparity.pt",
                      "label": label.replace(" ", "_"), "cleaned_label": label})
    (root / "SUN-RGBD_train.json").write_text(json.dumps(items))
    return root


def test_sunrgbd_items_as_the_official_dataset_reads_them(tmp_path):
    ds = SUNRGBDTriplets(_sunrgbd(tmp_path), "SUN-RGBD_train.json", seed=0)
    assert len(ds) == 2
    item = ds[1]
    assert item.signal.kind == "disparity" and np.array_equal(item.signal.values, np.full((53, 70), 11.0))
    assert item.image == str(tmp_path / f"{_SUN_ITEM}1" / "image" / "0000121.jpg")
    # a scene template of the cleaned label, cleaned as BlipCaptionProcessor does (lower case, no '.')
    cleaned = {t.format("bedroom").lower().replace(".", "").strip() for t in SCENE_CLS_TEMPLATES}
    assert item.text in cleaned and not item.text.endswith(".")
    epochs = set()
    for epoch in range(12):
        ds.set_epoch(epoch)
        epochs.add(ds[1].text)
    assert len(epochs) > 1  # a template drawn per epoch
    ds.set_epoch(0)
    assert ds[1].text == item.text


def test_touch_and_go_captions_follow_the_material_name(tmp_path):
    for k in range(2):
        (tmp_path / "20220601_182052" / "gelsight_frame").mkdir(parents=True, exist_ok=True)
        (tmp_path / "20220601_182052" / "video_frame").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (320, 240), (0, 50 * k, 0)).save(tmp_path / f"20220601_182052/gelsight_frame/{k}.jpg")
        Image.new("RGB", (320, 240)).save(tmp_path / f"20220601_182052/video_frame/{k}.jpg")
    items = [{"gel_path": f"20220601_182052/gelsight_frame/{k}.jpg",
              "image_path": f"20220601_182052/video_frame/{k}.jpg",
              "material_label": [3, None][k], "material_name": ["wood", None][k], "sr_label": None, "sr_name": None,
              "hs_label": 0, "hs_name": "hard"} for k in range(2)]
    (tmp_path / "pretrain.json").write_text(json.dumps(items))
    ds = TouchAndGoTriplets(tmp_path, str(tmp_path / "pretrain.json"))
    assert [ds[k].text for k in range(2)] == ["an image of wood", "an image showing a material"]
    assert ds[0].signal.shape == (240, 320, 3) and ds[0].signal[0, 0, 1] == 0 and ds[1].signal[0, 0, 1] == 50


def test_a_malformed_annotation_names_the_file_and_item(tmp_path):
    (tmp_path / "pretrain.json").write_text(json.dumps([{"gel_path": "a.jpg", "image_path": "b.jpg"}]))
    with pytest.raises(VitlensError, match=r"pretrain\.json: item 0 has no material_name"):
        TouchAndGoTriplets(tmp_path, "pretrain.json")
    with pytest.raises(VitlensError, match=r"SUN-RGBD_train\.json: no such annotation file"):
        SUNRGBDTriplets(tmp_path, "SUN-RGBD_train.json")


def test_the_depth_recipe_trains_on_the_official_layout(tmp_path):
    from omegaconf import OmegaConf

    from vitlens_cli.training.loop import train
    from vitlens_cli.training.recipe import load_recipe, shipped_recipe_files

    root = _sunrgbd(tmp_path / "sun")
    own = OmegaConf.to_container(OmegaConf.create(shipped_recipe_files()["tiny-depth-cpu"].read_text()))
    own["data"] = {"kind": "sunrgbd", "root": str(root), "workers": 0}
    own["validation"] = {}
    (tmp_path / "own.yaml").write_text(OmegaConf.to_yaml(own))
    recipe = load_recipe(tmp_path / "own.yaml", ["batch_size=2", "max_steps=1", f"output_dir={tmp_path / 'run'}"])
    assert recipe.data.options.annotation == "SUN-RGBD_train.json"
    result = train(recipe, device="cpu")
    assert result.steps == 1 and result.features_encoded == 2  # two captions, one per scene


# SOUND_AS_IMAGE_TEMPLATE (modal_audio/data/sound_cls_template.py), as the official lambdas write them
_SOUND_AS_IMAGE = ["{}.", "An image depicting {}.", "An image showing {}.", "This is {}.", "A photograph shows {}.",
                   "An image of {}.", "A good image of {}.", "A photo of {}.", "A picture of {}.",
                   "A bright image of {}."]


def audioset(root, seconds=(7.0, 3.0, 5.0)):
    """Two official training lists (balanced, unbalanced) of FLAC clips, with their videos' names."""
    import soundfile

    lists = {"audioset_balanced_train.json": [], "audioset_unbalanced_train.json": []}
    for k, (name, duration) in enumerate(zip(["--aE2O5G5WE_0", "-0DLPzsiXXE_30", "0ZdWMj1KmLU_10"], seconds)):
        split = "balanced_train" if k == 0 else "unbalanced_train"
        (root / "audio" / split).mkdir(parents=True, exist_ok=True)
        t = np.arange(int(duration * 16000)) / 16000
        soundfile.write(str(root / "audio" / split / f"{name}.flac"), 0.3 * np.sin(2 * np.pi * 440 * (k + 1) * t),
                        16000)
        captions = [["Speech, Music", "A man talks over music."], ["Dog"], ["Rain", "rain falls on a roof"]][k]
        lists[f"audioset_{split}.json"].append({
            "vid": name, "class_name": captions[0].split(", "), "class_labels": [[0, 137], [74], [289]][k],
            "captions": captions, "audio_path": f"audio/{split}/{name}.flac",
            "video_path": f"video/{split}/{name}.mp4", "is_good_video": k != 1})
    for name, items in lists.items():
        (root / name).write_text(json.dumps(items))
    return root


def test_audioset_lists_concatenate_and_caption_as_the_official_dataset(tmp_path):
    root = audioset(tmp_path)
    ds = AudioSetTriplets(root, ["audioset_balanced_train.json", "audioset_unbalanced_train.json"])
    assert len(ds) == 3 and [ds[k].key for k in range(3)] == [
        "audio/balanced_train/--aE2O5G5WE_0.flac", "audio/unbalanced_train/-0DLPzsiXXE_30.flac",
        "audio/unbalanced_train/0ZdWMj1KmLU_10.flac"]
    assert ds[0].signal.sample_rate == 16000 and ds[0].signal.samples.shape == (1, 7 * 16000)
    assert ds[0].image is None  # no frames asked for

    def cleaned(text):
        return text.lower().replace(".", "").strip()

    first, second = set(), set()
    for epoch in range(40):
        ds.set_epoch(epoch)
        first.add(ds[0].text)
        second.add(ds[1].text)
    templated = {cleaned(t.format("Speech, Music")) for t in _SOUND_AS_IMAGE}
    assert "a man talks over music" in first and first - {"a man talks over music"} <= templated
    assert len(first) > 2  # the extra caption and several templates
    assert second <= {cleaned(t.format("Dog")) for t in _SOUND_AS_IMAGE}  # no extra caption: always a template


def test_audioset_frames_keep_good_videos_only(tmp_path):
    root = audioset(tmp_path)
    ds = AudioSetTriplets(root, ["audioset_balanced_train.json", "audioset_unbalanced_train.json"],
                          frame_dir="frames")
    assert len(ds) == 2  # -0DLPzsiXXE_30 is not a good video
    assert ds[1].image == str(root / "frames" / "video" / "unbalanced_train" / "0ZdWMj1KmLU_10.jpg")


def test_audioset_items_without_captions_are_named(tmp_path):
    root = audioset(tmp_path)
    items = json.loads((root / "audioset_unbalanced_train.json").read_text())
    items[1]["captions"] = []
    (root / "audioset_unbalanced_train.json").write_text(json.dumps(items))
    with pytest.raises(VitlensError, match=r"audioset_unbalanced_train\.json: item 1 'captions' must be a non-empty"):
        AudioSetTriplets(root, ["audioset_balanced_train.json", "audioset_unbalanced_train.json"])


def test_a_good_video_without_video_path_names_its_list_and_item_when_frames_are_paired(tmp_path):
    root = audioset(tmp_path)
    items = json.loads((root / "audioset_unbalanced_train.json").read_text())
    del items[0]["video_path"]  # -0DLPzsiXXE_30: not a good video, never paired
    del items[1]["video_path"]
    (root / "audioset_unbalanced_train.json").write_text(json.dumps(items))
    lists = ["audioset_balanced_train.json", "audioset_unbalanced_train.json"]
    assert len(AudioSetTriplets(root, lists)) == 3  # without frames the path is not needed
    with pytest.raises(VitlensError, match=r"audioset_unbalanced_train\.json: item 1 has is_good_video true but no "
                                           r"video_path"):
        AudioSetTriplets(root, lists, frame_dir="frames")


def test_audioset_frames_at_a_rate_follow_the_window_start(tmp_path):
    root = audioset(tmp_path)
    ds = AudioSetTriplets(root, ["audioset_balanced_train.json", "audioset_unbalanced_train.json"],
                          frame_dir="frames", frame_rate=2.0)
    folder = root / "frames" / "video" / "balanced_train" / "--aE2O5G5WE_0"
    folder.mkdir(parents=True)
    for n in range(1, 14):  # 6.5 s of frames at 2 per second for a 7-s clip
        (folder / f"{n:06d}.jpg").write_bytes(b"")
    assert ds.frame(0, 0.0) == str(folder / "000001.jpg")
    assert ds[0].image is None  # the frame follows the window: asked for by frame(i, start), not read twice
    assert ds.frame(0, 2.74) == str(folder / "000006.jpg")  # int(2.74 * 2) = 5: the sixth frame
    assert ds.frame(0, 6.9) == str(folder / "000013.jpg")  # past the last extracted frame: the last
    with pytest.raises(VitlensError, match=r"0ZdWMj1KmLU_10: no extracted frames"):
        ds.frame(1, 1.0)


def _audioset_videos(root):
    """The clips' videos where their lists say (video_path), each as long as its audio."""
    from .test_video import write_video

    for name in ("audioset_balanced_train.json", "audioset_unbalanced_train.json"):
        for item in json.loads((root / name).read_text()):
            write_video(root / item["video_path"], {"--aE2O5G5WE_0": 7, "-0DLPzsiXXE_30": 3}.get(item["vid"], 5))
    return root


def test_audioset_frames_decoded_from_the_videos_follow_the_window_start(tmp_path):
    from vitlens_cli.training.features import image_key, load_image

    from .test_video import number_of, second_of

    root = _audioset_videos(audioset(tmp_path))
    lists = ["audioset_balanced_train.json", "audioset_unbalanced_train.json"]
    ds = AudioSetTriplets(root, lists, frames="video")
    assert len(ds) == 2  # -0DLPzsiXXE_30 is not a good video
    frames = {start: ds.frame(0, start) for start in (0.0, 2.6, 6.9, 8.0)}
    assert all(isinstance(f, bytes) for f in frames.values()) and ds[0].image is None
    pixels = {start: np.asarray(load_image(f)) for start, f in frames.items()}
    assert {start: second_of(rgb) for start, rgb in pixels.items()} == {0.0: 0, 2.6: 2, 6.9: 6, 8.0: 6}
    # 4 fps: frame int(2.6 · 4) = 10; 8 s is past the 28 frames of the 7-s video: the last (27, numbered 27 % 12)
    assert number_of(pixels[2.6]) == 10 and number_of(pixels[8.0]) == 27 % 12
    # one video, two windows: two frames, never one cache entry under the video
    assert image_key(frames[0.0]) != image_key(frames[2.6])
    again = AudioSetTriplets(root, lists, frames="video", seed=5)
    again.set_epoch(3)
    assert again.frame(0, 2.6) == frames[2.6] and again.frame(1, 1.3) == ds.frame(1, 1.3)


def test_an_unreadable_video_names_the_file_and_its_item(tmp_path):
    root = _audioset_videos(audioset(tmp_path))
    (root / "video" / "unbalanced_train" / "0ZdWMj1KmLU_10.mp4").unlink()
    ds = AudioSetTriplets(root, ["audioset_balanced_train.json", "audioset_unbalanced_train.json"],
                          frames="video")
    with pytest.raises(VitlensError, match=r"0ZdWMj1KmLU_10\.mp4: no such file \(the video of "
                                           r"audio/unbalanced_train/0ZdWMj1KmLU_10\.flac\)"):
        ds.frame(1, 1.0)
    (root / "video" / "balanced_train" / "--aE2O5G5WE_0.mp4").write_bytes(b"\0" * 100)
    with pytest.raises(VitlensError, match=r"--aE2O5G5WE_0\.mp4: not a decodable video .*--aE2O5G5WE_0\.flac"):
        ds.frame(0, 0.0)


def test_audioset_frames_come_from_the_videos_or_from_frame_dir(tmp_path):
    with pytest.raises(VitlensError, match=r"either from the videos \(frames='video'\) or from frame_dir"):
        AudioSetTriplets(audioset(tmp_path), ["audioset_balanced_train.json"], frame_dir="frames", frames="video")
    with pytest.raises(VitlensError, match=r"frames must be 'video' .* not 'mp4'"):
        AudioSetTriplets(audioset(tmp_path), ["audioset_balanced_train.json"], frames="mp4")


def test_audioset_mixup_caption_is_any_raw_caption(tmp_path):
    ds = AudioSetTriplets(audioset(tmp_path), ["audioset_balanced_train.json", "audioset_unbalanced_train.json"])
    drawn = {ds.mixup_caption(0, np.random.default_rng(seed)) for seed in range(20)}
    assert drawn == {"Speech, Music", "A man talks over music."}  # uncleaned, the class names untemplated


def test_the_depth_recipe_with_its_released_views_encodes_every_frame_view(tmp_path, nano_omni_clip):
    """data.view_augment on, a CLIP image tower: each step's RGB frames arrive as the depth's joint views and
    are encoded every time; only the captions go through a cache."""
    from omegaconf import OmegaConf

    from vitlens_cli.training.data import make_source
    from vitlens_cli.training.loop import train
    from vitlens_cli.training.recipe import load_recipe, shipped_recipe_files

    root = _sunrgbd(tmp_path / "sun")
    own = OmegaConf.to_container(OmegaConf.create(shipped_recipe_files()["tiny-depth-cpu"].read_text()))
    own["data"] = {"kind": "sunrgbd", "root": str(root), "workers": 0,
                   "view_augment": {"random_crop": True, "hflip": 0.5, "color_jitter": 0.4, "erase": 0.25}}
    own["validation"] = {}
    (tmp_path / "own.yaml").write_text(OmegaConf.to_yaml(own))
    recipe = load_recipe(tmp_path / "own.yaml", ["batch_size=2", "max_steps=2", f"model.clip_model={nano_omni_clip}",
                                                 f"output_dir={tmp_path / 'run'}"])
    result = train(recipe, device="cpu")
    source = make_source(recipe.data, recipe.seed, "depth")
    texts = set()
    for epoch in (0, 1):  # one epoch a step
        source.set_epoch(epoch)
        texts |= {source[i].text for i in range(2)}
    # by path the two frames would be encoded once (2); as views, 2 a step
    assert result.steps == 2 and result.features_encoded == len(texts) + 4
