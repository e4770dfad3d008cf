"""EEG: the official time crop [20, 460) and end-point-preserving interpolation to 512 samples."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vitlens_cli.modalities import ModalityError, ModalityFileError, get_modality
from vitlens_cli.modalities.eeg import EEGContract, preprocess, read

from .conftest import garbage_file, truncated_copy


def contract_of(case) -> EEGContract:
    proc = case.config["processor"]
    return EEGContract(time_low=proc["time_crop"]["time_low"], time_high=proc["time_crop"]["time_high"],
                       length=proc["interpolate"]["data_len"])


def test_defaults_are_the_official_processor(load_case):
    assert contract_of(load_case("eeg_preprocess")) == EEGContract()


def test_preprocess_matches_the_official_processor(load_case, tmp_path):
    case = load_case("eeg_preprocess")
    contract, t = contract_of(case), case.tensors
    eeg = get_modality("eeg")
    for i, info in enumerate(case.inputs):
        raw = t[f"eeg_raw_{i}"]
        assert raw.shape == (info["channels"], info["samples"])
        path = tmp_path / f"trial{i}.pt"
        torch.save(torch.from_numpy(raw), path)  # the one-stop API's file format
        got = eeg.preprocess(eeg.read(path), contract)
        assert got.shape == t[f"eeg_{i}"].shape and got.dtype == torch.float32
        assert np.abs(got.numpy() - t[f"eeg_{i}"]).max() <= case.atol("eeg"), info["name"]


def test_against_scipy_interp1d():
    """The official code calls scipy's interp1d: ours repeats its arithmetic, so the results are equal.
    Short trials keep T - 20 samples."""
    from scipy.interpolate import interp1d

    for samples in (22, 455, 460, 600):
        x = np.random.default_rng(samples).standard_normal((128, samples)).astype(np.float32)
        kept = x[:, 20:460]
        expected = interp1d(np.linspace(0, 1, kept.shape[1]), kept, kind="linear", axis=-1)(np.linspace(0, 1, 512))
        got = preprocess(torch.from_numpy(x), EEGContract())
        np.testing.assert_array_equal(got.numpy(), expected.astype(np.float32))
        assert got[:, 0].numpy().tolist() == x[:, 20].tolist()


def test_dtype_is_cast_first():
    x = torch.randn(128, 500, dtype=torch.float64)
    assert torch.equal(preprocess(x, EEGContract()), preprocess(x.float(), EEGContract()))
    assert preprocess(torch.ones(128, 500, dtype=torch.int16), EEGContract()).dtype == torch.float32


def test_readers(tmp_path):
    x = np.random.default_rng(0).standard_normal((128, 480)).astype(np.float32)
    np.save(tmp_path / "a.npy", x)
    np.savez(tmp_path / "b.npz", eeg=x, label=np.array(3))
    np.savez(tmp_path / "c.npz", x)
    torch.save({"eeg": torch.from_numpy(x), "label": 3, "subject": 1}, tmp_path / "d.pt")
    for name in ("a.npy", "b.npz", "c.npz", "d.pt"):
        assert torch.equal(read(tmp_path / name), torch.from_numpy(x)), name


def test_wrong_channel_count_names_the_file(tmp_path):
    path = tmp_path / "transposed.npy"
    np.save(path, np.zeros((500, 128), np.float32))
    with pytest.raises(ModalityFileError, match=r"transposed\.npy: EEG has 500 channels, the model expects 128 "
                                                r"\(a \(time, channels\) array must be transposed\)$"):
        get_modality("eeg").prepare(path)
    with pytest.raises(ModalityError, match=r"^EEG has 64 channels, the model expects 128$"):
        preprocess(np.zeros((64, 500), np.float32), EEGContract())
    with pytest.raises(ModalityError, match="nothing left after the crop"):
        preprocess(torch.zeros(128, 21), EEGContract())


@pytest.mark.parametrize("make", ["garbage_npy", "garbage_pt", "truncated_npy", "truncated_pt", "npy_1d",
                                  "npz_many", "pt_nan", "npy_object", "npy_text"])
def test_bad_eeg_files_name_the_file(tmp_path, make):
    x = np.random.default_rng(1).standard_normal((128, 500)).astype(np.float32)
    if make.startswith("garbage"):
        path = garbage_file(tmp_path, "x." + make.split("_")[1])
    elif make.startswith("truncated"):
        full = tmp_path / "full" / f"x.{make.split('_')[1]}"
        full.parent.mkdir()
        np.save(full, x) if full.suffix == ".npy" else torch.save(torch.from_numpy(x), full)
        path = truncated_copy(full, tmp_path, keep=0.5)
    elif make == "npy_1d":
        path = tmp_path / "x.npy"
        np.save(path, x[0])
    elif make == "npz_many":
        path = tmp_path / "x.npz"
        np.savez(path, a=x, b=x)
    elif make == "pt_nan":
        path = tmp_path / "x.pt"
        x[3, 7] = np.nan
        torch.save(torch.from_numpy(x), path)
    elif make == "npy_object":
        path = tmp_path / "x.npy"
        np.save(path, np.array([{"eeg": 1}], dtype=object), allow_pickle=True)
    else:
        path = tmp_path / "x.npy"
        np.save(path, np.array([["a", "b"]]))
    with pytest.raises(ModalityFileError) as info:
        get_modality("eeg").prepare(path)
    assert "\n" not in str(info.value) and str(info.value).startswith(f"{path}: ")
