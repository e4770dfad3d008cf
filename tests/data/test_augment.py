"""augment_points: the published ULIP/OpenShape augmentations, checked property by property."""
from __future__ import annotations

import numpy as np
import pytest

from vitlens_cli.data.augment import Augment, augment_points
from vitlens_cli.errors import ConfigError


def _cloud(n=512, channels=3, seed=0):
    rng = np.random.default_rng(seed)
    xyz = rng.uniform(-1, 1, (n, 3))
    if channels == 6:
        return np.concatenate([xyz, rng.uniform(0, 1, (n, 3))], axis=1).astype(np.float32)
    return xyz.astype(np.float32)


@pytest.mark.parametrize("channels", [3, 6])
def test_default_is_identity_copy(channels):
    pts = _cloud(channels=channels)
    out = augment_points(pts, Augment(), "y", np.random.default_rng(0))
    assert out.dtype == np.float32 and out.shape == pts.shape
    np.testing.assert_array_equal(out, pts)
    assert out is not pts


def test_input_not_modified_and_deterministic():
    pts = _cloud(channels=6)
    before = pts.copy()
    cfg = Augment(dropout=0.875, scale=(0.8, 1.25), shift=0.1, rotation_sigma=0.06, rotation_clip=0.18,
                  rotate_up=True, rgb_drop=0.5)
    a = augment_points(pts, cfg, "z", np.random.default_rng(7))
    b = augment_points(pts, cfg, "z", np.random.default_rng(7))
    c = augment_points(pts, cfg, "z", np.random.default_rng(8))
    np.testing.assert_array_equal(pts, before)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.dtype == np.float32 and a.shape == pts.shape


@pytest.mark.parametrize("axis,col", [("y", 1), ("z", 2)])
def test_rotation_about_up_keeps_up_coordinate_and_radius(axis, col):
    pts = _cloud()
    out = augment_points(pts, Augment(rotate_up=True), axis, np.random.default_rng(3))
    np.testing.assert_array_equal(out[:, col], pts[:, col])
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), np.linalg.norm(pts, axis=1), rtol=1e-5)
    assert not np.allclose(out, pts)


def test_rotation_leaves_rgb_untouched():
    pts = _cloud(channels=6)
    cfg = Augment(scale=(2.0, 2.0), rotation_sigma=0.1, rotation_clip=0.3, rotate_up=True)
    out = augment_points(pts, cfg, "y", np.random.default_rng(1))
    np.testing.assert_array_equal(out[:, 3:], pts[:, 3:])


def test_small_rotation_is_a_rotation_within_clip():
    pts = _cloud()
    out = augment_points(pts, Augment(rotation_sigma=10.0, rotation_clip=0.05), "y", np.random.default_rng(2))
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), np.linalg.norm(pts, axis=1), rtol=1e-5)
    # each clipped angle is at most 0.05 rad, so no point moves further than ~3 * 0.05 * radius
    moved = np.linalg.norm(out - pts, axis=1) / np.linalg.norm(pts, axis=1)
    assert moved.max() <= 3 * 0.05 + 1e-4 and moved.max() > 0


def test_dropout_replaces_with_first_point():
    pts = _cloud(n=2000, channels=6)
    changed = 0
    for seed in range(10):
        out = augment_points(pts, Augment(dropout=0.875), "y", np.random.default_rng(seed))
        same = np.all(out == pts, axis=1)
        first = np.all(out == pts[0], axis=1)
        assert np.all(same | first)  # every row is either kept or a copy of point 0 (all channels)
        changed += int((~same).sum())
    assert changed > 0


def test_rgb_drop_sets_grey_only_with_six_channels():
    pts6 = _cloud(channels=6)
    out = augment_points(pts6, Augment(rgb_drop=1.0), "z", np.random.default_rng(0))
    np.testing.assert_array_equal(out[:, 3:], np.full_like(pts6[:, 3:], 0.4))
    np.testing.assert_array_equal(out[:, :3], pts6[:, :3])
    pts3 = _cloud(channels=3)
    np.testing.assert_array_equal(augment_points(pts3, Augment(rgb_drop=1.0), "z", np.random.default_rng(0)), pts3)
    drops = sum(np.all(augment_points(pts6, Augment(rgb_drop=0.5), "z", np.random.default_rng(s))[:, 3:] == 0.4)
                for s in range(200))
    assert 60 < drops < 140


