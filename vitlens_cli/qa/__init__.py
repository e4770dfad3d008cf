"""The InstructBLIP bridge: a 3D lens in place of InstructBLIP's patch embeddings (zero-shot 3D QA).

Importing this package does not import ``transformers``; :mod:`vitlens_cli.qa.answer` does.
"""
from .lens import QA_SPEC, PointLens, PointLensEmbeddings, load_lens, load_lens_config, load_lens_full

__all__ = ["QA_SPEC", "PointLens", "PointLensEmbeddings", "load_lens", "load_lens_config", "load_lens_full"]
