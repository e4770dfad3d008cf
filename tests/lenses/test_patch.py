"""Patch tokenizers against the formulas of the parity-modalities README (§3.3, §4.4, §5.3, §6.3), element by element."""
from __future__ import annotations

import pytest
import torch

from vitlens_cli.lenses import (LENSES, ASTTokenizer, AudioASTParams, DepthPatchParams, DepthTokenizer,
                                EEGPatchParams, ImagePatchEmbed, ImagePatchParams, LensKind, PatchEmbed1D,
                                get_lens, register_lens)


def _gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def test_depth_tokens_are_row_major_patches_plus_pos_emb():
    lens = DepthTokenizer(image_size=12, patch_size=4, width=5)
    x = torch.randn(2, 1, 12, 12, generator=_gen())
    out = lens(x)
    w = lens.conv1.weight
    assert out.shape == (2, 9, 5) and lens.conv1.bias is None
    for r in range(3):
        for c in range(3):
            patch = x[:, 0, 4 * r:4 * r + 4, 4 * c:4 * c + 4]
            want = torch.einsum("wuv,buv->bw", w[:, 0], patch) + lens.pos_emb[3 * r + c]
            torch.testing.assert_close(out[:, 3 * r + c], want, atol=1e-5, rtol=1e-5)


def test_ast_tokens_transpose_overlap_and_frequency_major():
    lens = ASTTokenizer(mel_bins=10, target_length=14, patch_size=4, fstride=3, tstride=2, width=3)
    fbank = torch.randn(2, 14, 10, generator=_gen())  # (B, T, F)
    out = lens(fbank)
    f_dim, t_dim = (10 - 4) // 3 + 1, (14 - 4) // 2 + 1
    assert out.shape == (2, f_dim * t_dim, 3)
    w = lens.conv1.weight[:, 0]
    for f in range(f_dim):
        for t in range(t_dim):
            # weight[:, u, v] multiplies fbank[b, t·ts + v, f·fs + u]
            block = fbank[:, 2 * t:2 * t + 4, 3 * f:3 * f + 4].transpose(1, 2)
            want = torch.einsum("wuv,buv->bw", w, block) + lens.pos_emb[f * t_dim + t]
            torch.testing.assert_close(out[:, f * t_dim + t], want, atol=1e-5, rtol=1e-5)


def test_eeg_windows_with_bias_and_remainder_dropped():
    lens = PatchEmbed1D(channels=4, time_len=10, window_size=3, stride=2, width=6)
    eeg = torch.randn(2, 4, 10, generator=_gen())
    out = lens(eeg)
    assert out.shape == (2, 4, 6)  # ⌊(10 − 3) / 2⌋ + 1; samples past the last full window are dropped
    w, b = lens.proj.weight, lens.proj.bias
    for n in range(4):
        want = torch.einsum("wcu,bcu->bw", w, eeg[:, :, 2 * n:2 * n + 3]) + b + lens.pos_emb[n]
        torch.testing.assert_close(out[:, n], want, atol=1e-5, rtol=1e-5)


def test_image_stem_is_channel_major_without_pos_emb():
    lens = ImagePatchEmbed(in_channels=3, patch_size=4, width=5)
    x = torch.randn(1, 3, 8, 8, generator=_gen())
    out = lens(x)
    assert out.shape == (1, 4, 5) and lens.bias is None and not hasattr(lens, "pos_emb")
    want = torch.einsum("wcuv,bcuv->bw", lens.weight, x[:, :, 4:8, 0:4])
    torch.testing.assert_close(out[:, 2], want, atol=1e-5, rtol=1e-5)


PARAMS = {"depth_patch": DepthPatchParams(16, 4), "audio_ast": AudioASTParams(12, 20, 4, 3, 5),
          "eeg_patch1d": EEGPatchParams(8, 17, 3, 2), "tactile_vit": ImagePatchParams(16, 8),
          "image": ImagePatchParams(16, 4)}
INPUTS = {"depth_patch": (2, 1, 16, 16), "audio_ast": (2, 20, 12), "eeg_patch1d": (2, 8, 17),
          "tactile_vit": (2, 3, 16, 16), "image": (2, 3, 16, 16)}
KEYS = {"depth_patch": {"conv1.weight", "pos_emb"}, "audio_ast": {"conv1.weight", "pos_emb"},
        "eeg_patch1d": {"proj.weight", "proj.bias", "pos_emb"}, "tactile_vit": {"weight"}, "image": {"weight"}}


@pytest.mark.parametrize("kind", list(PARAMS))
def test_registry_geometry_matches_the_modules(kind: str):
    entry = get_lens(kind)
    module = entry.build(PARAMS[kind], 7)
    out = module(torch.zeros(INPUTS[kind]))
    assert out.shape == (2, entry.num_tokens(PARAMS[kind]), entry.token_dim(PARAMS[kind], 7))
    assert len(INPUTS[kind]) == entry.input_rank
    assert set(module.state_dict()) == KEYS[kind]  # the official names under visual_adapter. / conv1.


def test_registry_names_and_registration():
    assert set(LENSES) == {"point_bert", "pnsa", "depth_patch", "audio_ast", "tactile_vit", "eeg_patch1d", "image"}
    assert {k: v.attr for k, v in LENSES.items() if v.attr != "visual_adapter"} == {"tactile_vit": "conv1",
                                                                                     "image": "conv1"}
    with pytest.raises(KeyError, match="unknown lens kind 'nope'"):
        get_lens("nope")
    with pytest.raises(ValueError, match="already registered"):
        register_lens(LENSES["image"])
    extra = LensKind("test_only", ImagePatchParams, "visual_adapter", LENSES["image"].build,
                     LENSES["image"].num_tokens, LENSES["image"].token_dim, 4)
    try:
        assert register_lens(extra) is extra and get_lens("test_only") is extra
    finally:
        LENSES.pop("test_only")
