"""Lens towers, the ViTLens model, the zoo and checkpoint loading."""
from .config import LensConfig, ModelCard, ModelConfig, PerceiverConfig, Preprocess, TextConfig, VisionConfig
from .factory import build_model, load_model, read_config
from .preprocess import prepare_points
from .vitlens import PointLensTower, ViTLens
from .zoo import get_spec, list_models

__all__ = ["LensConfig", "ModelCard", "ModelConfig", "PerceiverConfig", "PointLensTower", "Preprocess",
           "TextConfig", "ViTLens", "VisionConfig", "build_model", "get_spec", "list_models", "load_model",
           "prepare_points", "read_config"]