def test_scale_and_shift_ranges():
    pts = _cloud()
    for seed in range(50):
        rng = np.random.default_rng(seed)
        out = augment_points(pts, Augment(scale=(0.8, 1.25)), "y", rng)
        ratio = out / pts
        s = ratio[0, 0]
        np.testing.assert_allclose(ratio, s, rtol=1e-4)  # one scale for the whole cloud
        assert 0.8 <= s <= 1.25
        out = augment_points(pts, Augment(shift=0.1), "y", np.random.default_rng(seed))
        d = out - pts
        np.testing.assert_allclose(d, np.broadcast_to(d[0], d.shape), atol=1e-6)  # one shift per axis
        assert np.all(np.abs(d[0]) <= 0.1 + 1e-6)


def test_bad_input():
    with pytest.raises(ConfigError):
        augment_points(_cloud(), Augment(), "x", np.random.default_rng(0))
    with pytest.raises(ValueError):
        augment_points(np.zeros((5, 4), np.float32), Augment(), "y", np.random.default_rng(0))


# ---------------------------------------------------------------------------------------------
# Views (depth maps, tactile frames): the released RandomResizedCrop, flips and rotation
# ---------------------------------------------------------------------------------------------

def test_crop_box_lies_inside_with_the_asked_area_and_ratio():
    from vitlens_cli.data.augment import crop_box

    rng = np.random.default_rng(0)
    for _ in range(200):
        top, left, h, w = crop_box(120, 90, (0.08, 1.0), (0.75, 4 / 3), rng)
        assert 0 <= top and top + h <= 120 and 0 <= left and left + w <= 90
        # rounding each side moves the area share and the ratio by at most a pixel's worth
        assert 0.08 * 0.9 <= h * w / (120 * 90) <= 1.0
        assert 0.75 * 0.9 <= w / h <= 4 / 3 * 1.1


def test_crop_box_falls_back_to_the_centre_crop_of_the_clamped_ratio():
    from vitlens_cli.data.augment import crop_box

    # a 100 x 10 strip: no draw of a near-square box fits, ten tries fail
    assert crop_box(100, 10, (0.9, 1.0), (0.75, 4 / 3), np.random.default_rng(0)) == (43, 0, 13, 10)


def _ramp(h=40, w=60):
    import torch

    y, x = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    return torch.stack([x / w, y / h])


def test_whole_image_crop_is_a_plain_resize_and_a_smaller_one_changes_content():
    import torch

    from vitlens_cli.data.augment import ViewAugment, random_resized_crop

    x = _ramp(48, 48)
    whole = random_resized_crop(x, 24, ViewAugment(random_crop=True, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0)),
                                np.random.default_rng(0))
    expected = torch.nn.functional.interpolate(x[None], size=(24, 24), mode="bilinear", align_corners=False)[0]
    torch.testing.assert_close(whole, expected)
    part = random_resized_crop(x, 24, ViewAugment(random_crop=True, crop_scale=(0.1, 0.2)), np.random.default_rng(0))
    assert part.shape == (2, 24, 24)
    # a tenth to a fifth of the area: each coordinate spans well under the whole range
    assert float(part[0].max() - part[0].min()) < 0.7 and float(part[1].max() - part[1].min()) < 0.7


def test_flips_are_true_mirrors_and_off_draws_nothing():
    import torch

    from vitlens_cli.data.augment import ViewAugment, flip_rotate

    x = _ramp()
    assert torch.equal(flip_rotate(x, ViewAugment(hflip=1.0), np.random.default_rng(0)), x.flip(-1))
    assert torch.equal(flip_rotate(x, ViewAugment(vflip=1.0), np.random.default_rng(0)), x.flip(-2))
    both = flip_rotate(x, ViewAugment(hflip=1.0, vflip=1.0), np.random.default_rng(0))
    assert torch.equal(both, x.flip(-1).flip(-2))
    rng = np.random.default_rng(4)
    assert torch.equal(flip_rotate(x, ViewAugment(), rng), x)
    assert rng.random() == np.random.default_rng(4).random()


