"""The model zoo: every spec builds (on the meta device), parameter counts match the config formulas."""
from __future__ import annotations

import pytest
import torch

from vitlens_cli.errors import ConfigError
from vitlens_cli.models import LensConfig, TextConfig, ViTLens, get_spec, list_models, load_model, model_modalities
from vitlens_cli.models.config import PerceiverConfig, TowerConfig

RELEASED = ["vitlens-l14-shapenet", "vitlens-l14-objaverse", "vitlensL", "vitlens-bigg14-openshape",
            "vitlens-bigg14-openshape-nolvis", "vitlens-eva-g14-qa", "vitlensL-depth", "vitlensL-audio",
            "vitlensB-audio-dur5", "vitlensL-tactile", "vitlensL-eeg"]
POINT_MODELS = [n for n in list_models() if get_spec(n).lens is not None]


def n_params(module: torch.nn.Module) -> int:
    """Distinct parameters (a tied module counts once)."""
    return sum(p.numel() for p in module.parameters())


# ---- independent formulas, written from the parity README §3.3–3.6 --------------------------------
def lin(i: int, o: int, bias: bool = True) -> int:
    return i * o + (o if bias else 0)


def tokenizer_count(c: LensConfig) -> int:
    e, t = c.encoder_dims, c.trans_dim
    if c.tokenizer == "pointbert":
        first = lin(3, 128) + 2 * 128 + lin(128, 256)
        second = lin(512, 512) + 2 * 512 + lin(512, e)
        return first + second + lin(e, t) + lin(3, 128) + lin(128, t)
    widths = [c.in_channels + 3, 64, 64, e]
    sa = sum(lin(a, b) + 2 * b for a, b in zip(widths[:-1], widths[1:]))
    return sa + lin(3 + e, t) + 2 * t


def perceiver_count(c: LensConfig | PerceiverConfig) -> int:
    p = c.perceiver if isinstance(c, LensConfig) else c
    d, ci = p.latent_dim, p.input_chan

    def attn(ctx: int, heads: int, dh: int) -> int:
        inner = heads * dh
        return lin(d, inner, False) + lin(ctx, 2 * inner, False) + lin(inner, d)

    ff = 2 * d + lin(d, 2 * p.ff_mult * d) + lin(p.ff_mult * d, d)
    cross = 2 * d + 2 * ci + attn(ci, p.cross_heads, p.cross_dim_head)
    self_block = 2 * d + attn(d, p.latent_heads, p.latent_dim_head) + ff
    layer = cross + ff + p.self_per_cross_attn * self_block
    distinct_layers = min(p.depth, 2) if p.weight_tie_layers else p.depth
    return p.num_latents * d + distinct_layers * layer


def vit_block_count(width: int, mlp_ratio: float) -> int:
    m = int(width * mlp_ratio)
    return 2 * width + lin(width, 3 * width) + lin(width, width) + 2 * width + lin(width, m) + lin(m, width)


def vit_count(c: LensConfig | TowerConfig, rows: int | None = None) -> int:
    v, w = c.vit, c.vit.width
    rows = c.perceiver.num_latents if rows is None else rows
    # class_embedding, positional_embedding (L+1 rows), ln_pre, ln_post, proj, blocks
    return w + (rows + 1) * w + 4 * w + w * v.embed_dim + v.layers * vit_block_count(w, v.mlp_ratio)


