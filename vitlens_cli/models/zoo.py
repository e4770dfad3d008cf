"""The zoo, split as open_clip / timm do: architectures apart from a table of released weights.

``ARCHITECTURES`` are model configs without provenance (towers, text tower, preprocessing);
``WEIGHTS`` maps every named model to an architecture and its card (file, layout, licence, paper,
published numbers and where each comes from). :func:`get_spec` joins the two.

Facts come from the official ViT-Lens repository (README.md, MODEL_ZOO.md, TRAIN_INFERENCE.md,
``mm_vit_lens/model_cfg.py`` and the training flags). Where its documents disagree
(``self_per_cross_attn`` of the L14 and bigG lenses), the TRAIN_INFERENCE.md value is used and the
note says so; the strict loader reports a mismatch key by key if a file disagrees.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from ..errors import ConfigError
from ..lenses.registry import AudioASTParams, DepthPatchParams, EEGPatchParams, ImagePatchParams
from .config import (LensConfig, ModelCard, ModelConfig, PerceiverConfig, Preprocess, TextConfig, TowerConfig,
                     VisionConfig)

HF_REPO = "TencentARC/ViT-Lens"

_L14_TEXT = TextConfig(embed_dim=768, width=768, heads=12, layers=12)
_BIGG_TEXT = TextConfig(embed_dim=1280, width=1280, heads=20, layers=32)
_L14_VIT = VisionConfig(width=1024, layers=24, heads=16, embed_dim=768)
_SELF_PER_CROSS_NOTE = ("The official README evaluates with perceiver_self_per_cross_attn={alt}, "
                        "TRAIN_INFERENCE.md with 1; this spec uses 1.")


def _l14_lens(tied: bool) -> LensConfig:
    return LensConfig(
        tokenizer="pointbert", npoints=8192, in_channels=3, num_group=512, group_size=32,
        encoder_dims=256, trans_dim=384,
        perceiver=PerceiverConfig(input_chan=384, depth=4, num_latents=256, latent_dim=1024, latent_heads=16,
                                  latent_dim_head=64, cross_heads=1, cross_dim_head=64, self_per_cross_attn=1,
                                  weight_tie_layers=tied),
        vit=_L14_VIT,
    )


def _bigg_lens(depth: int, skip: int) -> LensConfig:
    return LensConfig(
        tokenizer="pnsa", npoints=10000, in_channels=6, num_group=512, group_size=64, radius=0.2,
        encoder_dims=256, trans_dim=256,
        perceiver=PerceiverConfig(input_chan=256, depth=depth, num_latents=256, latent_dim=1664, latent_heads=16,
                                  latent_dim_head=104, cross_heads=1, cross_dim_head=104, self_per_cross_attn=1),
        vit=VisionConfig(width=1664, layers=48 - skip, heads=16, mlp_ratio=4.9231, embed_dim=1280,
                         skip_first_n_layers=skip),
    )


_ULIP_PRE = Preprocess(num_points=8192, channels=3, up_axis="y", normalize=True, sampling="fps")
_OPENSHAPE_PRE = Preprocess(num_points=10000, channels=6, up_axis="z", normalize=True, sampling="random",
                            default_rgb=0.4)


def _perceiver(width: int, depth: int, self_per_cross: int, heads: int = 16) -> PerceiverConfig:
    """The official audio / EEG Perceiver at a ViT width (``mm_vit_lens/model_cfg.py``)."""
    return PerceiverConfig(input_chan=width, depth=depth, num_latents=256, latent_dim=width, latent_heads=heads,
                           latent_dim_head=64, cross_heads=1, cross_dim_head=64, self_per_cross_attn=self_per_cross)


# The vitlensL towers of ``mm_vit_lens/model_cfg.py`` (ViT-L/14 at 224 px for every one of them).
_L14_TOWERS = {
    "depth": TowerConfig("depth_patch", DepthPatchParams(image_size=224, patch_size=14), _L14_VIT),
    "audio": TowerConfig("audio_ast", AudioASTParams(mel_bins=128, target_length=512, patch_size=14, fstride=10,
                                                     tstride=10), _L14_VIT, _perceiver(1024, 2, 3)),
    "tactile": TowerConfig("tactile_vit", ImagePatchParams(image_size=224, patch_size=14), _L14_VIT),
    "eeg": TowerConfig("eeg_patch1d", EEGPatchParams(channels=128, time_len=512, window_size=1, stride=1), _L14_VIT,
                       _perceiver(1024, 1, 1)),
    "image": TowerConfig("image", ImagePatchParams(image_size=224, patch_size=14), _L14_VIT),
}
_B16_VIT = VisionConfig(width=768, layers=12, heads=12, embed_dim=512)
_B16_TEXT = TextConfig(embed_dim=512, width=512, heads=8, layers=12)


def _tiny_lens(tokenizer: str) -> LensConfig:
    pnsa = tokenizer == "pnsa"
    return LensConfig(
        tokenizer=tokenizer, npoints=2048 if pnsa else 1024, in_channels=6 if pnsa else 3, num_group=64,
        group_size=32 if pnsa else 16, radius=0.2 if pnsa else None, encoder_dims=48, trans_dim=40,
        perceiver=PerceiverConfig(input_chan=40, depth=2, num_latents=16, latent_dim=64, latent_heads=4,
                                  latent_dim_head=12, cross_heads=1, cross_dim_head=24, self_per_cross_attn=1),
        vit=VisionConfig(width=64, layers=2 if pnsa else 3, heads=4, embed_dim=32,
                         skip_first_n_layers=1 if pnsa else 0),
    )


_TINY_TEXT = TextConfig(embed_dim=32, width=32, heads=2, layers=2)
_TINY_VIT = VisionConfig(width=64, layers=2, heads=4, embed_dim=32)
_TINY_PERCEIVER = PerceiverConfig(input_chan=64, depth=1, num_latents=16, latent_dim=64, latent_heads=4,
                                  latent_dim_head=16, cross_heads=1, cross_dim_head=16, self_per_cross_attn=1)
# Every modality at nano size, inputs at the official sizes, so real files embed in tests and demos.
_TINY_TOWERS = {
    "depth": TowerConfig("depth_patch", DepthPatchParams(image_size=224, patch_size=56), _TINY_VIT),
    "audio": TowerConfig("audio_ast", AudioASTParams(mel_bins=128, target_length=512, patch_size=32, fstride=32,
                                                     tstride=32), _TINY_VIT, _TINY_PERCEIVER),
    "tactile": TowerConfig("tactile_vit", ImagePatchParams(image_size=224, patch_size=56), _TINY_VIT),
    "eeg": TowerConfig("eeg_patch1d", EEGPatchParams(channels=128, time_len=512, window_size=16, stride=16),
                       _TINY_VIT, _TINY_PERCEIVER),
    "image": TowerConfig("image", ImagePatchParams(image_size=224, patch_size=56), _TINY_VIT),
}


def _arch(lens: LensConfig | None, text: TextConfig | None, towers: dict[str, TowerConfig] | None = None,
          preprocess: Preprocess | None = None, init_seed: int | None = None,
          contracts: dict | None = None) -> ModelConfig:
    return ModelConfig(lens=lens, preprocess=preprocess if lens is not None else None,
                       card=ModelCard(name="(architecture)"), text=text, init_seed=init_seed, towers=towers or {},
                       contracts=contracts or {})


# The one-stop model's TextProcessor (mm_vit_lens/data_processors.py) cleans captions before the BPE.
_ONESTOP_TEXT = {"text": {"pre_caption": True, "max_words": 70}}


ARCHITECTURES: dict[str, ModelConfig] = {
    "tiny-pointbert": _arch(_tiny_lens("pointbert"), _TINY_TEXT, preprocess=Preprocess(num_points=1024), init_seed=0),
    "tiny-pnsa": _arch(_tiny_lens("pnsa"), _TINY_TEXT, init_seed=0,
                       preprocess=Preprocess(num_points=2048, channels=6, up_axis="z", sampling="random")),
    "tiny-omni": _arch(_tiny_lens("pointbert"), _TINY_TEXT, _TINY_TOWERS, Preprocess(num_points=1024), init_seed=0),
    "b16-pointbert-tied": _arch(LensConfig(
        tokenizer="pointbert", npoints=8192, in_channels=3, num_group=512, group_size=32, encoder_dims=256,
        trans_dim=384,
        perceiver=PerceiverConfig(input_chan=384, depth=4, num_latents=256, latent_dim=768, latent_heads=12,
                                  latent_dim_head=64, cross_heads=1, cross_dim_head=64, self_per_cross_attn=1,
                                  weight_tie_layers=True),
        vit=_B16_VIT), _B16_TEXT, preprocess=_ULIP_PRE),
    "l14-pointbert-tied": _arch(_l14_lens(tied=True), _L14_TEXT, preprocess=_ULIP_PRE),
    "l14-pointbert": _arch(_l14_lens(tied=False), _L14_TEXT, preprocess=_ULIP_PRE),
    # The one-stop model: model_cfg.py builds its pc Perceiver untied (perceiver_weight_tie_layers=False).
    "l14-omni": _arch(_l14_lens(tied=False), _L14_TEXT, _L14_TOWERS, _ULIP_PRE, contracts=_ONESTOP_TEXT),
    **{f"l14-{m}": _arch(None, _L14_TEXT, {m: _L14_TOWERS[m]}) for m in ("depth", "audio", "tactile", "eeg")},
    "b16-audio": _arch(None, _B16_TEXT, {"audio": TowerConfig(
        "audio_ast", AudioASTParams(mel_bins=128, target_length=512, patch_size=16, fstride=10, tstride=10), _B16_VIT,
        _perceiver(768, 2, 3, heads=12))}),
    "bigg14-pnsa-sk16": _arch(_bigg_lens(depth=4, skip=16), _BIGG_TEXT, preprocess=_OPENSHAPE_PRE),
    "bigg14-pnsa": _arch(_bigg_lens(depth=2, skip=0), _BIGG_TEXT, preprocess=_OPENSHAPE_PRE),
    "eva-g14-pointbert": _arch(LensConfig(
        tokenizer="pointbert", npoints=8192, in_channels=3, num_group=512, group_size=32, encoder_dims=256,
        trans_dim=384,
        perceiver=PerceiverConfig(input_chan=384, depth=6, num_latents=256, latent_dim=1408, latent_heads=16,
                                  latent_dim_head=88, cross_heads=1, cross_dim_head=88, self_per_cross_attn=1),
        vit=VisionConfig(width=1408, layers=39, heads=16, mlp_ratio=4.3637, embed_dim=1408)), None,
        preprocess=_ULIP_PRE),
}


@dataclass(frozen=True)
class Weights:
    """A released (or random-init) weight set: the architecture it fits and its card."""

    arch: str
    card: ModelCard


_LICENSE = "Apache-2.0 (the ViT-Lens repository's LICENSE; no separate weights licence was found)"
_PAPER_3D = "arXiv:2308.10185 (ViT-Lens)"
_PAPER_OMNI = "arXiv:2311.16081 (ViT-Lens: Towards Omni-modal Representations)"
_ZOO = "TencentARC/ViT-Lens MODEL_ZOO.md @ 2b4f2e0"
_README = "TencentARC/ViT-Lens README.md @ 2b4f2e0, 'ViT-Lens Model' table"


def _released(name: str, description: str, filename: str, layout: str, published: dict[str, dict[str, float]],
              source_of: str, *, clip_model: str = "ViT-L-14", clip_pretrained: str = "datacomp_xl_s13b_b90k",
              paper: str = _PAPER_3D, notes: str = "") -> ModelCard:
    return ModelCard(name=name, description=description, clip_model=clip_model, clip_pretrained=clip_pretrained,
                     source="hf", hf_repo=HF_REPO, hf_filename=filename, layout=layout, license=_LICENSE,
                     paper=paper, published=published, published_source={k: source_of for k in published},
                     notes=notes)


def _random(name: str, description: str, source: str = "random init", **clip: str) -> ModelCard:
    return ModelCard(name=name, description=description, source=source, **clip)


WEIGHTS: dict[str, Weights] = {
    "tiny": Weights("tiny-pointbert", _random("tiny", "Nano Point-BERT lens + text tower, seeded random weights "
                                                      "(offline demos and tests; embeddings carry no meaning).")),
    "tiny-rgb": Weights("tiny-pnsa", _random("tiny-rgb", "Nano PointNet++ xyz+rgb lens (OpenShape-style), seeded "
                                                         "random weights, first ViT block skipped.")),
    "tiny-omni": Weights("tiny-omni", _random("tiny-omni", "Nano towers for every modality (3D, depth, audio, "
                                                           "tactile, EEG, image) + text, seeded random weights, "
                                                           "official input sizes (offline demos and tests).")),
    "vitlens-b16": Weights("b16-pointbert-tied", _random(
        "vitlens-b16", "A ViT-B/16-sized Point-BERT lens (the vitlensL lens design on CLIP ViT-B/16) for training "
                       "on a small budget; no released weights.", "train it yourself", clip_model="ViT-B-16",
        clip_pretrained="datacomp_xl_s13b_b90k")),
    "vitlens-l14-shapenet": Weights("l14-pointbert-tied", _released(
        "vitlens-l14-shapenet", "ViT-Lens-L on ULIP ShapeNet-55 triplets.", "Datacomp_L14_ShapeNet.pt", "ulip",
        {"modelnet40": {"top1": 70.6, "top5": 94.4}}, _ZOO + ", 3D Point Cloud table",
        notes=_SELF_PER_CROSS_NOTE.format(alt=6))),
    "vitlens-l14-objaverse": Weights("l14-pointbert", _released(
        "vitlens-l14-objaverse", "ViT-Lens-L on ULIP-2 Objaverse triplets.", "Datacomp_L14_objaverse.pt", "ulip",
        {"modelnet40": {"top1": 80.6, "top5": 95.8}}, _ZOO + ", 3D Point Cloud table",
        notes=_SELF_PER_CROSS_NOTE.format(alt=6) + " TRAIN_INFERENCE.md links the file as Datacomp_L14_Objaverse.pt.")),
    "vitlensL": Weights("l14-omni", _released(
        "vitlensL", "The one-stop omni-modal ViT-Lens-L: 3D, depth, audio, tactile and EEG lenses with the CLIP "
                    "image and text towers.", "vitlensL.pt", "vitlens",
        {"modelnet40": {"top1": 80.6}, "sun_depth": {"top1": 52.2}, "nyu_depth": {"top1": 68.5},
         "audioset": {"mAP": 26.7}, "vggsound": {"top1": 31.7}, "esc50": {"top1": 75.9},
         "clotho": {"R@1": 8.1, "R@10": 31.2}, "audiocaps": {"R@1": 14.4, "R@10": 54.9},
         "touch_and_go_material": {"top1": 65.8}, "imagenet_eeg": {"top1": 42.7}}, _README, paper=_PAPER_OMNI,
        notes="No logit scale is stored; the official examples use 100 · cosine. The pc Perceiver is untied "
              "(mm_vit_lens/model_cfg.py); tying is read from the file's tensors anyway. Whether the file holds "
              "vitlens.image.* could not be checked offline: without it the image tower comes from the CLIP tag.")),
    "vitlensL-depth": Weights("l14-depth", _released(
        "vitlensL-depth", "ViT-Lens-L depth lens (SUN RGB-D, image + text), first 4 ViT blocks fine-tuned.",
        "vitlensL_depth.pt", "ulip", {"sun_depth": {"top1": 52.2}, "nyu_depth": {"top1": 68.5}},
        _ZOO + ", Depth table", paper=_PAPER_OMNI)),
    "vitlensL-audio": Weights("l14-audio", _released(
        "vitlensL-audio", "ViT-Lens-L audio lens (AudioSet train, 5-s clips, video + text).", "vitlensL_audio.pt",
        "ulip", {"audioset": {"mAP": 26.7}, "vggsound": {"top1": 31.7}, "esc50": {"top1": 75.9},
                 "clotho": {"R@1": 8.1, "R@10": 31.2}, "audiocaps": {"R@1": 14.4, "R@10": 54.9}},
        _ZOO + ", Audio table", paper=_PAPER_OMNI)),
    "vitlensB-audio-dur5": Weights("b16-audio", _released(
        "vitlensB-audio-dur5", "ViT-Lens-B audio lens (AudioSet train, 5-s clips).", "vitlensB_audio_dur5.pt",
        "ulip", {"audioset": {"mAP": 26.3}, "vggsound": {"top1": 29.9}, "esc50": {"top1": 72.9},
                 "clotho": {"R@1": 7.5, "R@10": 29.5}, "audiocaps": {"R@1": 13.5, "R@10": 54.1}},
        _ZOO + ", Audio table", clip_model="ViT-B-16", paper=_PAPER_OMNI,
        notes="The official documents give no command or config for vitlensB: this spec assumes CLIP ViT-B/16 "
              "(datacomp_xl_s13b_b90k) with the vitlensL audio lens design at width 768 (patch 16, strides 10, "
              "Perceiver depth 2 × (1 + 3), 256 latents, 12 × 64 latent heads). The strict loader lists every "
              "key that disagrees.")),
    "vitlensL-tactile": Weights("l14-tactile", _released(
        "vitlensL-tactile", "ViT-Lens-L tactile tower (Touch-and-Go): the CLIP image tower with its stem and "
                            "first 4 blocks fine-tuned.", "vitlensL_tactile.pt", "ulip",
        {"touch_and_go_material": {"top1": 65.8}, "touch_and_go_hard_soft": {"top1": 74.7},
         "touch_and_go_rough_smooth": {"top1": 63.8}}, _ZOO + ", Tactile table", paper=_PAPER_OMNI)),
    "vitlensL-eeg": Weights("l14-eeg", _released(
        "vitlensL-eeg", "ViT-Lens-L EEG lens (ImageNet-EEG), Conv1d k = s = 1 over 128 channels.", "vitlensL_eeg.pt",
        "ulip", {"imagenet_eeg_val": {"top1": 41.8}, "imagenet_eeg_test": {"top1": 42.7}}, _ZOO + ", EEG table",
        paper=_PAPER_OMNI)),
    "vitlens-bigg14-openshape": Weights("bigg14-pnsa-sk16", _released(
        "vitlens-bigg14-openshape", "ViT-Lens-G on all OpenShape triplets (first 16 bigG blocks skipped).",
        "bigG14_sk16_openshape_all.pt", "openshape",
        {"modelnet40": {"top1": 87.6, "top3": 96.6, "top5": 98.4},
         "objaverse_lvis": {"top1": 52.0, "top3": 73.3, "top5": 79.9},
         "scanobjectnn": {"top1": 60.1, "top3": 81.0, "top5": 90.3}}, _ZOO + ", 3D Point Cloud table",
        clip_model="ViT-bigG-14", clip_pretrained="laion2b_s39b_b160k",
        notes=_SELF_PER_CROSS_NOTE.format(alt=4) + " The text tower comes from the open_clip tag, not the checkpoint.")),
    "vitlens-bigg14-openshape-nolvis": Weights("bigg14-pnsa", _released(
        "vitlens-bigg14-openshape-nolvis", "ViT-Lens-G on OpenShape triplets without Objaverse-LVIS.",
        "bigG14_openshape_nolvis.pt", "openshape",
        {"modelnet40": {"top1": 86.8, "top3": 96.8, "top5": 97.8},
         "objaverse_lvis": {"top1": 50.1, "top3": 71.3, "top5": 78.1},
         "scanobjectnn": {"top1": 59.8, "top3": 79.3, "top5": 87.7}}, _ZOO + ", 3D Point Cloud table",
        clip_model="ViT-bigG-14", clip_pretrained="laion2b_s39b_b160k",
        notes="The official README evaluates with self_per_cross_attn=4 and weight tying, TRAIN_INFERENCE.md "
              "with 1 and no tying; this spec follows the latter.")),
    "vitlens-eva-g14-qa": Weights("eva-g14-pointbert", replace(_released(
        "vitlens-eva-g14-qa", "3D lens for InstructBLIP's EVA ViT-g/14 (tokenizer + Perceiver only; used by 3D "
                              "question answering).", "eva_g14_objaverse.pt", "eva_lens", {}, _ZOO,
        clip_model="eva_vit_g", notes="Only keys under visual.visual_adapter / visual.perceiver belong to the lens."),
        clip_pretrained=None)),
}


def list_models() -> list[str]:
    return list(WEIGHTS)


def get_spec(name: str) -> ModelConfig:
    """The architecture of ``name`` with its weights' card."""
    try:
        weights = WEIGHTS[name]
    except KeyError:
        raise ConfigError(name, f"unknown model (known: {', '.join(WEIGHTS)})") from None
    return replace(ARCHITECTURES[weights.arch], card=weights.card)


def model_modalities(name: str) -> list[str]:
    """What ``name`` embeds: its towers' modalities, then ``text`` when it has a text tower."""
    spec = get_spec(name)
    return spec.modalities + (["text"] if spec.text is not None else [])


def with_card(spec: ModelConfig, **changes) -> ModelConfig:
    return replace(spec, card=replace(spec.card, **changes))