def test_rotation_fills_the_corners_with_zero_and_keeps_the_centre():
    import torch

    from vitlens_cli.data.augment import ViewAugment, flip_rotate

    x = torch.ones(1, 41, 41)
    angle = np.random.default_rng(0).uniform(0, 360)
    assert 20 < angle % 90 < 70  # this seed draws a rotation that uncovers the corners
    out = flip_rotate(x, ViewAugment(rotation=360.0), np.random.default_rng(0))
    assert out[0, 20, 20] == 1 and out[0, 0, 0] == 0 and out[0, -1, -1] == 0


# ---------------------------------------------------------------------------------------------
# The rest of the released view pipelines: short-side scale and crop, colour jitter, random erasing
# ---------------------------------------------------------------------------------------------

def test_short_side_crop_scales_the_short_side_within_the_range_scaled_to_the_output():
    from vitlens_cli.data.augment import short_side_crop

    x = _ramp(60, 90)  # channel 1 is y / 60: after scaling the height to T its rows step by 1 / T
    sides = set()
    for seed in range(30):
        out = short_side_crop(x, 56, (256, 340), np.random.default_rng(seed))
        assert out.shape == (2, 56, 56)
        steps = (out[1, 2:-2, 0] - out[1, 1:-3, 0]).double()
        side = 1.0 / float(steps.mean())
        assert float((steps - steps.mean()).abs().max()) < 1e-5  # one scale over the whole crop
        assert 256 * 56 / 224 - 0.5 <= side <= 340 * 56 / 224 + 0.5  # 64..85 for a 56 crop
        # the long side keeps the aspect: the columns step by 1 / (1.5 T)
        assert abs(float(out[0, 5, 3] - out[0, 5, 2]) * 1.5 * side - 1) < 0.05
        sides.add(round(side))
    assert len(sides) > 5


def test_color_jitter_is_seeded_stays_in_range_and_is_the_identity_at_strength_zero():
    import torch

    from vitlens_cli.data.augment import color_jitter

    rgb = torch.from_numpy(np.random.default_rng(0).random((3, 16, 16), dtype=np.float32))
    a = color_jitter(rgb, 0.4, np.random.default_rng(1))
    assert torch.equal(a, color_jitter(rgb, 0.4, np.random.default_rng(1)))
    assert not torch.allclose(a, color_jitter(rgb, 0.4, np.random.default_rng(2)))
    assert float(a.min()) >= 0 and float(a.max()) <= 1
    # strength 0: every factor 1 and no hue shift, whatever the order drawn
    torch.testing.assert_close(color_jitter(rgb, 0.0, np.random.default_rng(3)), rgb, atol=1e-5, rtol=0)


def test_erase_box_lies_strictly_inside_with_the_released_area_and_ratio():
    from vitlens_cli.data.augment import erase_box

    rng = np.random.default_rng(0)
    for _ in range(300):
        top, left, h, w = erase_box(224, 160, rng)
        assert 0 <= top and top + h <= 224 and 0 <= left and left + w <= 160 and h < 224 and w < 160
        assert 0.02 * 0.9 <= h * w / (224 * 160) <= 0.33 * 1.1
        assert 0.3 * 0.9 <= h / w <= 3.3 * 1.1


def test_random_erase_honours_p_and_zeroes_one_box_of_every_channel():
    import torch

    from vitlens_cli.data.augment import random_erase

    x = torch.rand(4, 48, 64) + 0.5  # no zero anywhere before erasing
    erased = 0
    for seed in range(400):
        out = random_erase(x, 0.25, np.random.default_rng(seed))
        zero = out == 0
        if not zero.any():
            assert torch.equal(out, x)
            continue
        erased += 1
        assert torch.equal(zero, zero[:1].expand_as(zero))  # the same box in every channel
        rows, cols = zero[0].any(1).nonzero()[:, 0], zero[0].any(0).nonzero()[:, 0]
        assert bool(zero[0, rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].all())  # one solid rectangle
        assert torch.equal(out[~zero], x[~zero])
    assert 75 < erased < 125  # Binomial(400, 0.25): 100 ± 8.7 (3 sd); p 0.15 or 0.35 would centre 40 away
    rng = np.random.default_rng(9)
    assert torch.equal(random_erase(x, 0.0, rng), x) and rng.random() == np.random.default_rng(9).random()


