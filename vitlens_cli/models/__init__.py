"""Lens towers, the ViTLens model, the zoo and checkpoint loading."""
from .config import (LensConfig, ModelCard, ModelConfig, PerceiverConfig, Preprocess, TextConfig, TowerConfig,
                     VisionConfig)
from .factory import build_model, load_lens, load_model, read_config
from .preprocess import prepare_points
from .vitlens import Lens, LensTower, ViTLens
from .zoo import get_spec, list_models, model_modalities

__all__ = ["Lens", "LensConfig", "LensTower", "ModelCard", "ModelConfig", "PerceiverConfig", "Preprocess",
           "TextConfig", "TowerConfig", "ViTLens", "VisionConfig", "build_model", "get_spec", "list_models",
           "load_lens", "load_model", "model_modalities", "prepare_points", "read_config"]
