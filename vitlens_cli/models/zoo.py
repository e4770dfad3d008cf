"""Named model specs: architecture, preprocessing contract and source of every released checkpoint.

Facts come from the official ViT-Lens repository (MODEL_ZOO.md, TRAIN_INFERENCE.md and the
training flags). Where its documents disagree (``self_per_cross_attn`` of the L14 and bigG lenses),
the TRAIN_INFERENCE.md value is used and the note says so; the strict loader reports a mismatch
key by key if a file disagrees.
"""
from __future__ import annotations

from dataclasses import replace

from ..errors import ConfigError
from .config import LensConfig, ModelCard, ModelConfig, PerceiverConfig, Preprocess, TextConfig, VisionConfig

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

_SPECS: dict[str, ModelConfig] = {
    "tiny": ModelConfig(
        lens=_tiny_lens("pointbert"), text=_TINY_TEXT, init_seed=0,
        preprocess=Preprocess(num_points=1024, channels=3, up_axis="y"),
        card=ModelCard(name="tiny", description="Nano Point-BERT lens + text tower, seeded random weights "
                       "(offline demos and tests; embeddings carry no meaning).", source="random init"),
    ),
    "tiny-rgb": ModelConfig(
        lens=_tiny_lens("pnsa"), text=_TINY_TEXT, init_seed=0,
        preprocess=Preprocess(num_points=2048, channels=6, up_axis="z", sampling="random"),
        card=ModelCard(name="tiny-rgb", description="Nano PointNet++ xyz+rgb lens (OpenShape-style), seeded random "
                       "weights, first ViT block skipped.", source="random init"),
    ),
    "vitlens-b16": ModelConfig(
        lens=LensConfig(
            tokenizer="pointbert", npoints=8192, in_channels=3, num_group=512, group_size=32, encoder_dims=256,
            trans_dim=384,
            perceiver=PerceiverConfig(input_chan=384, depth=4, num_latents=256, latent_dim=768, latent_heads=12,
                                      latent_dim_head=64, cross_heads=1, cross_dim_head=64, self_per_cross_attn=1,
                                      weight_tie_layers=True),
            vit=VisionConfig(width=768, layers=12, heads=12, embed_dim=512)),
        text=TextConfig(embed_dim=512, width=512, heads=8, layers=12), preprocess=_ULIP_PRE,
        card=ModelCard(name="vitlens-b16", description="A ViT-B/16-sized Point-BERT lens (the vitlensL lens "
                       "design on CLIP ViT-B/16) for training on a small budget; no released weights.",
                       clip_model="ViT-B-16", clip_pretrained="datacomp_xl_s13b_b90k", source="train it yourself"),
    ),
    "vitlens-l14-shapenet": ModelConfig(
        lens=_l14_lens(tied=True), text=_L14_TEXT, preprocess=_ULIP_PRE,
        card=ModelCard(name="vitlens-l14-shapenet", description="ViT-Lens-L on ULIP ShapeNet-55 triplets.",
                       clip_model="ViT-L-14", clip_pretrained="datacomp_xl_s13b_b90k", source="hf",
                       hf_repo=HF_REPO, hf_filename="Datacomp_L14_ShapeNet.pt", layout="ulip",
                       published={"modelnet40": {"top1": 70.6, "top5": 94.4}},
                       notes=_SELF_PER_CROSS_NOTE.format(alt=6)),
    ),
    "vitlens-l14-objaverse": ModelConfig(
        lens=_l14_lens(tied=False), text=_L14_TEXT, preprocess=_ULIP_PRE,
        card=ModelCard(name="vitlens-l14-objaverse", description="ViT-Lens-L on ULIP-2 Objaverse triplets.",
                       clip_model="ViT-L-14", clip_pretrained="datacomp_xl_s13b_b90k", source="hf",
                       hf_repo=HF_REPO, hf_filename="Datacomp_L14_objaverse.pt", layout="ulip",
                       published={"modelnet40": {"top1": 80.6, "top5": 95.8}},
                       notes=_SELF_PER_CROSS_NOTE.format(alt=6)
                       + " TRAIN_INFERENCE.md links the file as Datacomp_L14_Objaverse.pt."),
    ),
    "vitlensL": ModelConfig(
        lens=_l14_lens(tied=True), text=_L14_TEXT, preprocess=_ULIP_PRE,
        card=ModelCard(name="vitlensL", description="The one-stop multimodal ViT-Lens-L (its point-cloud lens).",
                       clip_model="ViT-L-14", clip_pretrained="datacomp_xl_s13b_b90k", source="hf",
                       hf_repo=HF_REPO, hf_filename="vitlensL.pt", layout="vitlens",
                       published={"modelnet40": {"top1": 80.6}},
                       notes="No logit scale is stored; the official examples use 100 · cosine."),
    ),
    "vitlens-bigg14-openshape": ModelConfig(
        lens=_bigg_lens(depth=4, skip=16), text=_BIGG_TEXT, preprocess=_OPENSHAPE_PRE,
        card=ModelCard(name="vitlens-bigg14-openshape", description="ViT-Lens-G on all OpenShape triplets "
                       "(first 16 bigG blocks skipped).", clip_model="ViT-bigG-14", clip_pretrained="laion2b_s39b_b160k",
                       source="hf", hf_repo=HF_REPO, hf_filename="bigG14_sk16_openshape_all.pt", layout="openshape",
                       published={"modelnet40": {"top1": 87.6, "top3": 96.6, "top5": 98.4},
                                  "objaverse_lvis": {"top1": 52.0, "top3": 73.3, "top5": 79.9},
                                  "scanobjectnn": {"top1": 60.1, "top3": 81.0, "top5": 90.3}},
                       notes=_SELF_PER_CROSS_NOTE.format(alt=4)
                       + " The text tower comes from the open_clip tag, not the checkpoint."),
    ),
    "vitlens-bigg14-openshape-nolvis": ModelConfig(
        lens=_bigg_lens(depth=2, skip=0), text=_BIGG_TEXT, preprocess=_OPENSHAPE_PRE,
        card=ModelCard(name="vitlens-bigg14-openshape-nolvis", description="ViT-Lens-G on OpenShape triplets "
                       "without Objaverse-LVIS.", clip_model="ViT-bigG-14", clip_pretrained="laion2b_s39b_b160k",
                       source="hf", hf_repo=HF_REPO, hf_filename="bigG14_openshape_nolvis.pt", layout="openshape",
                       published={"modelnet40": {"top1": 86.8, "top3": 96.8, "top5": 97.8},
                                  "objaverse_lvis": {"top1": 50.1, "top3": 71.3, "top5": 78.1},
                                  "scanobjectnn": {"top1": 59.8, "top3": 79.3, "top5": 87.7}},
                       notes="The official README evaluates with self_per_cross_attn=4 and weight tying, "
                             "TRAIN_INFERENCE.md with 1 and no tying; this spec follows the latter."),
    ),
    "vitlens-eva-g14-qa": ModelConfig(
        lens=LensConfig(
            tokenizer="pointbert", npoints=8192, in_channels=3, num_group=512, group_size=32, encoder_dims=256,
            trans_dim=384,
            perceiver=PerceiverConfig(input_chan=384, depth=6, num_latents=256, latent_dim=1408, latent_heads=16,
                                      latent_dim_head=88, cross_heads=1, cross_dim_head=88, self_per_cross_attn=1),
            vit=VisionConfig(width=1408, layers=39, heads=16, mlp_ratio=4.3637, embed_dim=1408)),
        preprocess=_ULIP_PRE,
        card=ModelCard(name="vitlens-eva-g14-qa", description="3D lens for InstructBLIP's EVA ViT-g/14 "
                       "(tokenizer + Perceiver only; used by 3D question answering).", clip_model="eva_vit_g",
                       source="hf", hf_repo=HF_REPO, hf_filename="eva_g14_objaverse.pt", layout="eva_lens",
                       notes="Only keys under visual.visual_adapter / visual.perceiver belong to the lens."),
    ),
}


def list_models() -> list[str]:
    return list(_SPECS)


def get_spec(name: str) -> ModelConfig:
    try:
        return _SPECS[name]
    except KeyError:
        raise ConfigError(f"unknown model '{name}' (known: {', '.join(_SPECS)})") from None


def spec_for_filename(filename: str) -> ModelConfig | None:
    """The spec whose released file has this name (case-insensitive), if any."""
    lowered = filename.lower()
    for spec in _SPECS.values():
        if spec.card.hf_filename and spec.card.hf_filename.lower() == lowered:
            return spec
    return None


def with_card(spec: ModelConfig, **changes) -> ModelConfig:
    return replace(spec, card=replace(spec.card, **changes))