def test_rand_augment_runs_torchvision_s_ops_on_the_8_bit_image_from_the_item_s_draws():
    import torch

    from vitlens_cli.data.augment import rand_augment

    y, x = np.mgrid[0:32, 0:32].astype(np.float32)
    rgb = torch.from_numpy(np.stack([x, y, x + y]) / 255 * 2 + 0.3)  # low contrast, no white pixel
    eight_bit = (rgb * 255).round() / 255
    outs = [rand_augment(rgb, 2, 9, np.random.default_rng(seed)) for seed in range(40)]
    assert all(o.shape == rgb.shape and torch.equal((o * 255).round() / 255, o) for o in outs)
    assert torch.equal(outs[3], rand_augment(rgb, 2, 9, np.random.default_rng(3)))
    assert sum(not torch.equal(o, eight_bit) for o in outs) > 30  # two ops at magnitude 9 nearly always act
    before = torch.random.get_rng_state()
    rand_augment(rgb, 2, 9, np.random.default_rng(5))
    assert torch.equal(torch.random.get_rng_state(), before)  # torch's global generator is left as it was
    # magnitude 0: the geometric ops do not move a pixel, and the others (AutoContrast, Equalize, Solarize at
    # 255 once a stretch made a white pixel) map values per channel: every output pixel is a function of its
    # own input value. A geometric op (or a magnitude read from another bin) would move pixels, and pixels of one
    # input value (a column of x, a diagonal of x + y) would then come out different.
    changed = 0
    for seed in range(40):
        out = rand_augment(rgb, 2, 0, np.random.default_rng(seed))
        for c in range(3):
            values, outputs = eight_bit[c].flatten().numpy(), out[c].flatten().numpy()
            for v in np.unique(values):
                assert np.unique(outputs[values == v]).size == 1
        changed += not torch.equal(out, eight_bit)
    assert 0 < changed < 40


# ---------------------------------------------------------------------------------------------
# pytorchvideo's RandAugment of an audio clip's video frame (PVProcessorTrain)
# ---------------------------------------------------------------------------------------------

def _frame(seed=0, shape=(3, 8, 10)):
    return np.random.default_rng(seed).integers(0, 256, shape).astype(np.uint8)


def _dot(points, shape=(3, 9, 9), value=255):
    """A black uint8 frame with bright pixels at the (row, col) points."""
    import torch

    x = torch.zeros(shape, dtype=torch.uint8)
    for r, c in points:
        x[:, r, c] = value
    return x


def _bright(out):
    return sorted((int(r), int(c)) for r, c in (out[0] > 127).nonzero())


