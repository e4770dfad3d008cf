"""Checkpoint layouts read from the official parity files themselves; strict loading; tying; our own format."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import missing_data
from vitlens_cli.errors import CheckpointError, ConfigError
from vitlens_cli.models import ModelConfig, TextConfig, build_model, get_spec, load_lens, load_model, read_config
from vitlens_cli.models.checkpoints import (CONFIG_NAME, WEIGHTS_NAME, file_is_tied, load_saved, load_text_tower,
                                            read_torch_checkpoint, save_model, sniff_layout, state_of)
from vitlens_cli.models.zoo import with_card


def _load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


@pytest.fixture(scope="module")
def parts(parity: Path):
    zs_cfg = json.loads((parity / "zeroshot_classifier" / "config.json").read_text())["text_tower"]
    return {
        "pointbert_cfg": read_config(parity / "pointbert_untied" / "config.json"),
        "pnsa_cfg": read_config(parity / "pnsa_rgb" / "config.json"),
        "text_cfg": TextConfig(embed_dim=zs_cfg["embed_dim"], width=zs_cfg["width"], heads=zs_cfg["heads"],
                               layers=zs_cfg["layers"]),
        "pointbert_io": load_file(str(parity / "pointbert_untied" / "io.safetensors")),
        "pnsa_io": load_file(str(parity / "pnsa_rgb" / "io.safetensors")),
        "text_io": load_file(str(parity / "zeroshot_classifier" / "io.safetensors")),
    }


def _emb(model, points: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.encode_points(points)


# --------------------------------------------------------------------------- official layouts, official files
def test_ulip_file_with_a_text_tower(parts, parity: Path, tmp_path: Path):
    """Two official ULIP files in one container (lens + text tower, as real training files hold)."""
    lens = _load(parity / "pointbert_untied" / "checkpoint.pt")
    text = _load(parity / "zeroshot_classifier" / "checkpoint.pt")
    assert sniff_layout(state_of(lens)) == sniff_layout(state_of(text)) == "ulip"
    merged = dict(lens, state_dict={**text["state_dict"], **lens["state_dict"]})
    path = tmp_path / "ulip.pt"
    torch.save(merged, path)
    model = load_model(checkpoint=path, config=replace(parts["pointbert_cfg"], text=parts["text_cfg"]))
    _close(_emb(model, parts["pointbert_io"]["points"]), parts["pointbert_io"]["embedding"])
    ids = parts["text_io"]["token_ids"][:2].reshape(-1, 77)
    with torch.no_grad():
        _close(model.encode_text(ids), parts["text_io"]["prompt_embeddings"][:2].reshape(-1, 32))
    assert model.logit_scale.item() == pytest.approx(state_of(lens)["logit_scale"].item())


def test_openshape_file(parts, parity: Path):
    path = parity / "pnsa_rgb" / "checkpoint.pt"
    assert sniff_layout(state_of(_load(path))) == "openshape"
    model = load_model(checkpoint=path, config=parts["pnsa_cfg"])
    scale = _load(path)["logit_scale"]
    assert model.logit_scale.item() == pytest.approx(next(iter(scale.values())).item())
    _close(_emb(model, parts["pnsa_io"]["points"]), parts["pnsa_io"]["embedding"])


@pytest.fixture(scope="module")
def onestop(fixtures: Path) -> Path:
    path = fixtures / "parity-modalities" / "onestop_layout"
    if not path.is_dir():
        missing_data(f"parity-modalities fixtures not found at {path}")
    return path


def test_onestop_file_read_for_some_of_its_towers(onestop: Path):
    """A config with fewer towers takes its towers by prefix and ignores the others."""
    full = read_config(onestop / "config.json")
    depth_only = replace(full, lens=None, preprocess=None, towers={"depth": full.towers["depth"]})
    model = load_model(checkpoint=onestop / "checkpoint.pt", config=depth_only)
    io = load_file(str(onestop / "io.safetensors"))
    assert model.modalities == ["depth"]
    with torch.no_grad():
        _close(model.encode("depth", io["input_depth"]), io["embedding_depth"])
        _close(model.encode_text(io["input_text"]), io["embedding_text"])


def test_onestop_file_without_image_tower(onestop: Path, tmp_path: Path):
    obj = _load(onestop / "checkpoint.pt")
    obj["state_dict"] = {k: v for k, v in obj["state_dict"].items() if not k.startswith("vitlens.image.")}
    path = tmp_path / "vitlensL.pt"
    torch.save(obj, path)
    cfg = read_config(onestop / "config.json")
    assert cfg.card.clip_pretrained is None
    with pytest.raises(CheckpointError, match="holds no image tower and the model card names no CLIP weights"):
        load_model(checkpoint=path, config=cfg)
    no_image = replace(cfg, towers={m: t for m, t in cfg.towers.items() if m != "image"})
    assert "image" not in load_model(checkpoint=path, config=no_image).modalities


def test_layout_comes_from_the_card_and_sniffing_only_explains(parts, parity: Path):
    path = parity / "pnsa_rgb" / "checkpoint.pt"
    as_ulip = with_card(parts["pnsa_cfg"], layout="ulip")
    with pytest.raises(CheckpointError, match=r"no 3d tower \(no 'visual\.\*' keys; card 'pnsa_rgb' says layout "
                                              r"'ulip', the file looks like 'openshape'\)"):
        load_model(checkpoint=path, config=as_ulip)
    with pytest.raises(CheckpointError, match="names no checkpoint layout.*looks like 'openshape'"):
        load_model(checkpoint=path, config=with_card(parts["pnsa_cfg"], layout=None))
    with pytest.raises(ConfigError, match=r"needs its model.*looks like layout 'openshape'"):
        load_model(checkpoint=path)


def test_eva_lens_layout(parts, parity: Path, tmp_path: Path):
    """The EVA lens file holds only visual_adapter / perceiver: refused as a model, loaded as a lens."""
    obj = _load(parity / "pointbert_untied" / "checkpoint.pt")
    keep = ("module.visual.visual_adapter.", "module.visual.perceiver.")
    obj["state_dict"] = {k: v for k, v in obj["state_dict"].items() if k.startswith(keep)}
    path = tmp_path / "eva.pt"
    torch.save(obj, path)
    cfg = with_card(parts["pointbert_cfg"], layout="eva_lens")
    assert sniff_layout(state_of(obj)) == "eva_lens"
    with pytest.raises(CheckpointError, match="EVA"):
        load_model(checkpoint=path, config=cfg)
    lens, _ = load_lens(path, cfg)
    with torch.no_grad():
        _close(lens(parts["pointbert_io"]["points"]), parts["pointbert_io"]["perceiver_out"])


def test_text_only_file_through_load_text_tower(parts, parity: Path):
    model = build_model(replace(get_spec("tiny"), text=parts["text_cfg"], card=replace(get_spec("tiny").card,
                                                                                         layout="ulip"))).eval()
    point_before = {k: v.clone() for k, v in model.point.state_dict().items()}
    load_text_tower(model, parity / "zeroshot_classifier" / "checkpoint.pt")
    with torch.no_grad():
        _close(model.encode_text(parts["text_io"]["token_ids"][0]), parts["text_io"]["prompt_embeddings"][0])
    assert all(torch.equal(v, model.point.state_dict()[k]) for k, v in point_before.items())
    with pytest.raises(CheckpointError, match="holds no 3d tower"):
        load_model(checkpoint=parity / "zeroshot_classifier" / "checkpoint.pt", config=parts["pointbert_cfg"])
    with pytest.raises(CheckpointError, match="no text-tower keys"):
        load_text_tower(model, parity / "pointbert_untied" / "checkpoint.pt")


# --------------------------------------------------------------------------- strictness
def _modified(parity: Path, tmp_path: Path, change) -> Path:
    obj = _load(parity / "pointbert_untied" / "checkpoint.pt")
    state = dict(obj["state_dict"])
    change(state)
    path = tmp_path / "changed.pt"
    torch.save(dict(obj, state_dict=state), path)
    return path


def test_missing_key_is_listed(parts, parity: Path, tmp_path: Path):
    path = _modified(parity, tmp_path, lambda s: s.pop("module.visual.visual_adapter.encoder.first_conv.1.running_var"))
    with pytest.raises(CheckpointError, match=r"missing 1 keys \(visual_adapter\.encoder\.first_conv\.1\.running_var\)"):
        load_model(checkpoint=path, config=parts["pointbert_cfg"])


def test_unexpected_key_is_listed(parts, parity: Path, tmp_path: Path):
    path = _modified(parity, tmp_path, lambda s: s.update({"module.visual.perceiver.final_norm.weight": torch.ones(64)}))
    with pytest.raises(CheckpointError, match=r"unexpected 1 keys \(perceiver\.final_norm\.weight\)"):
        load_model(checkpoint=path, config=parts["pointbert_cfg"])


def test_wrong_shape_is_listed(parts, parity: Path, tmp_path: Path):
    path = _modified(parity, tmp_path, lambda s: s.update({"module.visual.proj": torch.randn(64, 16)}))
    with pytest.raises(CheckpointError, match=r"proj: file \(64, 16\) vs model \(64, 32\)") as err:
        load_model(checkpoint=path, config=parts["pointbert_cfg"])
    assert "\n" not in str(err.value)


def test_config_mismatch_depth_is_reported(parts, parity: Path):
    cfg = parts["pointbert_cfg"]
    deeper = replace(cfg, lens=replace(cfg.lens, perceiver=replace(cfg.lens.perceiver, depth=3)))
    with pytest.raises(CheckpointError, match=r"missing \d+ keys \(perceiver\.layers\.2\."):
        load_model(checkpoint=parity / "pointbert_untied" / "checkpoint.pt", config=deeper)


# --------------------------------------------------------------------------- Perceiver tying comes from the file
def test_tied_config_with_an_untied_file_loads_untied(parity: Path, tmp_path: Path):
    obj = _load(parity / "pointbert_tied" / "checkpoint.pt")
    state = {k: v.clone() for k, v in obj["state_dict"].items()}  # break the shared storage
    key = "module.visual.perceiver.layers.2.1.fn.net.0.weight"
    state[key] = state[key] + 0.01
    path = tmp_path / "untied.pt"
    torch.save(dict(obj, state_dict=state), path)
    cfg = read_config(parity / "pointbert_tied" / "config.json")
    assert cfg.lens.perceiver.weight_tie_layers
    model = load_model(checkpoint=path, config=cfg)
    assert not model.cfg.lens.perceiver.weight_tie_layers
    assert model.point.perceiver.layers[2] is not model.point.perceiver.layers[1]
    torch.testing.assert_close(model.point.perceiver.layers[2][1].fn.net[0].weight, state[key], atol=0, rtol=0)
    tied = load_model(checkpoint=parity / "pointbert_tied" / "checkpoint.pt", config=cfg)
    assert tied.point.perceiver.layers[2] is tied.point.perceiver.layers[1]


def test_untied_config_with_a_tied_file_shares_layers(parity: Path):
    cfg = read_config(parity / "pointbert_tied" / "config.json")
    untied = replace(cfg, lens=replace(cfg.lens, perceiver=replace(cfg.lens.perceiver, weight_tie_layers=False)))
    model = load_model(checkpoint=parity / "pointbert_tied" / "checkpoint.pt", config=untied)
    assert model.point.perceiver.layers[2] is model.point.perceiver.layers[1]


def test_file_is_tied_rule():
    a, b = torch.ones(2), torch.zeros(2)
    layers = {"perceiver.layers.0.x": b, "perceiver.layers.1.x": a, "perceiver.layers.2.x": a.clone()}
    assert file_is_tied(layers, 3)
    assert not file_is_tied(layers | {"perceiver.layers.2.x": b}, 3)
    assert not file_is_tied(layers, 2)  # depth 2: tying changes nothing, the file is read as untied


def test_vitlensL_point_spec_is_untied_as_the_official_onestop_config():
    assert get_spec("vitlensL").lens.perceiver.weight_tie_layers is False


# --------------------------------------------------------------------------- weights_only
_UNPICKLED: list[str] = []


class Payload:
    """A custom object; unpickling it would run ``__setstate__`` (code execution in a real attack)."""

    def __init__(self) -> None:
        self.value = 1

    def __setstate__(self, state) -> None:
        _UNPICKLED.append("ran")
        self.__dict__.update(state)


def test_pickled_custom_object_is_refused(parts, parity: Path, tmp_path: Path):
    obj = _load(parity / "pointbert_untied" / "checkpoint.pt")
    path = tmp_path / "evil.pt"
    torch.save(dict(obj, extra=Payload()), path)
    _UNPICKLED.clear()
    with pytest.raises(CheckpointError, match="refused: it holds Python objects"):
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


@pytest.mark.parametrize("which", ["tiny", "tiny-rgb", "tiny-tied", "tiny-omni"])
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
            if which == "tiny-omni":
                eeg = torch.randn(1, 128, 512, generator=gen)
                torch.testing.assert_close(loaded.encode("eeg", eeg), model.encode("eeg", eeg), atol=0, rtol=0)
        if which == "tiny-tied":
            assert loaded.point.perceiver.layers[1] is loaded.point.perceiver.layers[2]


def test_vitlens_1_saves_still_load(tmp_path: Path):
    """A save written before multi-modality (format vitlens/1: lens, preprocess, card, text, init_seed)."""
    model = build_model(get_spec("tiny"))
    out = save_model(model, tmp_path)
    data = json.loads((out / CONFIG_NAME).read_text())
    old = {"format": "vitlens/1", **{k: data[k] for k in ("lens", "preprocess", "text", "init_seed")},
           "card": {k: v for k, v in data["card"].items() if k not in ("license", "paper", "published_source")}}
    (out / CONFIG_NAME).write_text(json.dumps(old))
    assert load_saved(out).cfg == get_spec("tiny")


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
    assert load_saved(lone, get_spec("tiny")).cfg.card.name == "tiny"
    with pytest.raises(CheckpointError, match="does not match"):
        load_saved(lone, get_spec("tiny-rgb"))
    with pytest.raises(CheckpointError, match=r"no tower weights \(depth\.\*\)"):
        load_saved(lone, replace(get_spec("tiny-omni"), lens=None, preprocess=None,
                                 towers={"depth": get_spec("tiny-omni").towers["depth"]}))
    (lone / WEIGHTS_NAME).write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_saved(lone, get_spec("tiny"))


def test_load_official_without_text_keys_keeps_random_text(parts, parity: Path):
    """A lens-only file with a text config and no CLIP tag: the point tower loads, no download is tried."""
    cfg = replace(parts["pointbert_cfg"], text=parts["text_cfg"])
    assert cfg.card.clip_pretrained is None
    model = load_model(checkpoint=parity / "pointbert_untied" / "checkpoint.pt", config=cfg)
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


def test_random_untied_vitlensL_in_the_onestop_layout_loads(tmp_path: Path):
    """The released-size vitlensL point tower, untied as mm_vit_lens/model_cfg.py builds it, under vitlens.pc.*.

    The old loader refused this file ("config says the Perceiver is weight-tied but … differs").
    """
    spec = get_spec("vitlensL")
    cfg = replace(spec, towers={}, text=None)  # the point tower alone keeps the test at ~2 GB
    with torch.device("meta"):
        shapes = {k: (v.shape, v.dtype) for k, v in build_model(cfg).point.state_dict().items()}
    # Per-key constants are enough: the layers differ (untied) and every value is checkable.
    state = {f"vitlens.pc.{k}": torch.full(shape, (i % 97) / 97, dtype=dtype) if dtype.is_floating_point
             else torch.zeros(shape, dtype=dtype) for i, (k, (shape, dtype)) in enumerate(shapes.items())}
    assert any(k.startswith("vitlens.pc.perceiver.layers.3.") for k in state)
    path = tmp_path / "vitlensL.pt"
    torch.save({"model_var": "vitlensL", "modality_loaded": ["pc"], "state_dict": state}, path)
    del state
    model = load_model(checkpoint=path, config=cfg)
    assert not model.cfg.lens.perceiver.weight_tie_layers
    assert model.point.perceiver.layers[3] is not model.point.perceiver.layers[1]
    loaded = model.point.state_dict()
    for i, k in enumerate(shapes):
        if shapes[k][1].is_floating_point and i % 37 == 0:
            assert torch.all(loaded[k] == (i % 97) / 97), k
