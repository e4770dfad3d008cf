"""The modality registry: lookup by name and by file, contracts, lens kinds, errors."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from vitlens_cli.errors import VitlensError
from vitlens_cli.modalities import (Modality, ModalityError, ModalityFileError, get_modality, list_modalities,
                                    modality_for_path, modality_names, register)
from vitlens_cli.modalities import base

LENSES = {"3d": "point_bert", "depth": "depth_patch", "audio": "audio_ast", "tactile": "tactile_vit",
          "eeg": "eeg_patch1d", "image": "image"}


def test_every_builtin_modality_is_registered_with_its_lens():
    assert modality_names()[:6] == ("3d", "depth", "audio", "tactile", "eeg", "image")
    for modality in list_modalities():
        assert modality.lens == LENSES[modality.name]
        assert isinstance(modality.default_contract(), modality.contract_type)
    assert get_modality("3d").lens_kinds == ("point_bert", "pnsa")
    assert get_modality(" Audio ") is get_modality("audio")


def test_unknown_modality():
    with pytest.raises(ModalityError, match="unknown modality 'smell' \\(known: 3d, depth, audio"):
        get_modality("smell")


@pytest.mark.parametrize("name, modality", [
    ("dog.flac", "audio"), ("x.WAV", "audio"), ("a.mp3", "audio"), ("a.ogg", "audio"),
    ("chair.ply", "3d"), ("m.off", "3d"), ("s.h5", "3d"), ("c.txt", "3d"), ("scene.glb", "3d"),
    ("render.exr", "depth"),
])
def test_unambiguous_extensions(name, modality):
    assert modality_for_path(name).name == modality


@pytest.mark.parametrize("name, candidates", [
    ("a.npy", "3d, depth or eeg"), ("a.npz", "3d, depth or eeg"), ("a.png", "depth, tactile or image"),
    ("a.jpg", "tactile or image"), ("a.pt", "depth or eeg"),
])
def test_ambiguous_extensions_need_the_modality(name, candidates):
    with pytest.raises(ModalityFileError) as info:
        modality_for_path(name)
    assert str(info.value) == f"{name}: '{Path(name).suffix}' could be {candidates}: name the modality (--modality)"


def test_explicit_modality():
    assert modality_for_path("a.npy", "eeg").name == "eeg"
    assert modality_for_path("a.PNG", "depth").name == "depth"
    with pytest.raises(ModalityFileError, match=r"^a\.flac: eeg files are \.npy \.npz \.pt, not '\.flac'$"):
        modality_for_path("a.flac", "eeg")
    with pytest.raises(ModalityFileError, match=r"^notes\.doc: unsupported file type '\.doc'"):
        modality_for_path("notes.doc")
    with pytest.raises(ModalityFileError, match=r"^README: unsupported file type 'README'"):
        modality_for_path("README")


def test_errors_are_project_errors_with_path_and_reason(tmp_path):
    assert issubclass(ModalityFileError, VitlensError) and issubclass(ModalityError, VitlensError)
    missing = tmp_path / "nope.flac"
    with pytest.raises(ModalityFileError) as info:
        get_modality("audio").read(missing)
    assert (info.value.path, info.value.subject, info.value.reason) == (missing, missing, "no such file")
    assert str(info.value) == f"{missing}: no such file"


def test_a_wrong_contract_is_refused():
    from vitlens_cli.modalities.eeg import EEGContract

    with pytest.raises(ModalityError, match="audio needs a AudioContract contract, got EEGContract"):
        get_modality("audio").preprocess(None, EEGContract())


@dataclass(frozen=True)
class _Contract:
    scale: float = 2.0


def test_a_plugin_registers_and_prepare_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))

    def preprocessor(raw: str, contract: _Contract) -> torch.Tensor:
        if not raw:
            raise ModalityError("no readings")
        return torch.tensor([float(v) * contract.scale for v in raw.split()])

    plugin = register(Modality(name="thermal", lens="thermal_patch", contract=_Contract, extensions=(".therm",),
                               ambiguous_extensions=(), reader=lambda p: p.read_text().strip(),
                               preprocessor=preprocessor))
    assert get_modality("thermal") is plugin and "thermal" in modality_names()
    good, empty = tmp_path / "a.therm", tmp_path / "b.therm"
    good.write_text("1 2")
    empty.write_text(" ")
    assert modality_for_path(good) is plugin
    assert plugin.prepare(good).tolist() == [2.0, 4.0]
    with pytest.raises(ModalityFileError, match=r"b\.therm: no readings$"):
        plugin.prepare(empty)
    with pytest.raises(ModalityError, match="already registered"):
        register(plugin)


def test_contracts_round_trip_through_json():
    import json

    for modality in list_modalities():
        contract = modality.default_contract()
        data = json.loads(json.dumps(modality.contract_to_dict(contract)))
        assert modality.contract_from_dict(data) == contract, modality.name
    image = get_modality("image")
    changed = image.contract_from_dict({"size": 336, "mean": [0.5, 0.5, 0.5]})
    assert (changed.size, changed.mean, changed.std) == (336, (0.5, 0.5, 0.5), image.default_contract().std)
    assert hash(changed)  # tuples again: contracts stay hashable
    with pytest.raises(ModalityError, match="audio preprocessing has no field\\(s\\) clips \\(known: clip_duration"):
        get_modality("audio").contract_from_dict({"clips": 3})
