"""examples/make_inputs.py writes one valid input per modality, identical on every run."""
from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from vitlens_cli.modalities import get_modality, modality_for_path
from vitlens_cli.modalities.depth import DepthContract, to_metres

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "make_inputs.py"
FILES = {"sphere_depth.png": "depth", "whistle.flac": "audio", "drums.wav": "audio", "eeg_trial.npy": "eeg",
         "gel_press.png": "tactile", "gradient.jpg": "image"}


@pytest.fixture(scope="module")
def make_inputs():
    spec = importlib.util.spec_from_file_location("make_inputs", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def made(make_inputs, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("inputs")
    make_inputs.main(str(folder))
    return folder


def test_every_file_prepares(made):
    tmp_path = made
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(FILES)
    shapes = {"depth": (1, 224, 224), "audio": (3, 512, 128), "eeg": (128, 512), "tactile": (3, 224, 224),
              "image": (3, 224, 224)}
    for name, modality in FILES.items():
        if modality == "audio":
            assert modality_for_path(tmp_path / name).name == "audio"
        x = get_modality(modality).prepare(tmp_path / name)
        assert tuple(x.shape) == shapes[modality] and bool(x.isfinite().all()), name
        assert float(x.std()) > 0.1, name  # not a flat input


def test_depth_is_sunrgbd_encoded(made):
    raw = get_modality("depth").read(made / "sphere_depth.png")
    metres = to_metres(raw, DepthContract(sunrgbd_bit_rotation=True))
    seen = metres[metres > 0]
    # the sphere's nearest point is ~1.25 m away, the wall 3 m (depth along the optical axis)
    assert seen.min() == pytest.approx(1.25, abs=0.05) and seen.max() == pytest.approx(3.0, abs=0.02)
    assert (raw.values == 0).sum() > 100  # sensor holes along the silhouette
    assert np.median(to_metres(raw, DepthContract())[metres > 0] / seen) == pytest.approx(8.0, rel=0.01)


def test_reproducible(make_inputs, made, tmp_path):
    make_inputs.main(str(tmp_path))
    for name in FILES:
        assert hashlib.sha256((made / name).read_bytes()).digest() == \
            hashlib.sha256((tmp_path / name).read_bytes()).digest(), name
