"""Depth: PNG → disparity → the official eval processor, against the official outputs."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vitlens_cli.modalities import ModalityFileError, get_modality
from vitlens_cli.modalities.depth import (NYU_FOCAL_LENGTH, SENSOR_BASELINES, DepthContract, DepthMap, preprocess,
                                          read, to_disparity, to_metres)
from vitlens_cli.modalities.base import ModalityError

from .conftest import garbage_file, truncated_copy


def contract_of(case) -> DepthContract:
    rule, proc = case.config["disparity_rule"], case.config["processor"]
    return DepthContract(
        baseline=rule["baseline_m"], focal_length=rule["focal_length_px"], depth_scale=rule["depth_scale"],
        min_depth=rule["min_depth"], max_depth=rule["max_depth"],
        min_disparity=proc["DepthNorm"]["min_depth"], max_disparity=proc["DepthNorm"]["max_depth"],
        resize=proc["Resize"]["size"], crop=proc["CenterCrop"]["size"][0],
        mean=proc["Normalize"]["mean"], std=proc["Normalize"]["std"])


def test_defaults_are_the_official_nyu_settings(load_case):
    case = load_case("depth_preprocess")
    assert contract_of(case) == DepthContract()
    assert case.config["processor"]["DepthNorm"]["clamp_max_before_scale"] is True
    assert case.config["processor"]["Resize"]["antialias"] is False


def test_preprocess_matches_the_official_processor(load_case, fixtures):
    case = load_case("depth_preprocess")
    contract, t = contract_of(case), case.tensors
    for i, info in enumerate(case.inputs):
        raw = DepthMap(t[f"depth_raw_{i}"], "samples")
        np.testing.assert_array_equal(to_disparity(raw, contract), t[f"disparity_{i}"])
        got = preprocess(raw, contract)
        assert got.dtype == torch.float32 and got.shape == t[f"depth_{i}"].shape
        assert np.abs(got.numpy() - t[f"depth_{i}"]).max() <= case.atol("depth"), info["name"]
        source = case.source_file(fixtures, i)
        if source is not None:  # the same through our PNG reader
            read_back = read(source)
            assert read_back.kind == "samples"
            np.testing.assert_array_equal(read_back.values, t[f"depth_raw_{i}"])


def test_the_resize_and_crop_geometry_is_the_recorded_one(load_case):
    from vitlens_cli.modalities._imaging import resized_size

    case = load_case("depth_preprocess")
    for geometry in case.config["geometry"]:
        h, w = geometry["input_hw"]
        rh, rw = resized_size(h, w, 224)
        assert [rh, rw] == geometry["resized_hw"]
        assert (int(round((rh - 224) / 2)), int(round((rw - 224) / 2))) == (geometry["crop_top"],
                                                                           geometry["crop_left"])


def test_real_depth_pngs_prepare(fixtures):
    depth = get_modality("depth")
    for path in sorted((fixtures / "depth").glob("*_depth.png")):
        x = depth.prepare(path)
        assert x.shape == (1, 224, 224) and torch.isfinite(x).all()
        # holes (raw 0) are the brightest pixels: clamp(3891 → 75) / 75 → normalised 32.5 inside hole regions
        hole = (1.0 - 0.0418) / 0.0295
        assert ((x - hole).abs() < 1e-3).sum() > 100


def test_holes_become_the_brightest_value():
    raw = np.zeros((224, 224), np.uint16)
    raw[:, 100:] = 8000
    x = preprocess(DepthMap(raw, "samples"), DepthContract())
    expected_hole = (1.0 - 0.0418) / 0.0295
    far = (0.075 * 518.857901 / 8.0 / 75 - 0.0418) / 0.0295
    assert x[0, :, :90].numpy() == pytest.approx(expected_hole, abs=1e-4)
    assert x[0, :, 110:].numpy() == pytest.approx(far, abs=1e-4)


def test_one_stop_224_disparity_is_the_closed_form():
    """The one-stop DepthProcessorEval: a 224×224 disparity is only normalised (README §3.2)."""
    disparity = torch.rand(224, 224, generator=torch.Generator().manual_seed(0)) * 100
    got = preprocess(DepthMap(disparity.numpy(), "disparity"), DepthContract())
    expected = (disparity.clamp(0.01, 75) / 75 - 0.0418) / 0.0295
    assert torch.equal(got[0], expected)


def test_metres_and_disparity_files_agree_with_the_png(tmp_path, fixtures):
    png = fixtures / "depth" / "NYU0001_depth.png"
    depth = get_modality("depth")
    raw = read(png)
    metres = to_metres(raw, DepthContract())
    np.save(tmp_path / "d.npy", metres)
    np.savez(tmp_path / "d.npz", depth=metres, other=np.zeros(3))
    torch.save(torch.from_numpy(to_disparity(raw, DepthContract())), tmp_path / "d_disparity.pt")
    reference = depth.prepare(png)
    for name in ("d.npy", "d.npz", "d_disparity.pt"):
        assert torch.equal(depth.prepare(tmp_path / name), reference), name
    assert read(tmp_path / "d_disparity.pt").kind == "disparity"


def test_sunrgbd_bit_rotation_recovers_millimetres():
    millimetres = np.array([[1000, 2500]], np.uint16)
    stored = ((millimetres << 3) | (millimetres >> 13)).astype(np.uint16)  # the SUN RGB-D toolbox writes this
    rotated = to_metres(DepthMap(stored, "samples"), DepthContract(sunrgbd_bit_rotation=True))
    np.testing.assert_array_equal(rotated, np.array([[1.0, 2.5]], np.float32))
    as_is = to_metres(DepthMap(stored, "samples"), DepthContract())
    np.testing.assert_allclose(as_is, [[8.0, 20.0]], rtol=1e-6)


def test_sensor_presets():
    contract = DepthContract.for_sensor("realsense", focal_length=570.3)
    assert (contract.baseline, contract.focal_length) == (SENSOR_BASELINES["realsense"], 570.3) == (0.095, 570.3)
    assert DepthContract().focal_length == NYU_FOCAL_LENGTH
    with pytest.raises(ModalityError, match="unknown depth sensor 'kinect'"):
        DepthContract.for_sensor("kinect", focal_length=500.0)
    disparity = to_disparity(DepthMap(np.full((2, 2), 1000, np.uint16), "samples"), contract)
    assert disparity[0, 0] == pytest.approx(0.095 * 570.3)


def _assert_one_line(exc: ModalityFileError, path) -> None:
    message = str(exc)
    assert "\n" not in message and message.startswith(f"{path}: ")


@pytest.mark.parametrize("make", ["truncated", "garbage", "eight_bit", "npy_3d", "npy_nan", "pt_string", "empty"])
def test_bad_depth_files_name_the_file(tmp_path, fixtures, make):
    if make == "truncated":
        path = truncated_copy(fixtures / "depth" / "NYU0001_depth.png", tmp_path)
    elif make == "garbage":
        path = garbage_file(tmp_path, "x.png")
    elif make == "eight_bit":
        path = tmp_path / "grey.png"
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(path)
    elif make == "npy_3d":
        path = tmp_path / "x.npy"
        np.save(path, np.ones((2, 3, 4), np.float32))
    elif make == "npy_nan":
        path = tmp_path / "x.npy"
        np.save(path, np.full((4, 4), np.nan, np.float32))
    elif make == "pt_string":
        path = tmp_path / "x.pt"
        torch.save({"a": 1}, path)
    else:
        path = tmp_path / "x.png"
        path.write_bytes(b"")
    with pytest.raises(ModalityFileError) as info:
        get_modality("depth").prepare(path)
    _assert_one_line(info.value, path)


def _write_exr(path, channels: dict, compression: str = "ZIP_COMPRESSION") -> None:
    OpenEXR = pytest.importorskip("OpenEXR")
    header = {"compression": getattr(OpenEXR, compression), "type": OpenEXR.scanlineimage}
    with OpenEXR.File(header, channels) as exr:
        exr.write(str(path))


@pytest.mark.parametrize("compression", ["NO_COMPRESSION", "ZIP_COMPRESSION", "PIZ_COMPRESSION"])
def test_exr_depth_in_metres(tmp_path, compression):
    metres = np.random.default_rng(0).uniform(0.4, 8.0, (240, 320)).astype(np.float32)
    _write_exr(tmp_path / "d.exr", {"Z": metres}, compression)
    np.save(tmp_path / "d.npy", metres)
    depth = get_modality("depth")
    assert depth.read(tmp_path / "d.exr").kind == "metres"
    assert torch.equal(depth.prepare(tmp_path / "d.exr"), depth.prepare(tmp_path / "d.npy"))


def test_exr_channel_choice(tmp_path):
    plane = np.full((8, 8), 2.0, np.float32)
    _write_exr(tmp_path / "one.exr", {"distance": plane})
    _write_exr(tmp_path / "rgb.exr", {"RGB": np.zeros((8, 8, 3), np.float32)})
    assert np.array_equal(read(tmp_path / "one.exr").values, plane)
    with pytest.raises(ModalityFileError, match=r"rgb\.exr: no depth channel among RGB"):
        read(tmp_path / "rgb.exr")


def test_bad_exr_is_one_line_and_quiet(tmp_path, capfd):
    (tmp_path / "full").mkdir()
    _write_exr(tmp_path / "full" / "d.exr", {"Z": np.ones((64, 64), np.float32)})
    path = truncated_copy(tmp_path / "full" / "d.exr", tmp_path, keep=0.6)
    with pytest.raises(ModalityFileError) as info:
        get_modality("depth").prepare(path)
    _assert_one_line(info.value, path)
    assert capfd.readouterr() == ("", "")  # OpenEXR's own warnings do not reach the terminal


def test_exr_without_the_bindings(tmp_path, monkeypatch):
    path = tmp_path / "d.exr"
    path.write_bytes(b"v/1\x01" + bytes(100))
    monkeypatch.setitem(__import__("sys").modules, "OpenEXR", None)
    with pytest.raises(ModalityFileError, match=r"d\.exr: reading EXR needs the OpenEXR bindings: pip install openexr"):
        read(path)
