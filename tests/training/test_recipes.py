"""The shipped recipes: every YAML in vitlens_cli/recipes/ loads, overrides apply, mistakes name the file/key,
and each published recipe builds the model it claims, with pinned parameter counts.

Parameter counts are checked three ways: the model built on the meta device (no memory, no
weights), a closed-form count derived here from the published architecture numbers (independent of
the model code), and literal pinned numbers. Neither the ViT-Lens README, MODEL_ZOO.md,
TRAIN_INFERENCE.md nor the paper text available to us publishes a parameter count for these
3D checkpoints, so every pinned number below is *derived*, not published.
"""
from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import torch

from vitlens_cli.errors import ConfigError
from vitlens_cli.models.vitlens import ViTLens
from vitlens_cli.training.model_init import apply_freezing
from vitlens_cli.training.loop import optimizer_groups
from vitlens_cli.training.recipe import DATA_OPTIONS, Recipe, load_recipe, model_config, save_recipe

REPO = Path(__file__).resolve().parents[2]
RECIPES = sorted((REPO / "vitlens_cli" / "recipes").glob("*.yaml"))
PUBLISHED = ("vitlens-l14-ulip-shapenet", "vitlens-l14-ulip2-objaverse", "vitlens-bigg14-openshape",
             "vitlens-bigg14-openshape-nolvis")


def _recipe(name: str) -> Recipe:
    return load_recipe(REPO / "vitlens_cli" / "recipes" / f"{name}.yaml")


# ---------------------------------------------------------------------------------------------
# Loading and overrides
# ---------------------------------------------------------------------------------------------

def test_published_recipes_are_shipped():
    names = {p.stem for p in RECIPES}
    assert set(PUBLISHED) <= names


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_every_recipe_loads(path: Path):
    recipe = load_recipe(path)
    assert recipe.name == path.stem
    assert recipe.output_dir == f"runs/{path.stem}"
    cfg = model_config(recipe)  # the spec exists and lens changes validate
    if recipe.model.modality == "3d":
        assert cfg.lens.npoints == cfg.preprocess.num_points
    else:  # only the tower it trains is built
        assert cfg.modalities == [recipe.model.modality] and cfg.lens is None and cfg.text is not None


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_overrides_apply(path: Path):
    recipe = load_recipe(path, ["seed=5", "max_steps=3", "save_every=2", "output_dir=/x"])
    assert (recipe.seed, recipe.max_steps, recipe.save_every, recipe.output_dir) == (5, 3, 2, "/x")
    base = load_recipe(path)
    assert recipe.optim == base.optim and recipe.model == base.model and recipe.data == base.data


@pytest.mark.parametrize("kind", sorted(DATA_OPTIONS))
def test_each_data_options_schema_is_its_dataset_s_keywords(kind: str):
    """Every field of a kind's ``data.options`` schema is a keyword its dataset takes (none is dropped)."""
    from dataclasses import fields

    from vitlens_cli.data import imagenet_eeg, omni_triplets, synthetic, triplets

    ctor = {"synthetic": synthetic.SyntheticTriplets, "ulip-shapenet": triplets.ULIPShapeNetTriplets,
            "ulip2-objaverse": triplets.ULIP2ObjaverseTriplets, "openshape": triplets.OpenShapeTriplets,
            "captions": triplets.CaptionedShapes, "sunrgbd": omni_triplets.SUNRGBDTriplets,
            "touch-and-go": omni_triplets.TouchAndGoTriplets, "audioset": omni_triplets.AudioSetTriplets,
            "imagenet-eeg": imagenet_eeg.ImageNetEEGTrain}[kind]
    accepted = set(inspect.signature(ctor.__init__).parameters)
    renamed = {"templates": "caption_templates"}  # synthetic: the recipe's shorter name
    assert {renamed.get(f.name, f.name) for f in fields(DATA_OPTIONS[kind])} <= accepted


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_data_options_are_typed_by_kind(path: Path):
    recipe = load_recipe(path)
    assert isinstance(recipe.data.options, DATA_OPTIONS[recipe.data.kind])
    assert recipe.data.kind == "synthetic" or recipe.data.root


