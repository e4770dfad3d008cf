"""Build the model a recipe trains: lens tower on CLIP ViT weights, frozen towers, the trainable set."""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from ..errors import ConfigError
from ..models import ViTLens, build_model
from ..models.checkpoints import TEXT_ROOTS
from ..models.config import POINT_MODALITY, ModelConfig
from ..models.pos_embed import resize_pos_embed
from ..precision import fold_attention_inputs
from .recipe import Recipe, model_config


@dataclass
class TrainingModel:
    model: ViTLens
    image_tower: nn.Module | None      # frozen CLIP image tower (None: no image features to encode)
    image_transform: object | None     # its preprocessing (PIL image -> tensor)
    trainable: list[str]               # parameter names of ``model`` that train


def load_clip(recipe: Recipe):
    """``(clip, preprocess)`` from open_clip (hub cache; offline mode honoured)."""
    import open_clip

    if not recipe.model.clip_model:
        raise ConfigError("model.clip_pretrained needs model.clip_model")
    # clip_pretrained None: the architecture's random init (from-scratch runs and offline tests).
    clip, _, preprocess = open_clip.create_model_and_transforms(recipe.model.clip_model,
                                                                pretrained=recipe.model.clip_pretrained)
    return clip, preprocess


def init_from_clip(model: ViTLens, clip: nn.Module, modality: str = POINT_MODALITY) -> None:
    """Copy CLIP's visual ViT (kept blocks, norms, proj, cls, resized pos; the stem for a ``conv1`` lens)
    into the ``modality`` tower of ``model``, and CLIP's text tower."""
    visual = clip.visual
    tower = model.tower(modality)
    vit = tower.cfg.vit
    skip = vit.skip_first_n_layers
    blocks = visual.transformer.resblocks
    if len(blocks) != vit.layers_before_skip:
        raise ConfigError(f"CLIP ViT has {len(blocks)} blocks, the lens expects {vit.layers_before_skip}")
    with torch.no_grad():
        for i, block in enumerate(tower.transformer.resblocks):
            block.load_state_dict(blocks[i + skip].state_dict())
        for name in ("ln_pre", "ln_post"):
            getattr(tower, name).load_state_dict(getattr(visual, name).state_dict())
        tower.class_embedding.copy_(visual.class_embedding)
        tower.proj.copy_(visual.proj)
        tower.positional_embedding.copy_(resize_pos_embed(visual.positional_embedding, tower.num_tokens))
        if tower.lens_attr == "conv1":
            # The tactile lens is CLIP's own image stem, fine-tuned from the CLIP weights.
            tower.lens.load_state_dict(visual.conv1.state_dict())
        if model.text is not None:
            state = {k: v for k, v in clip.state_dict().items() if k.startswith(TEXT_ROOTS)}
            model.text.load_state_dict(state, strict=True)


def apply_freezing(model: ViTLens, recipe: Recipe) -> list[str]:
    """Freeze everything but the lens (and what ``model.unlock`` names); return the trainable names."""
    unlock = recipe.model.unlock
    model.requires_grad_(False)
    tower = model.tower(recipe.model.modality)
    tower.lens.requires_grad_(True)
    # A bias feeding a training-mode BatchNorm is subtracted again with the batch mean: its true
    # gradient is zero, and Adam would turn the float noise in it into full ±lr steps.
    for bias in getattr(tower.lens, "biases_before_batch_norm", list)():
        bias.requires_grad_(False)
    if tower.perceiver is not None:
        tower.perceiver.requires_grad_(True)
    tower.class_embedding.requires_grad_(unlock.cls)
    tower.positional_embedding.requires_grad_(unlock.pos)
    tower.ln_pre.requires_grad_(unlock.ln_pre)
    blocks = list(tower.transformer.resblocks)
    if unlock.first_blocks + unlock.last_blocks > len(blocks):
        raise ConfigError(f"cannot unlock {unlock.first_blocks}+{unlock.last_blocks} of {len(blocks)} ViT blocks")
    for block in blocks[:unlock.first_blocks] + (blocks[-unlock.last_blocks:] if unlock.last_blocks else []):
        block.requires_grad_(True)
    model.logit_scale.requires_grad_(unlock.logit_scale)
    return [n for n, p in model.named_parameters() if p.requires_grad]


def build_training_model(recipe: Recipe, cfg: ModelConfig | None = None, clip=None) -> TrainingModel:
    # Seeded by the recipe so every rank, and every resumed run, starts from the same weights.
    model = build_model(replace(cfg or model_config(recipe), init_seed=recipe.seed))
    image_tower = transform = None
    if recipe.model.clip_model and clip is None:
        clip, transform = load_clip(recipe)
    if clip is not None:
        init_from_clip(model, clip, recipe.model.modality)
        image_tower = fold_attention_inputs(clip.visual.eval().requires_grad_(False))
    with torch.no_grad():
        model.logit_scale.fill_(float(torch.log(torch.tensor(recipe.logit_scale_init))))
    trainable = apply_freezing(model, recipe)
    model.train()
    return TrainingModel(model, image_tower, transform, trainable)
