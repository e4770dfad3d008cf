"""Modality plug-ins: file readers, preprocessing contracts and lens kinds, one module per modality.

    from vitlens_cli.modalities import get_modality
    audio = get_modality("audio")
    x = audio.preprocess(audio.read("dog.flac"), audio.default_contract())   # (3, 512, 128)
"""
from ._files import load_arrays
from .base import (Modality, ModalityError, ModalityFileError, get_modality, list_modalities, modality_for_path,
                   modality_names, register)

__all__ = ["Modality", "ModalityError", "ModalityFileError", "get_modality", "list_modalities", "load_arrays",
           "modality_for_path", "modality_names", "register"]