def test_data_options_of_another_kind_are_rejected():
    with pytest.raises(ConfigError, match=r"data\.options\.size: unknown key for data\.kind 'captions'"):
        load_recipe(REPO / "vitlens_cli" / "recipes" / "tiny-cpu.yaml", ["data.kind=captions", "data.root=x.csv"])


def test_saved_recipe_loads_back_equal(tmp_path: Path):
    for path in RECIPES:
        recipe = load_recipe(path, ["max_steps=7"])
        save_recipe(recipe, tmp_path / "recipe.yaml")
        assert load_recipe(tmp_path / "recipe.yaml") == recipe


def test_unknown_top_level_key_names_file_and_key(tmp_path: Path):
    path = tmp_path / "bad.yaml"
    path.write_text((REPO / "vitlens_cli" / "recipes" / "vitlens-l14-ulip-shapenet.yaml").read_text() + "\nlearning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*learning_rate"):
        load_recipe(path)


def test_unknown_nested_key_names_section_and_key(tmp_path: Path):
    path = tmp_path / "bad.yaml"
    path.write_text("optim:\n  lr: 1.0e-4\n  backbone_lr_scale: 0.1\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: optim\.backbone_lr_scale: unknown key"):
        load_recipe(path)


def test_unknown_override_key_is_rejected():
    with pytest.raises(ConfigError, match="unlock_everything"):
        load_recipe(REPO / "vitlens_cli" / "recipes" / "vitlens-bigg14-openshape.yaml", ["model.unlock.unlock_everything=true"])


