"""Image: open_clip's eval transform for the CLIP image tower."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from vitlens_cli.modalities import ModalityError, ModalityFileError, get_modality
from vitlens_cli.modalities.image import ImageContract, preprocess

from .conftest import garbage_file, truncated_copy


def _plain_clip_eval(image: Image.Image, size: int, mean, std) -> torch.Tensor:
    """CLIP's published eval preprocessing: PIL bicubic resize of the shorter side, centre crop, normalise."""
    return transforms.Compose([
        transforms.Resize(size, interpolation=transforms.InterpolationMode.BICUBIC),
        transforms.CenterCrop(size), transforms.ToTensor(), transforms.Normalize(mean, std),
    ])(image)


@pytest.mark.parametrize("name", ["dog.jpg", "beach.jpg"])
def test_real_photos_match_clip_eval_preprocessing(fixtures, name):
    path = fixtures / "images" / name
    x = get_modality("image").prepare(path)
    contract = ImageContract()
    with Image.open(path) as image:
        expected = _plain_clip_eval(image.convert("RGB"), contract.size, contract.mean, contract.std)
    assert x.shape == (3, 224, 224)
    assert torch.allclose(x, expected, atol=1e-6)


def test_contract_fields_reach_open_clip():
    rgb = np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    contract = ImageContract(size=64, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    x = preprocess(rgb, contract)
    expected = _plain_clip_eval(Image.fromarray(rgb), 64, contract.mean, contract.std)
    assert x.shape == (3, 64, 64) and torch.allclose(x, expected, atol=1e-6)
    squash = preprocess(rgb, ImageContract(size=64, resize_mode="squash"))
    assert not torch.allclose(squash, preprocess(rgb, ImageContract(size=64)))


def test_bad_inputs(tmp_path, fixtures):
    with pytest.raises(ModalityError, match=r"expected \(H, W, 3\) uint8"):
        preprocess(np.zeros((4, 4), np.uint8), ImageContract())
    for path in (truncated_copy(fixtures / "images" / "dog.jpg", tmp_path), garbage_file(tmp_path, "x.webp")):
        with pytest.raises(ModalityFileError) as info:
            get_modality("image").prepare(path)
        assert "\n" not in str(info.value) and str(info.value).startswith(f"{path}: ")
