"""Model ``config.json``: strict reading; unknown keys and wrong types are one ConfigError naming the key."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from vitlens_cli.errors import ConfigError
from vitlens_cli.models import build_model, get_spec, read_config
from vitlens_cli.models.checkpoints import CONFIG_NAME, save_model


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> dict:
    folder = save_model(build_model(get_spec("tiny-omni")), tmp_path_factory.mktemp("m"))
    return json.loads((folder / CONFIG_NAME).read_text())


def _set(data: dict, dotted: str, value) -> dict:
    out = json.loads(json.dumps(data))
    node = out
    *path, last = dotted.split(".")
    for part in path:
        node = node[part]
    node[last] = value
    return out


CASES = {
    "unknown-top": ("extra", 1, "config.extra", "unknown key"),
    "unknown-lens": ("lens.num_grup", 8, "config.lens.num_grup", "unknown key"),
    "unknown-perceiver": ("lens.perceiver.deepth", 2, "config.lens.perceiver.deepth", "unknown key"),
    "unknown-tower-param": ("towers.depth.params.patch", 8, "config.towers.depth.params.patch", "unknown key"),
    "str-for-int": ("lens.npoints", "ten", "config.lens.npoints", "expected an integer, got str"),
    "float-for-int": ("lens.perceiver.depth", 2.5, "config.lens.perceiver.depth", "expected an integer"),
    "bool-for-int": ("text.layers", True, "config.text.layers", "expected an integer, got bool"),
    "str-for-bool": ("lens.perceiver.weight_tie_layers", "yes", "config.lens.perceiver.weight_tie_layers",
                     "expected true or false"),
    "bad-literal": ("preprocess.up_axis", "x", "config.preprocess.up_axis", "expected 'y' or 'z'"),
    "list-for-object": ("lens.vit", [1], "config.lens.vit", "expected an object"),
    "nan-ratio": ("lens.vit.mlp_ratio", float("nan"), "config.lens.vit.mlp_ratio", "finite number"),
    "unknown-lens-kind": ("towers.eeg.lens", "eeg2", "config.towers.eeg.lens", "unknown lens kind"),
    "tower-width-mismatch": ("towers.audio.perceiver.latent_dim", 32, "config.towers.audio",
                             "must equal the ViT width"),
    "bad-format": ("format", "vitlens/9", "format", "unsupported config format"),
    "bad-card-type": ("card.published", {"mn40": {"top1": "high"}}, "config.card.published.mn40.top1",
                      "expected a finite number"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_config_names_the_key(saved, tmp_path: Path, case: str):
    dotted, value, key, reason = CASES[case]
    path = tmp_path / CONFIG_NAME
    path.write_text(json.dumps(_set(saved, dotted, value)))
    with pytest.raises(ConfigError) as err:
        read_config(path)
    message = str(err.value)
    assert message.startswith(f"{path}: {key}: ") and reason in message, message
    assert "\n" not in message


def test_missing_key_is_named(saved, tmp_path: Path):
    data = json.loads(json.dumps(saved))
    del data["lens"]["trans_dim"]
    path = tmp_path / CONFIG_NAME
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"config\.lens\.trans_dim: missing"):
        read_config(path)


def test_good_config_round_trips(saved, tmp_path: Path):
    path = tmp_path / CONFIG_NAME
    path.write_text(json.dumps(saved))
    assert read_config(path) == get_spec("tiny-omni")


@pytest.mark.parametrize("content, reason", [(b"{", "invalid JSON"), (b"\xff\xfe{}", "not UTF-8"),
                                             (b"[1, 2]", "expected a JSON object")])
def test_unreadable_config_files(tmp_path: Path, content: bytes, reason: str):
    path = tmp_path / CONFIG_NAME
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=reason) as err:
        read_config(path)
    assert str(path) in str(err.value)


def test_config_folder_and_absent(tmp_path: Path):
    with pytest.raises(ConfigError, match="is a folder"):
        read_config(tmp_path)
    with pytest.raises(ConfigError, match="no such config file"):
        read_config(tmp_path / "absent.json")