def test_bad_yaml_names_the_file(tmp_path: Path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\noptim: [unclosed\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml.*invalid YAML"):
        load_recipe(path)


def test_missing_recipe_names_the_file(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"nope\.yaml"):
        load_recipe(tmp_path / "nope.yaml")


# ---------------------------------------------------------------------------------------------
# Published hyperparameters (TRAIN_INFERENCE.md, params.py, VitLens-OpenShape configs)
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", PUBLISHED[:2])
def test_ulip_recipes_follow_open_clip_defaults(name: str):
    r = _recipe(name)
    o = r.optim
    assert (o.lr, o.betas, o.eps, o.weight_decay, o.warmup_steps, o.schedule, o.grad_clip) == \
        (5e-4, (0.9, 0.98), 1e-6, 0.2, 10_000, "cosine", None)
    assert (r.batch_size, r.grad_accum, r.epochs, r.precision) == (32, 1, 200, "fp16")  # 16 GPUs -> 512
    assert (r.model.clip_model, r.model.clip_pretrained) == ("ViT-L-14", "datacomp_xl_s13b_b90k")
    a = r.data.augment
    assert (a.dropout, a.scale, a.shift, a.rotation_sigma, a.rotation_clip, a.rotate_up, a.rgb_drop) == \
        (0.875, (0.8, 1.25), 0.1, 0.06, 0.18, True, 0.0)
    assert model_config(r).preprocess.up_axis == "y"
    u = r.model.unlock
    assert (u.cls, u.pos, u.first_blocks, u.last_blocks, u.logit_scale) == (False, False, 0, 0, True)


@pytest.mark.parametrize("name", PUBLISHED[2:])
def test_openshape_recipes_follow_vitlens_openshape(name: str):
    r = _recipe(name)
    o = r.optim
    assert (o.lr, o.betas, o.eps, o.weight_decay, o.warmup_steps, o.schedule, o.grad_clip) == \
        (1e-4, (0.9, 0.999), 1e-8, 0.2, 10_000, "cosine", 10.0)
    assert (r.batch_size, r.grad_accum, r.epochs, r.precision) == (16, 1, 160, "fp16")  # 32 GPUs -> 512
    assert (r.model.clip_model, r.model.clip_pretrained) == ("ViT-bigG-14", "laion2b_s39b_b160k")
    a = r.data.augment
    assert (a.dropout, a.scale, a.shift, a.rotation_sigma, a.rotation_clip, a.rotate_up, a.rgb_drop) == \
        (0.875, (0.8, 1.25), 0.1, 0.06, 0.18, True, 0.5)
    assert model_config(r).preprocess.up_axis == "z"
    u = r.model.unlock
    assert (u.cls, u.pos, u.first_blocks, u.last_blocks, u.logit_scale) == (True, False, 2, 0, True)
    assert r.data.kind == "openshape"
    assert tuple(r.data.options.text_source) == ("text", "caption", "retrieval_text")
    # [MAIN]: the unlocked bigG blocks at 0.1 x lr, everything else at the full lr
    (group,) = r.optim.param_groups.values()
    assert (group.params, group.lr_scale, group.weight_decay) == (["point.transformer.*"], 0.1, None)
    with torch.device("meta"):
        model = ViTLens(model_config(r))
    trainable = apply_freezing(model, r)
    scaled = {id(p) for g in optimizer_groups(model, r.optim) if g["lr_scale"] == 0.1 for p in g["params"]}
    names = {n for n, p in model.named_parameters() if id(p) in scaled}
    assert names == {n for n in trainable if n.startswith("point.transformer.resblocks.")}
    assert {n.split(".")[3] for n in names} == {"0", "1"}  # the two unlocked blocks, nothing else


# ---------------------------------------------------------------------------------------------
# Parameter counts, derived independently from the architecture numbers
# ---------------------------------------------------------------------------------------------

def _linear(i: int, o: int, bias: bool = True) -> int:
    return i * o + (o if bias else 0)


def _norm(d: int) -> int:  # LayerNorm / BatchNorm affine
    return 2 * d


def _pointbert(enc: int, trans: int) -> int:
    mini_pointnet = (_linear(3, 128) + _norm(128) + _linear(128, 256)
                     + _linear(512, 512) + _norm(512) + _linear(512, enc))
    return mini_pointnet + _linear(enc, trans) + _linear(3, 128) + _linear(128, trans)


def _pnsa(in_ch: int, enc: int, trans: int) -> int:
    sa = _linear(in_ch + 3, 64) + _norm(64) + _linear(64, 64) + _norm(64) + _linear(64, enc) + _norm(enc)
    return sa + _linear(3 + enc, trans) + _norm(trans)


def _geglu_ff(d: int, mult: int = 4) -> int:
    return _norm(d) + _linear(d, 2 * mult * d) + _linear(mult * d, d)


def _perceiver(inp: int, depth: int, latents: int, d: int, lh: int, ldh: int, ch: int, cdh: int,
               self_per_cross: int, tied: bool) -> int:
    cross = _norm(d) + _norm(inp) + _linear(d, ch * cdh, False) + _linear(inp, 2 * ch * cdh, False) \
        + _linear(ch * cdh, d)
    self_attn = _norm(d) + _linear(d, lh * ldh, False) + _linear(d, 2 * lh * ldh, False) + _linear(lh * ldh, d)
    layer = cross + _geglu_ff(d) + self_per_cross * (self_attn + _geglu_ff(d))
    unique_layers = min(depth, 2) if tied else depth  # tied: layer 0 own, layers 1.. share one set
    return latents * d + unique_layers * layer


def _vit_block(w: int, mlp_ratio: float) -> int:
    hidden = int(w * mlp_ratio)
    return _norm(w) + _linear(w, 3 * w) + _linear(w, w) + _norm(w) + _linear(w, hidden) + _linear(hidden, w)


# name: (tokenizer params, perceiver params, ViT width, kept blocks, mlp_ratio, embed dim, latents)
_ARCH = {
    # ViT-L/14: width 1024, 24 blocks, mlp 4096, embed 768 (open_clip ViT-L-14.json).
    "vitlens-l14-ulip-shapenet": (_pointbert(256, 384), _perceiver(384, 4, 256, 1024, 16, 64, 1, 64, 1, True),
                                  1024, 24, 4.0, 768, 256),
    "vitlens-l14-ulip2-objaverse": (_pointbert(256, 384), _perceiver(384, 4, 256, 1024, 16, 64, 1, 64, 1, False),
                                    1024, 24, 4.0, 768, 256),
    # ViT-bigG/14: width 1664, 48 blocks, mlp_ratio 4.9231 (8192), embed 1280 (open_clip ViT-bigG-14.json).
    "vitlens-bigg14-openshape": (_pnsa(6, 256, 256), _perceiver(256, 4, 256, 1664, 16, 104, 1, 104, 1, False),
                                 1664, 48 - 16, 4.9231, 1280, 256),
    "vitlens-bigg14-openshape-nolvis": (_pnsa(6, 256, 256), _perceiver(256, 2, 256, 1664, 16, 104, 1, 104, 1, False),
                                        1664, 48, 4.9231, 1280, 256),
}

# Derived (not published) pins: total lens-tower parameters, and trainable parameters of the whole
# ViTLens model after apply_freezing (lens + unlocked ViT parts + the logit scale; text tower frozen).
_PINNED = {
    "vitlens-l14-ulip-shapenet": (363_343_360, 59_978_369),
    "vitlens-l14-ulip2-objaverse": (422_482_944, 119_117_953),
    "vitlens-bigg14-openshape": (1_542_558_656, 389_142_209),
    "vitlens-bigg14-openshape-nolvis": (2_000_395_200, 233_191_105),
}

# Biases that feed a training-mode BatchNorm stay frozen (their true gradient is zero):
# Point-BERT first_conv.0 (128), first_conv.3 (256), second_conv.0 (512); PNSA mlp_convs (64, 64, 256).
_FROZEN_BIASES = {"vitlens-l14-ulip-shapenet": 896, "vitlens-l14-ulip2-objaverse": 896,
                  "vitlens-bigg14-openshape": 384, "vitlens-bigg14-openshape-nolvis": 384}


def _derived(name: str, recipe: Recipe) -> tuple[int, int]:
    tok, perc, w, blocks, ratio, embed, latents = _ARCH[name]
    block = _vit_block(w, ratio)
    vit = w + (latents + 1) * w + _norm(w) + blocks * block + _norm(w) + w * embed  # cls, pos, ln_pre, .., ln_post, proj
    u = recipe.model.unlock
    trainable = (tok + perc + (w if u.cls else 0) + ((latents + 1) * w if u.pos else 0)
                 + (u.first_blocks + u.last_blocks) * block + (1 if u.logit_scale else 0)) - _FROZEN_BIASES[name]
    return tok + perc + vit, trainable


def _unique_numel(params) -> int:
    seen, total = set(), 0
    for p in params:
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total


@pytest.mark.parametrize("name", PUBLISHED)
def test_parameter_counts(name: str):
    recipe = _recipe(name)
    with torch.device("meta"):
        model = ViTLens(model_config(recipe))
    total = _unique_numel(model.point.parameters())
    names = apply_freezing(model, recipe)
    trainable = _unique_numel(p for p in model.parameters() if p.requires_grad)
    assert trainable == _unique_numel(dict(model.named_parameters())[n] for n in names)
    assert model.text is not None and not any(p.requires_grad for p in model.text.parameters())

    derived_total, derived_trainable = _derived(name, recipe)
    assert (total, trainable) == (derived_total, derived_trainable)
    assert (total, trainable) == _PINNED[name]


def test_tied_perceiver_shares_layers():
    """The ShapeNet lens ties Perceiver layers 1..3 to one set: 2 unique layers, not 4."""
    with torch.device("meta"):
        tied = ViTLens(model_config(_recipe("vitlens-l14-ulip-shapenet"))).point.perceiver
        untied = ViTLens(model_config(_recipe("vitlens-l14-ulip2-objaverse"))).point.perceiver
    assert tied.layers[1] is tied.layers[3] and tied.layers[0] is not tied.layers[1]
    per_layer = _unique_numel(untied.layers[0].parameters())
    assert _unique_numel(untied.parameters()) - _unique_numel(tied.parameters()) == 2 * per_layer


def test_recipes_resolve_by_name_or_path(tmp_path: Path, monkeypatch):
    from vitlens_cli.training.recipe import resolve_recipe

    monkeypatch.chdir(tmp_path)
    shipped = REPO / "vitlens_cli" / "recipes" / "tiny-cpu.yaml"
    assert resolve_recipe("tiny-cpu") == resolve_recipe("tiny-cpu.yaml") == shipped
    Path("tiny-cpu").write_text("seed: 3\n")  # a file that exists wins over the shipped name
    assert resolve_recipe("tiny-cpu") == Path("tiny-cpu") and load_recipe(resolve_recipe("tiny-cpu")).seed == 3
    with pytest.raises(ConfigError, match=r"no-such: no such recipe file or shipped recipe \(shipped: .*tiny-cpu"):
        resolve_recipe("no-such")


def test_list_recipes_names_every_shipped_recipe():
    from typer.testing import CliRunner

    from vitlens_cli.cli.app import app

    res = CliRunner().invoke(app, ["train", "--list-recipes"])
    assert res.exit_code == 0 and res.stdout.split() == sorted(p.stem for p in RECIPES)


# ---------------------------------------------------------------------------------------------
# Non-3D recipes: model.modality, model.tower, the modality's data and validation
# ---------------------------------------------------------------------------------------------

TINY_MODALITIES = ("depth", "audio", "tactile", "eeg")


@pytest.mark.parametrize("modality", TINY_MODALITIES)
def test_tiny_modality_recipe_is_the_cli_default(modality: str):
    from vitlens_cli.cli.train import DEFAULT_RECIPES

    recipe = _recipe(DEFAULT_RECIPES[modality])
    assert recipe.name == f"tiny-{modality}-cpu" and recipe.model.modality == modality
    assert recipe.data.kind == "synthetic" and recipe.validation.benchmark == "synthetic"
    assert recipe.model.clip_model is None  # a random nano CLIP: nothing to download


def test_tower_overrides_change_only_that_tower():
    r = load_recipe(REPO / "vitlens_cli" / "recipes" / "tiny-audio-cpu.yaml",
                    ["model.tower.params.tstride=16", "model.tower.perceiver.depth=2", "model.tower.vit.layers=1"])
    tower = model_config(r).towers["audio"]
    assert (tower.params.tstride, tower.params.fstride, tower.perceiver.depth, tower.vit.layers) == (16, 32, 2, 1)
    with torch.device("meta"):
        model = ViTLens(model_config(r))
    assert model.audio.visual_adapter.pos_emb.shape[0] == 4 * 31  # (128-32)/32+1 x (512-32)/16+1 tokens


@pytest.mark.parametrize("override, message", [
    ("model.tower.params.patchsize=8", r"model\.tower\.params\.patchsize: unknown key"),
    ("model.tower.perceiver.depth=2", r"model\.tower\.perceiver: the depth tower of 'tiny-omni' has no Perceiver"),
    ("model.lens.npoints=256", r"model\.lens: is the 3D lens; model\.modality 'depth' changes its tower"),
    ("model.spec=tiny", r"model\.spec: 'tiny' has no depth tower \(it has: 3d\)"),
    ("data.kind=openshape", r"data\.kind: model\.modality 'depth' trains on synthetic or captions or sunrgbd data"),
    ("data.kind=touch-and-go", r"data\.kind: 'touch-and-go' holds tactile data, model\.modality is 'depth'"),
    ("data.options.classes=[box,tone]", r"data\.options\.classes: unknown synthetic depth class\(es\).*\['tone'\]"),
    ("data.audio_augment.noise=true", r"data\.audio_augment: applies to model\.modality audio only"),
    ("data.view_augment.crop_scale=[0.5,1.5]", r"data\.view_augment\.crop_scale: must be \[low, high\] with"),
    ("data.view_augment.hflip=2", r"data\.view_augment\.hflip: must be in \[0, 1\]"),
    ("data.view_augment.erase=1.5", r"data\.view_augment\.erase: must be in \[0, 1\]"),
    ("data.view_augment.color_jitter=0.6", r"data\.view_augment\.color_jitter: must be in \[0, 0\.5\]"),
    ("data.view_augment.short_side=[200,300]", r"data\.view_augment\.short_side: must be \[min, max\] with 224"),
    ("data.image_augment.hflip=0.5", r"data\.image_augment: applies to the paired frame of model\.modality tactile"),
    ("data.view_augment.rand_augment=[2,9]", r"data\.view_augment\.rand_augment: applies to a paired frame"),
    ("validation.benchmark=modelnet40", r"validation\.benchmark: periodic validation of a depth lens runs on"),
])
def test_non_3d_mistakes_name_their_key(override: str, message: str):
    with pytest.raises(ConfigError, match=message):
        load_recipe(REPO / "vitlens_cli" / "recipes" / "tiny-depth-cpu.yaml", [override])


def test_view_augment_is_for_depth_and_tactile_only():
    with pytest.raises(ConfigError, match=r"data\.view_augment: applies to model\.modality depth or tactile only"):
        _recipe_with("tiny-audio-cpu", ["data.view_augment.hflip=0.5"])
    with pytest.raises(ConfigError, match=r"data\.image_augment\.short_side: and random_crop are two crops"):
        _recipe_with("tiny-audio-cpu", ["data.image_augment.short_side=[256,340]", "data.image_augment.random_crop=true"])


@pytest.mark.parametrize("recipe, override, message", [
    ("tiny-audio-cpu", "data.image_augment.video_rand_augment=[15,9,0.3]",
     r"data\.image_augment\.video_rand_augment: must be \[num_layers, magnitude, prob\] with num_layers in 1\.\.14"),
    ("tiny-audio-cpu", "data.image_augment.video_rand_augment=[2,11,0.3]",
     r"data\.image_augment\.video_rand_augment: .*magnitude in 0\.\.10.*, got \[2, 11, 0\.3\]"),
    ("tiny-audio-cpu", "data.image_augment.video_rand_augment=[2,9,1.5]",
     r"data\.image_augment\.video_rand_augment: .*prob in \[0, 1\]"),
    ("tiny-audio-cpu", "data.image_augment.video_rand_augment=[2,9]", r"data\.image_augment\.video_rand_augment"),
    ("tiny-tactile-cpu", "data.image_augment.video_rand_augment=[2,9,0.3]",
     r"data\.image_augment\.video_rand_augment: applies to the video frame paired with model\.modality audio only"),
    ("tiny-depth-cpu", "data.image_augment.video_rand_augment=[2,9,0.3]",
     r"data\.image_augment\.video_rand_augment: applies to the video frame paired with model\.modality audio only"),
    ("tiny-tactile-cpu", "data.view_augment.video_rand_augment=[2,9,0.3]",
     r"data\.view_augment\.video_rand_augment: applies to the video frame paired with model\.modality audio"),
])
def test_video_rand_augment_is_for_the_audio_frame_and_names_its_key(recipe: str, override: str, message: str):
    with pytest.raises(ConfigError, match=message):
        _recipe_with(recipe, [override])


def test_audioset_frame_rate_needs_frames():
    extracted = ["data.options.frames=null", "data.options.frame_dir=frames"]
    _recipe_with("vitlens-l14-audioset-audio", [*extracted, "data.options.frame_rate=1.0"])  # accepted
    with pytest.raises(ConfigError, match=r"data\.options\.frame_rate: needs data\.options\.frame_dir"):
        _recipe_with("vitlens-l14-audioset-audio", ["data.options.frames=null", "data.options.frame_rate=1.0"])
    with pytest.raises(ConfigError, match=r"data\.options\.frame_rate: must be positive"):
        _recipe_with("vitlens-l14-audioset-audio", [*extracted, "data.options.frame_rate=0.0"])


def test_audioset_frames_from_the_videos_exclude_extracted_frames():
    assert _recipe_with("vitlens-l14-audioset-audio", []).data.options.frames == "video"
    with pytest.raises(ConfigError, match=r"data\.options\.frames: must be video .*or null .*, got 'jpg'"):
        _recipe_with("vitlens-l14-audioset-audio", ["data.options.frames=jpg"])
    with pytest.raises(ConfigError, match=r"data\.options\.frame_dir: must be null with data\.options\.frames video"):
        _recipe_with("vitlens-l14-audioset-audio", ["data.options.frame_dir=frames"])
    with pytest.raises(ConfigError, match=r"data\.options\.frame_rate: must be null with data\.options\.frames video"):
        _recipe_with("vitlens-l14-audioset-audio", ["data.options.frame_rate=1.0"])


def test_3d_recipe_refuses_tower_changes():
    with pytest.raises(ConfigError, match=r"model\.tower: changes a non-3D tower"):
        _recipe_with("tiny-cpu", ["model.tower.params.patch_size=8"])


def _recipe_with(name: str, overrides: list[str]) -> Recipe:
    return load_recipe(REPO / "vitlens_cli" / "recipes" / f"{name}.yaml", overrides)


def test_cli_modality_must_match_the_recipe():
    from typer.testing import CliRunner

    from vitlens_cli.cli.app import app

    res = CliRunner().invoke(app, ["train", "--modality", "audio", "--recipe", "tiny-depth-cpu", "max_steps=1"])
    assert res.exit_code != 0
    assert "--modality: " in res.output and "trains a depth lens (model.modality), not audio" in res.output


# ---------------------------------------------------------------------------------------------
# Published non-3D recipes (TRAIN_INFERENCE.md, params.py, the official datasets and lock code)
# ---------------------------------------------------------------------------------------------

# name: (modality, batch_size, grad_accum, epochs, (cls, pos, ln_pre, first_blocks), audio augment)
PUBLISHED_OMNI = {
    "vitlens-l14-sunrgbd-depth": ("depth", 64, 1, 100 * 50, (False, False, False, 4), None),
    "vitlens-l14-audioset-audio": ("audio", 32, 2, 80, (True, False, False, 0), (12, 48, True, 0.5)),
    "vitlens-l14-touchandgo-tactile": ("tactile", 64, 1, 80 * 40, (True, True, True, 4), None),
    "vitlens-l14-imagenet-eeg": ("eeg", 64, 1, 40 * 50, (True, False, False, 0), None),
}


@pytest.mark.parametrize("name", PUBLISHED_OMNI)
def test_omni_recipes_follow_train_inference(name: str):
    modality, batch, accum, epochs, (cls, pos, ln_pre, first), audio = PUBLISHED_OMNI[name]
    r = _recipe(name)
    o = r.optim
    assert (o.lr, o.betas, o.eps, o.weight_decay, o.warmup_steps, o.schedule, o.grad_clip) == \
        (2e-4, (0.9, 0.98), 1e-6, 0.2, 10_000, "cosine", None)
    assert (r.model.modality, r.batch_size, r.grad_accum, r.epochs, r.precision) == \
        (modality, batch, accum, epochs, "fp16")
    assert (r.model.clip_model, r.model.clip_pretrained) == ("ViT-L-14", "datacomp_xl_s13b_b90k")
    u = r.model.unlock
    assert (u.cls, u.pos, u.ln_pre, u.first_blocks, u.last_blocks, u.logit_scale) == (cls, pos, ln_pre, first, 0, True)
    a = r.data.audio_augment
    assert (a.freq_mask, a.time_mask, a.noise, a.mixup, a.random_window) == \
        ((*audio, True) if audio else (0, 0, False, 0.0, False))
    v = r.data.view_augment  # RandomResizedCrop(224) at torchvision's defaults; the flips and rotation
    view = {"depth": (True, (0.08, 1.0), (0.75, 4 / 3), 0.5, 0.0, 0.0),
            "tactile": (True, (0.08, 1.0), (0.75, 4 / 3), 0.5, 0.5, 360.0)}
    assert (v.random_crop, v.crop_scale, v.crop_ratio, v.hflip, v.vflip, v.rotation) == \
        view.get(modality, (False, (0.08, 1.0), (0.75, 4 / 3), 0.0, 0.0, 0.0))
    # RGBD_Processor_Train: ColorJitter3d(0.4, ...) and RandomErasing(p=0.25) of the RGB-D stack
    assert (v.color_jitter, v.erase) == ((0.4, 0.25) if modality == "depth" else (0.0, 0.0))
    i = r.data.image_augment  # the paired frame: Image_Processor_Train (tactile), PVProcessorTrain (audio)
    # PVProcessorTrain: pytorchvideo RandAugment(magnitude=9, num_layers=2, prob=0.3)
    frame = {"tactile": (True, None, 0.5, (2, 9), 0.4, None), "audio": (False, (256, 340), 0.5, None, 0.0, (2, 9, 0.3))}
    assert (i.random_crop, i.short_side, i.hflip, i.rand_augment, i.color_jitter, i.video_rand_augment) == \
        frame.get(modality, (False, None, 0.0, None, 0.0, None))
    assert (i.vflip, i.rotation, i.erase, v.rand_augment, v.video_rand_augment) == (0.0, 0.0, 0.0, None, None)
    official = {"depth": ("sunrgbd", "SUN-RGBD_train.json"), "tactile": ("touch-and-go", "pretrain.json"),
                "audio": ("audioset", ["audioset_balanced_train.json", "audioset_unbalanced_train.json"])}
    if modality == "eeg":  # the release's two torch files as they are
        assert (r.data.kind, r.data.split, r.data.options.data_file, r.data.options.split_file) == \
            ("imagenet-eeg", "train", "eeg_5_95_std.pth", "block_splits_by_image_all.pth")
    else:  # the official annotation lists as they are
        assert (r.data.kind, r.data.options.annotation) == official[modality]
    assert model_config(r).card.hf_filename == f"vitlensL_{modality}.pt"


def _tower_vit(w: int, tokens: int, blocks: int = 24, embed: int = 768) -> int:
    return w + (tokens + 1) * w + _norm(w) + blocks * _vit_block(w, 4.0) + _norm(w) + w * embed


# name: (lens, perceiver, tokens): ViT-L/14 width 1024; every lens emits 1024-wide tokens.
_W = 1024
_OMNI_ARCH = {
    # bias-free 14x14 conv of 1 channel + a pos_emb over the 16x16 grid
    "vitlens-l14-sunrgbd-depth": (14 * 14 * _W + 256 * _W, 0, 256),
    # bias-free 14x14 conv at strides (10, 10): 12 x 50 patches, their pos_emb; Perceiver 2 x (1 + 3)
    "vitlens-l14-audioset-audio": (14 * 14 * _W + 12 * 50 * _W,
                                   _perceiver(_W, 2, 256, _W, 16, 64, 1, 64, 3, False), 256),
    # CLIP's RGB stem: bias-free 3-channel 14x14 conv, no pos_emb of its own
    "vitlens-l14-touchandgo-tactile": (3 * 14 * 14 * _W, 0, 256),
    # Conv1d over 128 channels, k = s = 1, with bias, + a pos_emb over 512 steps; Perceiver 1 x (1 + 1)
    "vitlens-l14-imagenet-eeg": (_linear(128, _W) + 512 * _W, _perceiver(_W, 1, 256, _W, 16, 64, 1, 64, 1, False),
                                 256),
}
# Derived pins (no parameter count is published for these lenses); the tactile total is exactly open_clip's
# ViT-L/14 image tower (checked against open_clip below).
_OMNI_PINNED = {
    "vitlens-l14-sunrgbd-depth": (303_826_944, 50_847_745),
    "vitlens-l14-audioset-audio": (430_913_536, 127_550_465),
    "vitlens-l14-touchandgo-tactile": (303_966_208, 51_253_249),
    "vitlens-l14-imagenet-eeg": (333_935_616, 30_572_545),
}


def _omni_derived(name: str, recipe: Recipe) -> tuple[int, int]:
    lens, perc, tokens = _OMNI_ARCH[name]
    u = recipe.model.unlock
    trainable = (lens + perc + (_W if u.cls else 0) + ((tokens + 1) * _W if u.pos else 0)
                 + (_norm(_W) if u.ln_pre else 0) + (u.first_blocks + u.last_blocks) * _vit_block(_W, 4.0)
                 + (1 if u.logit_scale else 0))
    return lens + perc + _tower_vit(_W, tokens), trainable


@pytest.mark.parametrize("name", PUBLISHED_OMNI)
def test_omni_parameter_counts(name: str):
    recipe = _recipe(name)
    modality = recipe.model.modality
    with torch.device("meta"):
        model = ViTLens(model_config(recipe))
    assert model.modalities == [modality]
    tower = model.tower(modality)
    total = _unique_numel(tower.parameters())
    names = apply_freezing(model, recipe)
    trainable = _unique_numel(p for p in model.parameters() if p.requires_grad)
    assert trainable == _unique_numel(dict(model.named_parameters())[n] for n in names)
    assert all(n.startswith((f"{modality}.", "logit_scale")) for n in names)
    assert not any(p.requires_grad for p in model.text.parameters())
    assert (total, trainable) == _omni_derived(name, recipe)
    assert (total, trainable) == _OMNI_PINNED[name]


def test_tactile_tower_is_open_clip_s_vit_l14_image_tower():
    """The tactile tower is a CLIP image tower: as many parameters as open_clip's own ViT-L/14 visual."""
    import open_clip
    from open_clip.model import _build_vision_tower

    cfg = open_clip.get_model_config("ViT-L-14")
    with torch.device("meta"):
        visual = _build_vision_tower(cfg["embed_dim"], cfg["vision_cfg"])
        model = ViTLens(model_config(_recipe("vitlens-l14-touchandgo-tactile")))
    assert _unique_numel(model.tactile.parameters()) == _unique_numel(visual.parameters()) == 303_966_208
