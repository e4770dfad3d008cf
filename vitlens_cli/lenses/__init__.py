"""Modules that turn a modality into tokens a CLIP ViT can read, and the registry of lens kinds."""
from .patch import ASTTokenizer, DepthTokenizer, ImagePatchEmbed, PatchEmbed1D
from .perceiver import PerceiverResampler
from .pnsa import PNSATokenizer
from .point_bert import PointBertTokenizer
from .registry import (LENSES, AudioASTParams, DepthPatchParams, EEGPatchParams, ImagePatchParams, LensKind,
                       PNSAParams, PointBertParams, get_lens, register_lens)

__all__ = ["ASTTokenizer", "AudioASTParams", "DepthPatchParams", "DepthTokenizer", "EEGPatchParams",
           "ImagePatchEmbed", "ImagePatchParams", "LENSES", "LensKind", "PNSAParams", "PNSATokenizer",
           "PatchEmbed1D", "PerceiverResampler", "PointBertParams", "PointBertTokenizer", "get_lens",
           "register_lens"]
