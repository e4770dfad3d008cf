"""Tactile: the official tactile processor (ToTensor, then a bicubic resize of the float tensor)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vitlens_cli.modalities import ModalityFileError, get_modality
from vitlens_cli.modalities.tactile import TactileContract, preprocess, read, to_tensor

from .conftest import garbage_file, truncated_copy


def contract_of(case) -> TactileContract:
    proc = case.config["processor"]
    return TactileContract(resize=proc["Resize"]["size"], crop=proc["CenterCrop"]["size"][0],
                           mean=tuple(proc["Normalize"]["mean"]), std=tuple(proc["Normalize"]["std"]))


def test_defaults_are_the_official_processor(load_case):
    case = load_case("tactile_preprocess")
    assert contract_of(case) == TactileContract()
    assert case.config["processor"]["order"] == ["ToTensor", "Resize", "CenterCrop", "Normalize"]


def test_preprocess_matches_the_official_processor(load_case, fixtures):
    case = load_case("tactile_preprocess")
    contract, t = contract_of(case), case.tensors
    for i, info in enumerate(case.inputs):
        source = case.source_file(fixtures, i)
        if source is not None:
            np.testing.assert_array_equal(read(source), t[f"image_u8_{i}"])
        got = preprocess(t[f"image_u8_{i}"], contract)
        assert got.shape == t[f"tactile_{i}"].shape and got.dtype == torch.float32
        assert np.abs(got.numpy() - t[f"tactile_{i}"]).max() <= case.atol("tactile"), info["name"]


def test_crop_ties_round_half_to_even(load_case):
    from vitlens_cli.modalities._imaging import resized_size

    case = load_case("tactile_preprocess")
    for geometry in case.config["geometry"]:
        rh, rw = resized_size(*geometry["input_hw"], 256)
        assert [rh, rw] == geometry["resized_hw"]
        assert (int(round((rh - 224) / 2)), int(round((rw - 224) / 2))) == (geometry["crop_top"],
                                                                           geometry["crop_left"])


def test_the_float_tensor_is_resized_not_the_pil_image():
    """Bicubic overshoot survives (values outside [0, 1] before normalising): the tensor path."""
    rgb = np.zeros((300, 300, 3), np.uint8)
    rgb[:, 150:] = 255
    x = preprocess(rgb, TactileContract())
    mean, std = torch.tensor(TactileContract().mean), torch.tensor(TactileContract().std)
    pixels = x * std.view(3, 1, 1) + mean.view(3, 1, 1)
    assert pixels.max() > 1.0 + 1e-3 and pixels.min() < -1e-3


def test_upscaling_uses_the_same_formula():
    rgb = np.random.default_rng(0).integers(0, 256, (200, 240, 3), dtype=np.uint8)
    x = preprocess(rgb, TactileContract())
    up = torch.nn.functional.interpolate(to_tensor(rgb)[None], size=(256, 307), mode="bicubic",
                                         align_corners=False)[0][:, 16:240, 42:266]
    mean, std = torch.tensor(TactileContract().mean), torch.tensor(TactileContract().std)
    assert torch.allclose(x, (up - mean.view(3, 1, 1)) / std.view(3, 1, 1), atol=1e-6)


def test_real_jpegs_prepare(fixtures):
    tactile = get_modality("tactile")
    for path in [*sorted((fixtures / "images").glob("*.jpg")), fixtures / "depth" / "NYU0002_rgb.jpg"]:
        x = tactile.prepare(path)
        assert x.shape == (3, 224, 224) and torch.isfinite(x).all()


@pytest.mark.parametrize("make", ["truncated", "garbage", "empty"])
def test_bad_frames_name_the_file(tmp_path, fixtures, make):
    if make == "truncated":
        path = truncated_copy(fixtures / "images" / "beach.jpg", tmp_path)
    elif make == "garbage":
        path = garbage_file(tmp_path, "x.jpg")
    else:
        path = tmp_path / "x.png"
        path.write_bytes(b"")
    with pytest.raises(ModalityFileError) as info:
        get_modality("tactile").prepare(path)
    assert "\n" not in str(info.value) and str(info.value).startswith(f"{path}: ")
