"""Thumbnails of every indexed modality are real renderings of the file; unreadable files get a placeholder."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from vitlens_cli.thumbnails import SIZE, data_uri, thumbnail


def _pixels(png: bytes) -> np.ndarray:
    img = Image.open(io.BytesIO(png))
    assert img.format == "PNG"
    return np.asarray(img.convert("RGB"), dtype=np.float64)


def _coloured(px: np.ndarray) -> float:
    return float(((px.max(axis=-1) - px.min(axis=-1)) > 30).mean())


@pytest.mark.parametrize("rel,modality", [
    ("clouds/owl_rgb.ply", "3d"), ("meshes/chair_0002.off", "3d"), ("clouds/ycb_layout_test.h5", "3d"),
    ("audio/dog.flac", "audio"), ("depth/NYU0001_depth.png", "depth"), ("images/beach.jpg", "image"),
])
def test_each_modality_renders(fixtures, rel, modality):
    png = thumbnail(fixtures / rel, modality)
    px = _pixels(png)
    assert max(px.shape[:2]) == SIZE
    # A rendering is in colour (colour maps, rgb, the photo); the placeholder is grey text on grey.
    assert _coloured(px) > 0.01, rel
    assert len(np.unique(px.reshape(-1, 3), axis=0)) > 64, rel
    assert data_uri(png).startswith("data:image/png;base64,")


def test_different_files_give_different_pictures(fixtures):
    a = _pixels(thumbnail(fixtures / "audio" / "dog.flac", "audio"))
    b = _pixels(thumbnail(fixtures / "audio" / "sea_wave.flac", "audio"))
    assert np.abs(a - b).mean() > 1


def test_unreadable_file_gets_a_placeholder(tmp_path):
    bad = tmp_path / "bad.ply"
    bad.write_text("not a ply")
    px = _pixels(thumbnail(bad, "3d"))
    assert _coloured(px) == 0
    assert px.std() > 0  # the reason is written on it
