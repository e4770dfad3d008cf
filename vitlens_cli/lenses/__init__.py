"""Modules that turn a modality into tokens a CLIP ViT can read."""
from .perceiver import PerceiverResampler
from .pnsa import PNSATokenizer
from .point_bert import PointBertTokenizer

__all__ = ["PNSATokenizer", "PerceiverResampler", "PointBertTokenizer"]