def modal_tower_count(t: TowerConfig) -> int:
    """A non-3D tower from the fixture README §3.3–6.3: patch conv (+ pos_emb), Perceiver, ViT."""
    p, w = t.params, t.vit.width
    if t.lens == "depth_patch":
        tokens = (p.image_size // p.patch_size) ** 2
        lens = p.patch_size**2 * w + tokens * w
    elif t.lens == "audio_ast":
        tokens = ((p.mel_bins - p.patch_size) // p.fstride + 1) * ((p.target_length - p.patch_size) // p.tstride + 1)
        lens = p.patch_size**2 * w + tokens * w
    elif t.lens == "eeg_patch1d":
        tokens = (p.time_len - p.window_size) // p.stride + 1
        lens = p.channels * p.window_size * w + w + tokens * w
    else:  # the CLIP RGB stem (tactile, image)
        tokens = (p.image_size // p.patch_size) ** 2
        lens = p.in_channels * p.patch_size**2 * w
    rows = t.perceiver.num_latents if t.perceiver else tokens
    return lens + (perceiver_count(t.perceiver) if t.perceiver else 0) + vit_count(t, rows)


def text_count(t: TextConfig) -> int:
    w = t.width
    return t.vocab_size * w + t.context_length * w + t.layers * vit_block_count(w, t.mlp_ratio) + 2 * w + w * t.embed_dim


# Pinned per-spec counts (tokenizer, perceiver, ViT part of the lens tower, text tower). Cross-checks:
# ViT-L/14 CLIP text = 123.65 M, bigG text = 694.66 M, bigG visual (48 blocks) ≈ 1.84 B, EVA-g ≈ 1.0 B.
PINNED = {
    "tiny": (329_728, 235_936, 153_408, 1_610_016),
    "tiny-rgb": (10_432, 235_936, 103_424, 1_610_016),
    "vitlens-l14-shapenet": (577_536, 59_401_728, 303_364_096, 123_650_304),
    "vitlens-l14-objaverse": (577_536, 118_541_312, 303_364_096, 123_650_304),
    "vitlensL": (577_536, 118_541_312, 303_364_096, 123_650_304),  # untied, as the official one-stop config
    "vitlens-bigg14-openshape": (89_280, 312_328_192, 1_230_141_184, 694_659_840),
    "vitlens-bigg14-openshape-nolvis": (89_280, 156_377_088, 1_843_928_832, 694_659_840),
    "vitlens-eva-g14-qa": (577_536, 335_547_904, 987_108_224, 0),
}


@pytest.fixture(scope="module")
def meta_models() -> dict[str, ViTLens]:
    out = {}
    for name in list_models():
        with torch.device("meta"):
            out[name] = ViTLens(get_spec(name))
    return out


def test_zoo_lists_every_released_checkpoint():
    names = list_models()
    assert {"tiny", "tiny-rgb", "tiny-omni", "vitlens-b16"} | set(RELEASED) == set(names)  # b16: train it yourself
    assert len(names) == len(set(names))


@pytest.mark.parametrize("name", POINT_MODELS)
def test_spec_builds_on_meta_with_formula_counts(meta_models, name: str):
    spec = get_spec(name)
    model = meta_models[name]
    tower = model.point
    assert all(p.is_meta for p in model.parameters())
    assert n_params(tower.visual_adapter) == tokenizer_count(spec.lens)
    assert n_params(tower.perceiver) == perceiver_count(spec.lens)
    assert n_params(tower) == tokenizer_count(spec.lens) + perceiver_count(spec.lens) + vit_count(spec.lens)
    assert len(tower.transformer.resblocks) == spec.lens.vit.layers
    assert tower.transformer.width == spec.lens.vit.width
    assert tower.positional_embedding.shape == (spec.lens.perceiver.num_latents + 1, spec.lens.vit.width)
    assert tower.proj.shape == (spec.lens.vit.width, spec.lens.vit.embed_dim)
    if spec.text is None:
        assert model.text is None
    else:
        assert n_params(model.text) == text_count(spec.text)
        assert spec.text.embed_dim == spec.lens.vit.embed_dim, "text and lens must share the embedding space"
    if spec.lens.perceiver.weight_tie_layers and spec.lens.perceiver.depth > 2:
        assert tower.perceiver.layers[1] is tower.perceiver.layers[-1]


def test_vit_l14_numbers():
    """ViT-L/14: 24 blocks of 12·W² + 13·W with W = 1024 (mlp 4W)."""
    spec = get_spec("vitlens-l14-shapenet")
    v = spec.lens.vit
    assert (v.width, v.layers, v.heads, v.mlp_ratio, v.embed_dim) == (1024, 24, 16, 4.0, 768)
    assert vit_block_count(1024, 4.0) == 12 * 1024**2 + 13 * 1024 == 12_596_224
    with torch.device("meta"):
        tower = ViTLens(spec).point
    assert n_params(tower.transformer) == 24 * 12_596_224 == 302_309_376


def test_bigg_and_eva_mlp_widths():
    """Odd mlp ratios give the real CLIP widths: bigG 1664 → 8192, EVA-g 1408 → 6144."""
    for name, width, mlp in [("vitlens-bigg14-openshape", 1664, 8192), ("vitlens-eva-g14-qa", 1408, 6144)]:
        v = get_spec(name).lens.vit
        assert v.width == width and int(v.width * v.mlp_ratio) == mlp
        with torch.device("meta"):
            block = ViTLens(get_spec(name)).point.transformer.resblocks[0]
        assert block.mlp.c_fc.out_features == mlp
    big = get_spec("vitlens-bigg14-openshape").lens.vit
    assert (big.layers, big.skip_first_n_layers, big.layers_before_skip) == (32, 16, 48)


def _counts(model: ViTLens) -> tuple[int, int, int, int]:
    t = model.point
    tok, per = n_params(t.visual_adapter), n_params(t.perceiver)
    return tok, per, n_params(t) - tok - per, 0 if model.text is None else n_params(model.text)


@pytest.mark.parametrize("name", list(PINNED))
def test_pinned_counts(meta_models, name: str):
    assert _counts(meta_models[name]) == PINNED[name]


def test_pinned_counts_by_hand():
    """The nano tower, summed by hand from README §3.3 / §3.6."""
    # first_conv 3·128+128 + 2·128 + 128·256+256 = 33_792; second_conv 512·512+512 + 2·512 + 512·48+48 = 288_304;
    # reduce_dim 48·40+40 = 1_960; pos_embed 3·128+128 + 128·40+40 = 5_672
    assert 33_792 + 288_304 + 1_960 + 5_672 == PINNED["tiny"][0]
    # 3 blocks of 12·64² + 13·64 = 49_984; cls 64; pos 17·64; ln_pre + ln_post 4·64; proj 64·32
    assert 3 * 49_984 + 64 + 17 * 64 + 4 * 64 + 64 * 32 == PINNED["tiny"][2]
    # pnsa: 9·64+64+128 + 64·64+64+128 + 64·48+48+96 + lift (51·40+40) + LN 80
    assert 768 + 4_288 + 3_216 + 2_080 + 80 == PINNED["tiny-rgb"][0]


@pytest.mark.parametrize("name", [n for n in list_models() if get_spec(n).towers])
def test_modality_towers_on_meta_with_formula_counts(meta_models, name: str):
    spec = get_spec(name)
    for modality, tower_cfg in spec.towers.items():
        tower = meta_models[name].towers[modality]
        assert n_params(tower) == modal_tower_count(tower_cfg), modality
        assert tower.proj.shape[1] == spec.text.embed_dim, "every tower lands in the text embedding space"


def test_vitlensL_towers_are_the_official_ones():
    """mm_vit_lens/model_cfg.py: ViT-L/14 everywhere; token counts 256 (depth), 600 → 256 (audio), 512 → 256 (EEG)."""
    spec = get_spec("vitlensL")
    assert spec.modalities == ["3d", "depth", "audio", "tactile", "eeg", "image"]
    assert model_modalities("vitlensL") == spec.modalities + ["text"]
    depth, audio, eeg = spec.towers["depth"], spec.towers["audio"], spec.towers["eeg"]
    assert depth.perceiver is None and depth.num_tokens == 256
    assert audio.perceiver.depth == 2 and audio.perceiver.self_per_cross_attn == 3
    from vitlens_cli.lenses import LENSES

    assert LENSES["audio_ast"].num_tokens(audio.params) == 12 * 50
    assert LENSES["eeg_patch1d"].num_tokens(eeg.params) == 512 and eeg.perceiver.num_latents == 256
    assert spec.towers["tactile"].perceiver is None and spec.towers["tactile"].num_tokens == 256


@pytest.mark.parametrize("name", ["vitlensL-depth", "vitlensL-audio", "vitlensL-tactile", "vitlensL-eeg"])
def test_single_modality_files_are_the_onestop_towers(name: str):
    spec = get_spec(name)
    (modality,) = spec.modalities
    assert spec.towers[modality] == get_spec("vitlensL").towers[modality]


# --------------------------------------------------------------------------- registry behaviour
def test_load_model_tiny_is_deterministic():
    torch.manual_seed(1)
    a = load_model("tiny")
    rng_after = torch.random.get_rng_state()
    torch.manual_seed(2)
    b = load_model("tiny")
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not a.training
    # building from a seed does not consume the caller's random stream
    torch.manual_seed(1)
    load_model("tiny")
    assert torch.equal(torch.random.get_rng_state(), rng_after)
    # a different seed gives different weights
    from dataclasses import replace

    from vitlens_cli.models import build_model

    c = build_model(replace(get_spec("tiny"), init_seed=1))
    assert not torch.equal(c.point.proj, a.point.proj)


def test_get_spec_unknown_name():
    with pytest.raises(ConfigError, match=r"nope: unknown model \(known: tiny, tiny-rgb"):
        get_spec("nope")


@pytest.mark.parametrize("name", RELEASED)
def test_released_cards_are_complete(name: str):
    card = get_spec(name).card
    assert card.source == "hf" and card.hf_repo == "TencentARC/ViT-Lens" and card.hf_filename
    assert card.layout in {"ulip", "openshape", "vitlens", "eva_lens"}
    assert card.license and card.paper and card.clip_model
    assert set(card.published_source) == set(card.published)
    assert all(src.startswith("TencentARC/ViT-Lens ") for src in card.published_source.values())
    spec = get_spec(name)
    if spec.lens is not None:
        assert spec.preprocess.channels == spec.lens.in_channels
        assert spec.preprocess.up_axis == ("z" if card.layout == "openshape" else "y")


def test_published_numbers_of_the_issue():
    """The numbers MODEL_ZOO.md / README.md give (cross-checked by hand against those files)."""
    pub = {n: get_spec(n).card.published for n in RELEASED}
    assert pub["vitlensL-depth"] == {"sun_depth": {"top1": 52.2}, "nyu_depth": {"top1": 68.5}}
    assert (pub["vitlensL-audio"]["audioset"], pub["vitlensL-audio"]["esc50"], pub["vitlensL-audio"]["clotho"]["R@1"]) \
        == ({"mAP": 26.7}, {"top1": 75.9}, 8.1)
    assert pub["vitlensL-tactile"]["touch_and_go_material"] == {"top1": 65.8}
    assert pub["vitlensL-eeg"] == {"imagenet_eeg_val": {"top1": 41.8}, "imagenet_eeg_test": {"top1": 42.7}}
    assert pub["vitlensL"]["modelnet40"] == {"top1": 80.6} and pub["vitlensL"]["imagenet_eeg"] == {"top1": 42.7}
