"""Official checkpoint layouts (built in tmp_path from the parity files), strict loading, our own format."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vitlens_cli.errors import CheckpointError
from vitlens_cli.models import ModelConfig, TextConfig, ViTLens, build_model, get_spec, load_model, read_config
from vitlens_cli.models.checkpoints import (CONFIG_NAME, WEIGHTS_NAME, load_official_into, load_saved,
                                            load_text_tower, read_torch_checkpoint, save_model, split_official)
from vitlens_cli.models.factory import load_official


# --------------------------------------------------------------------------- helpers
def _load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def _sub(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


@pytest.fixture(scope="module")
def parts(parity: Path):
    """Plain lens / text state dicts and reference outputs taken from the parity files."""
    untied = _load(parity / "pointbert_untied" / "checkpoint.pt")["state_dict"]
    pnsa = _load(parity / "pnsa_rgb" / "checkpoint.pt")["state_dict"]
    text = _load(parity / "zeroshot_classifier" / "checkpoint.pt")["state_dict"]
    zs_cfg = json.loads((parity / "zeroshot_classifier" / "config.json").read_text())["text_tower"]
    text_cfg = TextConfig(embed_dim=zs_cfg["embed_dim"], width=zs_cfg["width"], heads=zs_cfg["heads"],
                          layers=zs_cfg["layers"])
    return {
        "pointbert": _sub(untied, "module.visual."),
        "pnsa": _sub(pnsa, "module.backbone."),
        "text": {k: v for k, v in _sub(text, "module.").items() if k != "logit_scale"},
        "pointbert_cfg": read_config(parity / "pointbert_untied" / "config.json"),
        "pnsa_cfg": read_config(parity / "pnsa_rgb" / "config.json"),
        "tied_cfg": read_config(parity / "pointbert_tied" / "config.json"),
        "text_cfg": text_cfg,
        "pointbert_io": load_file(str(parity / "pointbert_untied" / "io.safetensors")),
        "pnsa_io": load_file(str(parity / "pnsa_rgb" / "io.safetensors")),
        "text_io": load_file(str(parity / "zeroshot_classifier" / "io.safetensors")),
    }


def _emb(model: ViTLens, points: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.encode_points(points)


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def _with_text(cfg: ModelConfig, text: TextConfig) -> ModelConfig:
    return replace(cfg, text=text)


# --------------------------------------------------------------------------- ULIP layout
def test_ulip_layout_with_text_and_foreign_keys(parts, tmp_path: Path):
    state = {f"module.visual.{k}": v for k, v in parts["pointbert"].items()}
    state |= {f"module.{k}": v for k, v in parts["text"].items()}
    state["module.logit_scale"] = torch.tensor(3.25)
    # ULIP files carry the image tower too: selected away by prefix, never loaded.
    state["module.image.conv1.weight"] = torch.randn(8, 3, 2, 2)
    state["module.image.class_embedding"] = torch.randn(8)
    path = tmp_path / "ulip.pt"
    torch.save({"epoch": 3, "name": "x", "state_dict": state, "best_acc": 1.0,
                "optimizer": {"state": {}, "param_groups": [{"lr": 0.1}]}}, path)

    weights = split_official(read_torch_checkpoint(path), path)
    assert weights.layout == "ulip" and not weights.lens_only
    assert not any(k.startswith(("image.", "module.")) for k in weights.point | weights.text)

    cfg = _with_text(parts["pointbert_cfg"], parts["text_cfg"])
    model = load_model(checkpoint=path, config=cfg)
    _close(_emb(model, parts["pointbert_io"]["points"]), parts["pointbert_io"]["embedding"])
    ids = parts["text_io"]["token_ids"][:2].reshape(-1, 77)
    with torch.no_grad():
        _close(model.encode_text(ids), parts["text_io"]["prompt_embeddings"][:2].reshape(-1, 32))
    assert model.logit_scale.item() == pytest.approx(3.25)


# --------------------------------------------------------------------------- OpenShape layout
def test_openshape_layout_separate_logit_scale(parts, tmp_path: Path):
    state = {f"module.backbone.{k}": v for k, v in parts["pnsa"].items()}
    path = tmp_path / "openshape.pt"
    torch.save({"state_dict": state, "logit_scale": {"module.logit_scale": torch.tensor(4.5)}, "text_proj": None,
                "image_proj": None, "scheduler": None, "scaler": None, "epoch": 1, "step": 10,
                "best_modelnet40_overall_acc": 0.0, "best_modelnet40_class_acc": 0.0, "best_lvis_acc": 0.0}, path)
    weights = split_official(read_torch_checkpoint(path), path)
    assert weights.layout == "openshape" and not weights.text
    model = load_model(checkpoint=path, config=parts["pnsa_cfg"])
    assert model.logit_scale.item() == pytest.approx(4.5)
    _close(_emb(model, parts["pnsa_io"]["points"]), parts["pnsa_io"]["embedding"])


# --------------------------------------------------------------------------- one-stop vitlensL layout
@pytest.mark.parametrize("container", ["plain", "state_dict"])
def test_one_stop_vitlens_layout(parts, tmp_path: Path, container: str):
    state = {f"vitlens.pc.{k}": v for k, v in parts["pointbert"].items()}
    state |= {f"vitlens.text.{k}": v for k, v in parts["text"].items()}
    state["vitlens.audio.proj"] = torch.randn(4, 4)  # other modalities of the one-stop file are ignored
    path = tmp_path / "vitlensL.pt"
    torch.save(state if container == "plain" else {"state_dict": state}, path)
    weights = split_official(read_torch_checkpoint(path), path)
    assert weights.layout == "vitlens"
    assert set(weights.point) == set(parts["pointbert"]) and set(weights.text) == set(parts["text"])
    model = load_model(checkpoint=path, config=_with_text(parts["pointbert_cfg"], parts["text_cfg"]))
    _close(_emb(model, parts["pointbert_io"]["points"]), parts["pointbert_io"]["embedding"])
    with torch.no_grad():
        _close(model.encode_text(parts["text_io"]["token_ids"][3]), parts["text_io"]["prompt_embeddings"][3])


# --------------------------------------------------------------------------- EVA lens layout
def test_eva_lens_layout_is_recognised_and_refused(parts, tmp_path: Path):
    lens = {k: v for k, v in parts["pointbert"].items() if k.startswith(("visual_adapter.", "perceiver."))}
    assert lens
    path = tmp_path / "eva_g14_objaverse.pt"
    torch.save({"state_dict": {f"module.visual.{k}": v for k, v in lens.items()}}, path)
    weights = split_official(read_torch_checkpoint(path), path)
    assert weights.layout == "eva_lens" and weights.lens_only
    assert set(weights.point) == set(lens)
    model = ViTLens(parts["pointbert_cfg"])
    with pytest.raises(CheckpointError, match="EVA") as err:
        load_official_into(model, weights, path)
    assert str(path) in str(err.value)


def test_unrecognised_layout(tmp_path: Path):
    path = tmp_path / "other.pt"
    torch.save({"state_dict": {"encoder.weight": torch.zeros(2, 2)}}, path)
    with pytest.raises(CheckpointError, match="unrecognised checkpoint layout"):
        split_official(read_torch_checkpoint(path), path)


def test_text_only_file_through_load_text_tower(parts, parity: Path):
    model = build_model(_with_text(get_spec("tiny"), parts["text_cfg"])).eval()
    point_before = {k: v.clone() for k, v in model.point.state_dict().items()}
    load_text_tower(model, parity / "zeroshot_classifier" / "checkpoint.pt")
    with torch.no_grad():
        _close(model.encode_text(parts["text_io"]["token_ids"][0]), parts["text_io"]["prompt_embeddings"][0])
    assert all(torch.equal(v, model.point.state_dict()[k]) for k, v in point_before.items())
    # the text-only file is not a lens checkpoint
    with pytest.raises(CheckpointError, match="no point-tower weights.*text tower only"):
        load_model(checkpoint=parity / "zeroshot_classifier" / "checkpoint.pt", config=parts["pointbert_cfg"])
    # a lens-only file has no text tower to give
    with pytest.raises(CheckpointError, match="no text-tower keys"):
        load_text_tower(model, parity / "pnsa_rgb" / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="no text tower"):
        load_text_tower(build_model(replace(get_spec("tiny"), text=None)), parity / "zeroshot_classifier" / "checkpoint.pt")


# --------------------------------------------------------------------------- strictness
def _ulip_file(tmp_path: Path, lens: dict[str, torch.Tensor], name: str = "ulip.pt") -> Path:
    path = tmp_path / name
    torch.save({"epoch": 0, "name": "x", "state_dict": {f"module.visual.{k}": v for k, v in lens.items()},
                "best_acc": 0.0}, path)
    return path


def test_missing_key_is_listed(parts, tmp_path: Path):
    lens = dict(parts["pointbert"])
    del lens["visual_adapter.encoder.first_conv.1.running_var"]
    path = _ulip_file(tmp_path, lens)
    with pytest.raises(CheckpointError, match=r"missing 1 keys \(visual_adapter\.encoder\.first_conv\.1\.running_var\)"):
        load_model(checkpoint=path, config=parts["pointbert_cfg"])


def test_unexpected_key_is_listed(parts, tmp_path: Path):
    lens = dict(parts["pointbert"]) | {"perceiver.final_norm.weight": torch.ones(64)}
    path = _ulip_file(tmp_path, lens)
    with pytest.raises(CheckpointError, match=r"unexpected 1 keys \(perceiver\.final_norm\.weight\)"):
        load_model(checkpoint=path, config=parts["pointbert_cfg"])


def test_wrong_shape_is_listed(parts, tmp_path: Path):
    lens = dict(parts["pointbert"])
    lens["proj"] = torch.randn(64, 16)
    path = _ulip_file(tmp_path, lens)
    with pytest.raises(CheckpointError, match=r"proj: file \(64, 16\) vs model \(64, 32\)"):
        load_model(checkpoint=path, config=parts["pointbert_cfg"])


def test_config_mismatch_depth_is_reported(parts, tmp_path: Path):
    """An untied depth-2 file read with a depth-3 config: the missing layer is named."""
    path = _ulip_file(tmp_path, parts["pointbert"])
    cfg = parts["pointbert_cfg"]
    deeper = replace(cfg, lens=replace(cfg.lens, perceiver=replace(cfg.lens.perceiver, depth=3)))
    with pytest.raises(CheckpointError, match=r"missing \d+ keys \(perceiver\.layers\.2\."):
        load_model(checkpoint=path, config=deeper)


def test_tied_config_with_differing_layer_2_is_refused(parity: Path, tmp_path: Path):
    obj = _load(parity / "pointbert_tied" / "checkpoint.pt")
    state = {k: v.clone() for k, v in obj["state_dict"].items()}  # break the shared storage
    key = "module.visual.perceiver.layers.2.1.fn.net.0.weight"
    state[key] = state[key] + 0.01
    obj["state_dict"] = state
    path = tmp_path / "tied.pt"
    torch.save(obj, path)
    cfg = read_config(parity / "pointbert_tied" / "config.json")
    with pytest.raises(CheckpointError, match=r"weight-tied but 'perceiver\.layers\.2\.1\.fn\.net\.0\.weight' differs"):
        load_model(checkpoint=path, config=cfg)
    # the unmodified tied file loads (layers.2 == layers.1) and keeps the modules shared
    model = load_model(checkpoint=parity / "pointbert_tied" / "checkpoint.pt", config=cfg)
    assert model.point.perceiver.layers[2] is model.point.perceiver.layers[1]


# --------------------------------------------------------------------------- weights_only
_UNPICKLED: list[str] = []


class Payload:
    """A custom object; unpickling it would run ``__setstate__`` (code execution in a real attack)."""

    def __init__(self) -> None:
        self.value = 1

    def __setstate__(self, state) -> None:
        _UNPICKLED.append("ran")
        self.__dict__.update(state)


def test_pickled_custom_object_is_refused(parts, tmp_path: Path):
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {f"module.visual.{k}": v for k, v in parts["pointbert"].items()},
                "extra": Payload()}, path)
    _UNPICKLED.clear()
    with pytest.raises(CheckpointError, match="not a loadable torch checkpoint"):
        read_torch_checkpoint(path)
    with pytest.raises(CheckpointError):
        load_model(checkpoint=path, config=parts["pointbert_cfg"])
    assert _UNPICKLED == [], "the custom object was unpickled"


def test_non_dict_and_missing_files(tmp_path: Path):
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(CheckpointError, match="expected a dict"):
        read_torch_checkpoint(path)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        read_torch_checkpoint(tmp_path / "absent.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a loadable torch checkpoint"):
        read_torch_checkpoint(garbage)


# --------------------------------------------------------------------------- our own format
def _tied(spec: ModelConfig) -> ModelConfig:
    p = replace(spec.lens.perceiver, depth=3, weight_tie_layers=True)
    return replace(spec, lens=replace(spec.lens, perceiver=p))


@pytest.mark.parametrize("which", ["tiny", "tiny-rgb", "tiny-tied"])
def test_save_load_round_trip(tmp_path: Path, which: str):
    spec = _tied(get_spec("tiny")) if which == "tiny-tied" else get_spec(which)
    model = build_model(spec).eval()
    with torch.no_grad():
        model.logit_scale.fill_(3.7)
    gen = torch.Generator().manual_seed(0)
    points = torch.rand(2, spec.lens.npoints, spec.lens.in_channels, generator=gen) * 2 - 1
    out = save_model(model, tmp_path / "saved")
    assert sorted(p.name for p in out.iterdir()) == sorted([WEIGHTS_NAME, CONFIG_NAME]), "temp files left behind"

    card = json.loads((out / CONFIG_NAME).read_text())["card"]
    assert card["name"] == spec.card.name and card["description"] == spec.card.description

    for loaded in (load_saved(out), load_saved(out / WEIGHTS_NAME), load_model(out)):
        assert not loaded.training
        assert loaded.cfg == spec
        torch.testing.assert_close(_emb(loaded, points), _emb(model, points), atol=0, rtol=0)
        assert loaded.logit_scale.item() == pytest.approx(3.7)
        with torch.no_grad():
            torch.testing.assert_close(loaded.encode_text(["a chair"]), model.encode_text(["a chair"]), atol=0, rtol=0)
        if which == "tiny-tied":
            assert loaded.point.perceiver.layers[1] is loaded.point.perceiver.layers[2]


def test_save_overwrites_atomically(tmp_path: Path):
    a, b = build_model(get_spec("tiny")), build_model(replace(get_spec("tiny"), init_seed=5))
    save_model(a, tmp_path)
    save_model(b, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([WEIGHTS_NAME, CONFIG_NAME])
    assert load_saved(tmp_path).cfg.init_seed == 5
    torch.testing.assert_close(load_saved(tmp_path).point.proj, b.point.proj, atol=0, rtol=0)


def test_load_saved_errors(tmp_path: Path):
    save_model(build_model(get_spec("tiny")), tmp_path / "m")
    lone = tmp_path / "lone"
    lone.mkdir()
    (lone / WEIGHTS_NAME).write_bytes((tmp_path / "m" / WEIGHTS_NAME).read_bytes())
    with pytest.raises(CheckpointError, match="no config.json"):
        load_saved(lone)
    # with the config given explicitly it loads
    assert load_saved(lone, get_spec("tiny")).cfg.card.name == "tiny"
    # a config that does not match the weights is a CheckpointError naming the problem
    with pytest.raises(CheckpointError, match="does not match"):
        load_saved(lone, get_spec("tiny-rgb"))
    (lone / WEIGHTS_NAME).write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_saved(lone, get_spec("tiny"))


def test_load_official_without_text_keys_keeps_random_text(parts, tmp_path: Path):
    """A lens-only file with a text config and no CLIP tag: the point tower loads, no download is tried."""
    path = _ulip_file(tmp_path, parts["pointbert"])
    cfg = _with_text(parts["pointbert_cfg"], parts["text_cfg"])
    assert cfg.card.clip_pretrained is None
    model = load_official(path, cfg)
    _close(_emb(model, parts["pointbert_io"]["points"]), parts["pointbert_io"]["embedding"])


@pytest.mark.parametrize("stage", ["weights", "config"])
def test_failed_save_leaves_no_temp_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stage: str):
    from vitlens_cli.models import checkpoints

    model = build_model(get_spec("tiny"))
    save_model(model, tmp_path)  # a previous good save must survive a failed one
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def boom(*args, **kwargs):
        raise OSError("disk full")

    if stage == "weights":
        monkeypatch.setattr(checkpoints, "save_file", boom)
    else:
        monkeypatch.setattr(checkpoints.json, "dump", boom)
    with pytest.raises(OSError, match="disk full"):
        save_model(build_model(replace(get_spec("tiny"), init_seed=9)), tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
