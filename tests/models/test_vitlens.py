"""ViTLens: one tower type for every modality, encode(modality, batch), views averaged, errors that name the modality."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from vitlens_cli.errors import ConfigError
from vitlens_cli.models import LensTower, build_model, get_spec
from vitlens_cli.models.vitlens import prepend_class

INPUTS = {"3d": (2, 1024, 3), "depth": (2, 1, 224, 224), "audio": (2, 512, 128), "tactile": (2, 3, 224, 224),
          "eeg": (2, 128, 512), "image": (2, 3, 224, 224)}


@pytest.fixture(scope="module")
def omni():
    return build_model(get_spec("tiny-omni")).eval()


def test_every_modality_is_the_same_tower_type(omni):
    assert omni.modalities == list(INPUTS)
    assert all(type(t) is LensTower for t in omni.towers.values())
    # tower attributes give the parameter names recipes and saves use
    assert {k.split(".")[0] for k in omni.state_dict()} == {"point", "depth", "audio", "tactile", "eeg", "image",
                                                             "text", "logit_scale"}


@pytest.mark.parametrize("modality", list(INPUTS))
def test_encode_shapes_and_normalisation(omni, modality: str):
    x = torch.randn(INPUTS[modality], generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        raw = omni.encode(modality, x)
        unit = omni.encode(modality, x, normalize=True)
    assert raw.shape == (2, omni.embed_dim)
    torch.testing.assert_close(unit, F.normalize(raw, dim=-1))
    assert not torch.allclose(raw.norm(dim=-1), torch.ones(2))


def test_views_per_item_are_averaged_before_normalising(omni):
    clips = torch.randn(2, 3, 512, 128, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        per_clip = omni.encode("audio", clips.flatten(0, 1)).unflatten(0, (2, 3))
        got = omni.encode("audio", clips, normalize=True)
    torch.testing.assert_close(got, F.normalize(per_clip.mean(1), dim=-1))


def test_repeated_views_go_through_the_tower_once(omni):
    g = torch.Generator().manual_seed(4)
    short, long_ = torch.randn(512, 128, generator=g), torch.randn(3, 512, 128, generator=g)
    # item 0: one clip used 3 times (a file of at most 5 s); item 1: views 0 and 2 equal, view 1 apart
    clips = torch.stack([short.expand(3, -1, -1), torch.stack([long_[0], long_[1], long_[0]])])
    rows = []
    hook = omni.audio.register_forward_hook(lambda m, i, o: rows.append(i[0].shape[0]))
    try:
        with torch.no_grad():
            got = omni.encode("audio", clips)
            each = omni.encode("audio", torch.stack([short, long_[0], long_[1]]))
    finally:
        hook.remove()
    assert rows[0] == 3  # not 6
    expected = torch.stack([each[0], (2 * each[1] + each[2]) / 3])
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_distinct_views_pattern_by_hand():
    from vitlens_cli.models.vitlens import _distinct_views

    a, b, c = torch.zeros(2, 3), torch.ones(2, 3), torch.full((2, 3), float("nan"))
    # item 0: a b a b; item 1: c c a a (a NaN view equals nothing, not even an equal-looking one)
    batch = torch.stack([torch.stack([a, b, a, b]), torch.stack([c, c, a, a])])
    distinct, where = _distinct_views(batch)
    assert distinct.tolist() == [0, 1, 4, 5, 6]
    assert where.tolist() == [0, 1, 0, 1, 2, 3, 4, 4]


def test_point_and_image_shortcuts(omni):
    pts = torch.rand(1, 1024, 3, generator=torch.Generator().manual_seed(3))
    img = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(omni.encode_points(pts), omni.encode("3d", pts), atol=0, rtol=0)
        torch.testing.assert_close(omni.encode_image(img), omni.encode("image", img), atol=0, rtol=0)
    assert omni.point is omni.towers["3d"]


def test_errors_name_the_modality():
    model = build_model(get_spec("tiny")).eval()
    with pytest.raises(ConfigError, match=r"^eeg: model 'tiny' has no eeg tower \(it has: 3d\)$"):
        model.encode("eeg", torch.zeros(1, 128, 512))
    with pytest.raises(ConfigError, match=r"^3d: expected a batch of 3 dimensions"):
        model.encode("3d", torch.zeros(1024, 3))
    no_text = build_model(replace(get_spec("tiny"), text=None))
    with pytest.raises(ConfigError, match="^tiny: this model has no text tower$"):
        no_text.encode_text(["a chair"])


def test_prepend_class_puts_cls_first_and_adds_positions():
    rows = torch.randn(2, 3, 4)
    cls, pos = torch.randn(4), torch.randn(4, 4)
    out = prepend_class(rows, cls, pos)
    torch.testing.assert_close(out[:, 0], (cls + pos[0]).expand(2, 4))
    torch.testing.assert_close(out[:, 1:], rows + pos[1:])


def test_pre_caption_only_where_the_contract_says(omni):
    assert not torch.equal(omni.tokenize(["A bird."]), omni.tokenize(["a bird"]))  # plain CLIP BPE keeps the '.'
    cleaned = build_model(replace(get_spec("tiny-omni"), contracts={"text": {"pre_caption": True}}))
    assert torch.equal(cleaned.tokenize(["A bird."]), omni.tokenize(["a bird"]))