def test_video_colour_ops_on_an_8_bit_frame_match_the_arithmetic_by_hand():
    import torch

    from vitlens_cli.data.augment import video_op

    x = _frame()
    t = torch.from_numpy(x)
    wide = x.astype(np.int64)
    np.testing.assert_array_equal(video_op(t, "Invert").numpy(), 255 - wide)
    for bits in range(0, 5):
        keep = (wide >> (8 - bits)) << (8 - bits)  # the top `bits` bits; 0 bits: black
        np.testing.assert_array_equal(video_op(t, "Posterize", bits).numpy(), keep)
    assert torch.equal(video_op(t, "Posterize", 8), t)
    # Solarize at 0.5: uint8 threshold int(0.5 * 255) = 127, pixels at or above it inverted
    np.testing.assert_array_equal(video_op(t, "Solarize", 0.5).numpy(), np.where(wide >= 127, 255 - wide, wide))
    # brightness 1.5: scaled, clipped to 255, truncated back to uint8
    np.testing.assert_array_equal(video_op(t, "AdjustBrightness", 1.5).numpy(), np.floor(np.minimum(wide * 1.5, 255)))
    # contrast 0.5: halfway to the mean of the (truncated) luma of the whole frame
    luma = np.floor(0.2989 * wide[0] + 0.587 * wide[1] + 0.114 * wide[2])
    np.testing.assert_allclose(video_op(t, "AdjustContrast", 0.5).numpy(), np.floor(0.5 * wide + 0.5 * luma.mean()),
                               atol=1)
    # saturation 0: every channel the pixel's luma
    np.testing.assert_allclose(video_op(t, "AdjustSaturation", 0.0).numpy(), np.broadcast_to(luma, x.shape), atol=1)
    # autocontrast: each channel stretched from its own min..max to 0..255
    lo, hi = wide.min(axis=(1, 2), keepdims=True), wide.max(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(video_op(t, "AutoContrast").numpy(), (wide - lo) * 255 / (hi - lo), atol=1)


def test_video_equalize_and_sharpness_on_an_8_bit_frame():
    import torch

    from vitlens_cli.data.augment import video_op

    # 64 levels of a dark ramp, 64 pixels each: equalised they spread monotonically over 0..255
    ramp = torch.from_numpy(np.repeat(np.arange(64, dtype=np.uint8), 64).reshape(1, 64, 64).repeat(3, 0))
    out = video_op(ramp, "Equalize")
    levels = out[0].flatten()[::64].to(torch.int64)
    assert (levels.diff() >= 0).all() and int(levels[0]) == 0 and int(levels[-1]) == 255
    # sharpness 1 is the identity, 0 the 3 x 3 smoothed frame (the border kept): a lone dot spreads
    dot = _dot([(4, 4)], value=130)
    assert torch.equal(video_op(dot, "AdjustSharpness", 1.0), dot)
    soft = video_op(dot, "AdjustSharpness", 0.0)
    assert 0 < int(soft[0, 3, 4]) < int(soft[0, 4, 4]) < 130


@pytest.mark.parametrize("name, arg, points, moved", [
    # ShearX f: output (x, y) reads input (x + f y, y), y measured to the pixel centre: row 2 moves 0.4 x 2.5 = 1
    # column left, row 7 moves 3
    ("ShearX", 0.4, [(2, 6), (7, 6)], [(2, 5), (7, 3)]),
    ("ShearY", 0.4, [(6, 2), (6, 7)], [(3, 7), (5, 2)]),
    ("TranslateX", 0.25, [(3, 6)], [(3, 4)]),     # the content moves by -0.25 x the width 8
    ("TranslateY", -0.25, [(3, 6)], [(5, 6)]),
    ("Rotate", 90.0, [(4, 7)], [(1, 4)]),          # counter-clockwise about the centre of the 9 x 9 frame
    ("Rotate", -90.0, [(4, 7)], [(7, 4)]),
])
def test_video_geometric_ops_move_a_bright_pixel_where_the_geometry_says(name, arg, points, moved):
    from vitlens_cli.data.augment import video_op

    shape = (3, 9, 9) if name == "Rotate" else (3, 8, 8)
    for frame in (_dot(points, shape), _dot(points, shape).float()):
        out = video_op(frame, name, arg)
        assert _bright(out) == moved
        assert float(out.max()) >= 250 and out.dtype == frame.dtype


def test_video_geometric_ops_fill_with_half_a_unit_of_the_frame():
    import torch

    from vitlens_cli.data.augment import video_op

    white = torch.full((3, 8, 8), 255.0)
    out = video_op(white, "TranslateX", 0.5)  # the right half comes from outside the frame
    torch.testing.assert_close(out[..., :4], white[..., :4])
    torch.testing.assert_close(out[..., 5:], torch.full((3, 8, 3), 0.5))
    assert int(video_op(white.to(torch.uint8), "TranslateX", 0.5)[0, 0, 7]) == 0  # 0.5 rounds to 0 in uint8


def test_video_ops_on_the_released_float_0_255_frame():
    """decord_get_clip hands RandAugment float32 0-255 values; torchvision's float ops take them as [0, 1]."""
    import torch

    from vitlens_cli.data.augment import video_op

    x = _frame(1)
    wide = x.astype(np.int64)
    f = torch.from_numpy(x).float()
    torch.testing.assert_close(video_op(f, "Invert"), 1 - f, atol=0, rtol=0)
    torch.testing.assert_close(video_op(f, "AdjustBrightness", 1.2), (f * 1.2).clamp(0, 1))
    # Solarize at 0.1: every pixel >= 0.1, that is every non-zero one, inverted
    torch.testing.assert_close(video_op(f, "Solarize", 0.1), torch.where(f >= 0.1, 1 - f, f), atol=0, rtol=0)
    # Posterize and Equalize first cast x * 255 to uint8, which wraps modulo 256
    wrapped = (wide * 255) % 256
    np.testing.assert_allclose(video_op(f, "Posterize", 2).numpy(), ((wrapped >> 6) << 6) / 255, rtol=1e-6)
    eq = video_op(f, "Equalize")
    assert eq.dtype == torch.float32 and float(eq.min()) >= 0 and float(eq.max()) <= 1
    assert float(video_op(f, "AutoContrast").max()) <= 1


def test_video_op_arguments_follow_pytorchvideo_s_level_table():
    from vitlens_cli.data.augment import VIDEO_OPS, video_op_argument

    assert len(VIDEO_OPS) == 14 and len(set(VIDEO_OPS)) == 14
    for name in ("AdjustBrightness", "AdjustContrast", "AdjustSaturation", "AdjustSharpness"):
        assert video_op_argument(name, 10) == pytest.approx(1.9) and video_op_argument(name, 5, True) == 0.55
    assert video_op_argument("Rotate", 9) == pytest.approx(27) and video_op_argument("Rotate", 9, True) == -27
    assert [video_op_argument("Posterize", v) for v in (0, 2.4, 2.5, 9, 10)] == [4, 4, 3, 1, 0]
    assert video_op_argument("Solarize", 9) == pytest.approx(0.1) and video_op_argument("Solarize", 0) == 1
    assert video_op_argument("ShearY", 10, True) == pytest.approx(-0.3)
    assert video_op_argument("TranslateX", 10) == pytest.approx(0.45)
    assert all(video_op_argument(n, 9) is None for n in ("AutoContrast", "Equalize", "Invert"))


def test_video_levels_are_gaussian_about_the_magnitude_with_std_half_clipped_to_0_10():
    from vitlens_cli.data.augment import video_level

    rng = np.random.default_rng(0)
    levels = np.array([video_level(5, rng) for _ in range(4000)])
    # mean 5 ± 3 x 0.5 / sqrt(4000) = 0.024; sample std 0.5 ± 3 x 0.5 / sqrt(8000) = 0.017
    assert abs(levels.mean() - 5) < 0.03 and abs(levels.std() - 0.5) < 0.02
    top = np.array([video_level(10, rng) for _ in range(2000)])
    assert top.max() == 10 and 0.45 < (top == 10).mean() < 0.55  # half the draws land above 10
    assert np.array([video_level(0, rng) for _ in range(200)]).min() == 0


def _video_frame():
    import torch

    y, x = np.mgrid[0:24, 0:32].astype(np.float32)
    return torch.from_numpy(np.stack([x * 7 % 256, y * 9 % 256, (x + 2 * y) * 3 % 256]).astype(np.float32))


def test_video_rand_augment_prob_0_keeps_the_frame_prob_1_always_changes_it_and_seeds_repeat():
    import torch

    from vitlens_cli.data.augment import video_rand_augment

    frame = _video_frame()
    for seed in range(30):
        assert torch.equal(video_rand_augment(frame, 2, 9, 0.0, np.random.default_rng(seed)), frame)
        out = video_rand_augment(frame, 2, 9, 1.0, np.random.default_rng(seed))
        assert out.shape == frame.shape and not torch.equal(out, frame)
        assert torch.equal(out, video_rand_augment(frame, 2, 9, 1.0, np.random.default_rng(seed)))
    outs = [video_rand_augment(frame, 2, 9, 0.3, np.random.default_rng(seed)) for seed in range(20)]
    assert len({o.numpy().tobytes() for o in outs}) > 5


def test_video_rand_augment_draws_distinct_ops_uniformly_each_acting_with_prob(monkeypatch):
    from vitlens_cli.data import augment

    calls = []
    monkeypatch.setattr(augment, "video_op", lambda frame, name, arg=None: calls.append(name) or frame)
    frame = _video_frame()
    augment.video_rand_augment(frame, 14, 9, 1.0, np.random.default_rng(0))
    assert sorted(calls) == sorted(augment.VIDEO_OPS)  # without replacement
    counts, applied = {}, []
    for seed in range(3000):
        calls.clear()
        augment.video_rand_augment(frame, 2, 9, 0.3, np.random.default_rng(seed))
        assert len(set(calls)) == len(calls)
        applied.append(len(calls))
        for name in calls:
            counts[name] = counts.get(name, 0) + 1
    applied = np.array(applied)
    # each of the 2 layers acts with p 0.3 on its own: 0, 1, 2 ops with p 0.49, 0.42, 0.09 (3 sd bounds)
    assert abs((applied == 0).mean() - 0.49) < 0.028 and abs((applied == 2).mean() - 0.09) < 0.016
    # 1800 ops over 14: 128.6 ± 33 (3 sd) each
    assert set(counts) == set(augment.VIDEO_OPS) and all(95 < c < 162 for c in counts.values())
